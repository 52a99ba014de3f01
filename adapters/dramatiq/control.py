"""Why Dramatiq's live work cannot be controlled from here: its workers listen to no
control channel (no stop, pause or shutdown message), on Redis or on RabbitMQ."""

from __future__ import annotations

from queuewatch.adapters.errors import Unsupported

NO_CHANNEL = "Dramatiq has no control channel: its workers take no message to"


class DramatiqControl:
    """The mixin both Dramatiq adapters take: the contract's refusals, with the reason."""

    # Methods here that only refuse, with the reason: the pages offer no button for them.
    unsupported_controls = frozenset({"stop", "pause", "control_worker"})

    def stop(self, queue: str, job_id: str) -> str | None:
        raise Unsupported(f"{NO_CHANNEL} stop a running job (only the worker's own time limit ends one)")

    def pause(self, queue: str, paused: bool) -> bool:
        raise Unsupported(f"{NO_CHANNEL} pause a queue")

    def control_worker(self, name: str, action: str, n: int = 1) -> None:
        raise Unsupported(f"{NO_CHANNEL} {action.replace('_', ' ')} a worker (stop it with a signal on its host)")
