"""Arq on Redis: ``adapter`` (the ``ArqAdapter``), ``index`` (failed results and
queue names learned by a background scan), ``records`` (job, result and health
records read), ``jobs`` (a job record rebuilt from a result for requeue), and
the Lua scripts beside them (``counts.lua``, ``purge.lua``)."""

from .adapter import ArqAdapter

__all__ = ["ArqAdapter"]
