"""Acting on failed jobs: ``actions`` (the one path every move takes),
``operations`` (bulk operations: count, confirm, run, cancel) and ``runner``
(the thread that works on them), ``triage`` (filters and walks within a time
budget) and ``fingerprint`` (grouping failures by cause)."""
