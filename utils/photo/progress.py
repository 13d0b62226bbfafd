"""Progress that everyone can see: a bar with the time left on a terminal, a line at least every 10 s in a log.

The work is counted in estimated seconds per photo (``estimate_seconds``), so that a 12-megapixel photo
weighs more than a thumbnail and the time left is right from the first photo on.
"""

from __future__ import annotations

import sys
import threading
import time

from utils.core.log import progress_bar

# Seconds to restore a photo with restore.py's defaults on 2 CPU cores: the model on the working copy (the same
# for any photo larger than it) and the full-size work (decoding, the correction, encoding) per megapixel.
MODEL_SECONDS, SECONDS_PER_MEGAPIXEL = 6.0, 0.6
LOG_EVERY = 10.0


def estimate_seconds(megapixels: float) -> float:
    return MODEL_SECONDS * min(1.0, megapixels / 0.75) + SECONDS_PER_MEGAPIXEL * megapixels


class Progress:
    """The share done of a list of photos, shown as a bar (terminal) or as lines (a log); ``stop`` ends it."""

    def __init__(self, megapixels: list[float], show: bool) -> None:
        self.weights = [estimate_seconds(m) for m in megapixels]
        self.total, self.finished, self.current = sum(self.weights), 0.0, 0.0
        self.count, self.started = 0, time.monotonic()
        self.bar = progress_bar(total=100, show=show, unit="%", desc="restoring", bar_format=BAR)
        self.stopped = threading.Event()
        self.ticker = None
        if show and self.bar.disable:
            self.ticker = threading.Thread(target=self._log_lines, daemon=True)
            self.ticker.start()

    def within(self, share: float) -> None:
        """The model has done ``share`` of the current photo (its full-size work is the last fifth)."""
        self.current = 0.8 * share * self.weights[self.count]
        self._show()

    def photo_done(self) -> None:
        self.finished += self.weights[self.count]
        self.count, self.current = self.count + 1, 0.0
        self._show()

    def share(self) -> float:
        return min(1.0, (self.finished + self.current) / self.total) if self.total else 1.0

    def seconds_left(self) -> float | None:
        share = self.share()
        return (time.monotonic() - self.started) * (1 - share) / share if share > 0.02 else None

    def line(self) -> str:
        left = self.seconds_left()
        told = f", about {left:.0f} s left" if left is not None else ""
        return f"restoring: {100 * self.share():.0f}% ({self.count}/{len(self.weights)} photos done){told}"

    def _show(self) -> None:
        self.bar.n = round(100 * self.share(), 1)
        self.bar.refresh()

    def _log_lines(self) -> None:
        while not self.stopped.wait(LOG_EVERY):
            print(self.line(), file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join(timeout=LOG_EVERY)
        self.bar.close()


BAR = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
