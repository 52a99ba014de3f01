"""Who may do what, and the guards every request passes: ``auth`` (users,
tokens, the trusted proxy header, the one policy table), ``csrf``, ``headers``
(Content-Security-Policy and the other response headers), ``audit`` (the log
of who did what)."""
