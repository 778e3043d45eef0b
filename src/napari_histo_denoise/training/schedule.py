"""How far a run is, by steps or by its ``minutes`` budget: learning rate and validations."""

from __future__ import annotations

import math
import time

from ..settings import TrainSettings

#: Warm-up of the learning rate: this fraction of the run, at most ``MAX_WARMUP`` steps.
WARMUP_FRACTION = 0.05
MAX_WARMUP = 200
#: Validations per run when neither ``val_every`` nor a step count sets the interval.
VALIDATIONS_PER_RUN = 10


class Budget:
    """How far a run is, by steps or by its ``minutes`` budget, and when it validates."""

    def __init__(self, settings: TrainSettings) -> None:
        self.steps = settings.steps
        self.seconds = None if settings.minutes is None else settings.minutes * 60
        self.interval = settings.validation_interval
        # With a clock budget and no val_every, validate every tenth of the budget.
        self.by_clock = self.seconds is not None and settings.val_every is None
        self.next_validation = 1 / VALIDATIONS_PER_RUN
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction(self, step: int) -> float:
        """Share of the run done after ``step`` steps: of the steps, or of the clock."""
        done = step / self.steps
        if self.seconds is not None:
            done = max(done, self.elapsed() / self.seconds)
        return min(1.0, done)

    def finished(self, step: int) -> bool:
        return self.fraction(step) >= 1.0

    def validation_due(self, step: int) -> bool:
        if not self.by_clock:
            return step % self.interval == 0
        if self.fraction(step) < self.next_validation:
            return False
        self.next_validation = (math.floor(self.fraction(step) * VALIDATIONS_PER_RUN) + 1) / (
            VALIDATIONS_PER_RUN
        )
        return True

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak learning rate for optimiser step ``step`` (from 1).

        A linear warm-up over the first ``WARMUP_FRACTION`` of the run (at most
        ``MAX_WARMUP`` steps) times a cosine decay over the whole run.
        """
        warm = max(step / MAX_WARMUP, self.fraction(step) / WARMUP_FRACTION)
        return min(1.0, warm) * 0.5 * (1 + math.cos(math.pi * self.fraction(step - 1)))
