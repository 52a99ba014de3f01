"""The only exceptions an adapter (and the dashboard's own store) lets out.

Every adapter maps its client library's exceptions (redis-py, pika, HTTP) to
these at one boundary, so the app never has to know which library failed.
"""


class AdapterError(Exception):
    """Base of every error an adapter raises."""


class BackendUnavailable(AdapterError):
    """The backend did not answer, refused us, or answered nonsense."""


class NotFound(AdapterError):
    """The queue or job does not exist (any more)."""


class Unsupported(AdapterError):
    """The system cannot do this, or cannot do it for this job; the message says why."""


class StoreUnavailable(BackendUnavailable):
    """The dashboard's own store cannot be read or written (a file gone read-only, a Redis down)."""


class Interrupted(BackendUnavailable):
    """The backend stopped answering part of the way through a move: ``done`` (an ActionResult)
    says what was done before, so nobody is told that nothing changed when something did.
    The step in flight at the time may or may not have been done: its reply was lost."""

    def __init__(self, message: str, done: object) -> None:
        super().__init__(message)
        self.done = done
