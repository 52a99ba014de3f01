"""RQ on Redis: ``adapter`` (the ``RQAdapter``: counts, workers, failed jobs,
moves), ``jobs`` (RQ's keys and job hashes as read), and the Lua scripts that
move jobs atomically (``requeue.lua``, ``delete.lua``, ``purge.lua``)."""

from .adapter import RQAdapter

__all__ = ["RQAdapter"]
