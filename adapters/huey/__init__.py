"""Huey on Redis: ``adapter`` (the ``HueyAdapter``), ``index`` (Error records, revoke
markers and instance names learned by a background scan), ``messages`` (its pickled
messages, errors and markers read without unpickling), ``keys`` (its key names),
and the Lua scripts beside them (``results.lua``, ``members.lua``, ``moves.lua``)."""

from .adapter import HueyAdapter

__all__ = ["HueyAdapter"]
