"""A one-line progress bar for training: in place on a terminal, a line per 10% in logs."""

from __future__ import annotations

from ..events import format_seconds


class ProgressLine:
    """A one-line text progress bar: redrawn in place on a terminal, every 10% otherwise."""

    WIDTH = 24

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.best: float | None = None
        self.shown = 0  # the last tenth of the run printed (not on a terminal)

    def show(self, event) -> None:
        if event.val_psnr is not None:
            self.best = event.val_psnr if self.best is None else max(self.best, event.val_psnr)
        tenth = int(event.fraction * 10)
        if not self.tty and tenth == self.shown and event.fraction < 1:
            return
        self.shown = tenth
        filled = int(self.WIDTH * event.fraction)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        eta = event.elapsed_s / max(event.fraction, 1e-9) * (1 - event.fraction)
        line = f"[{bar}] step {event.step} ({event.fraction:.0%}) loss {event.loss:.5f}"
        if event.val_psnr is not None:
            line += f" val {event.val_psnr:.2f} dB (best {self.best:.2f})"
        line += f" {format_seconds(event.elapsed_s)} elapsed, {format_seconds(eta)} left"
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
