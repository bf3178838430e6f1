"""One restart policy for whatever the runner keeps alive (service processes, the
embedded database): wait, try again, wait twice as long, up to a cap; something
that ran long enough before it died starts over from the shortest wait."""

from __future__ import annotations

from dataclasses import dataclass, field

RESTART_BACKOFF_INITIAL = 1.0  # seconds before the first restart of a dead child
RESTART_BACKOFF_MAX = 30.0  # seconds, the cap of the doubling back-off
RESTART_BACKOFF_RESET = 60.0  # seconds of uptime after which the back-off starts over


@dataclass
class Backoff:
    """The doubling delay between restarts (all in seconds)."""

    initial: float = RESTART_BACKOFF_INITIAL
    cap: float = RESTART_BACKOFF_MAX
    reset_after: float = RESTART_BACKOFF_RESET
    delay: float = field(init=False)

    def __post_init__(self) -> None:
        self.delay = self.initial

    def next_delay(self, uptime: float | None = None) -> float:
        """The wait before the next restart after a failure, then doubled for the one after.

        ``uptime``: how long it ran before it died; at least ``reset_after`` starts over.
        """
        if uptime is not None and uptime >= self.reset_after:
            self.delay = self.initial
        current = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return current

    def succeeded(self) -> None:
        """It is back: the next failure waits the shortest time again."""
        self.delay = self.initial
