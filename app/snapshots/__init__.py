"""Snapshots of every backend and what is kept of them: ``monitor`` (the backends
and the one snapshot per poll interval all viewers share), ``sampler`` (the
timer that takes it, in the one process holding the lease; ``lease`` is its
timing), ``history`` (the pure rules of recorded history), ``recorder``
(writing and reading history through the store), ``adapter_memory`` (what
adapters learned, kept across restarts)."""
