"""The step loop of one run: model, optimiser, precision and the weight average."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..devices import PRECISION_DTYPES, uses_channels_last
from ..patches import jitter_stain
from ..selfsupervised import GAMMA, neighbor2neighbor_loss
from ..settings import TrainSettings
from .schedule import Budget

#: AdamW weight decay (small: the models have batch norm and no dropout).
WEIGHT_DECAY = 1e-4
#: Largest automatic batch (``batch_size=None``) and its share of the free CUDA memory.
MAX_AUTO_BATCH = 128
AUTO_BATCH_MEMORY_SHARE = 0.6
#: Batch of ``batch_size=None`` off CUDA.
HOST_BATCH = 8


class Loop:
    """Model, optimiser, precision and weight average of one run; one :meth:`step` per step."""

    def __init__(
        self,
        model: nn.Module,
        settings: TrainSettings,
        device: torch.device,
        precision: str,
        batch_size: int | None = None,
        *,
        warm_start: bool = False,
    ):
        self.settings = settings
        self.device = device
        self.warm_start = warm_start
        self.memory_format = (
            torch.channels_last
            if uses_channels_last(device, precision)
            else torch.contiguous_format
        )
        self.model = model.to(device=device, memory_format=self.memory_format)
        self.train_mode()
        compiled = device.type == "cuda" if settings.compile is None else settings.compile
        self.forward = torch.compile(self.model) if compiled else self.model
        self.dtype = None if precision == "fp32" else PRECISION_DTYPES[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=settings.lr, weight_decay=WEIGHT_DECAY
        )
        self.last_lr = settings.lr
        self.noise = None
        if settings.mode == "synthetic":
            from ..noise import parse_noise

            self.noise = parse_noise(settings.noise)
        self.ema = None
        if settings.ema is not None:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        # A resumed run keeps its batch: the automatic one may differ from run to run.
        self.batch_size = batch_size or settings.batch_size or self._auto_batch()

    def train_mode(self) -> None:
        """The model in training mode; with ``freeze_batch_norm`` its batch norms are not."""
        self.model.train()
        if self.settings.freeze_batch_norm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and returned: the average when there is one."""
        return self.model if self.ema is None else self.ema

    def _auto_batch(self) -> int:
        """The largest power-of-two batch whose step fits the free CUDA memory (else 8)."""
        if self.device.type != "cuda":
            return HOST_BATCH
        from ..devices import free_memory

        probe = 2
        size = self.settings.patch_size
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        batch = torch.rand(probe, 3, size, size, device=self.device)
        with self.autocast():  # eager: compiling for the probe's shape would be wasted
            out = self.model(batch.contiguous(memory_format=self.memory_format))
        F.mse_loss(out.float(), batch).backward()
        self.optimizer.zero_grad(set_to_none=True)
        per_patch = max(1, (torch.cuda.max_memory_allocated(self.device) - base) / probe)
        fits = AUTO_BATCH_MEMORY_SHARE * (free_memory(self.device) or 0) / per_patch
        return int(min(MAX_AUTO_BATCH, 2 ** max(1, int(math.log2(max(fits, 2))))))

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def to_device(self, batch: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """A host batch on the device in the loop's layout; with ``rng``, stain-jittered."""
        tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
        if rng is not None and self.settings.stain_jitter:
            tensor = jitter_stain(tensor, rng, self.settings.stain_jitter)
        return tensor.contiguous(memory_format=self.memory_format)

    def step(
        self, clean_or_noisy: np.ndarray, rng: np.random.Generator, step: int, budget: Budget
    ) -> float:
        """One optimiser step on a batch of N x 3 x P x P patches; returns the loss."""
        self.last_lr = self.settings.lr * budget.lr_factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr
        batch = self.to_device(clean_or_noisy, rng)
        self.optimizer.zero_grad(set_to_none=True)
        if self.noise is not None:  # synthetic: fresh noise, drawn on the device, in fp32
            noisy = self.noise(batch, rng)
            if self.settings.clean_fraction:
                clean = torch.from_numpy(rng.random(len(batch)) < self.settings.clean_fraction)
                noisy[clean.to(self.device)] = batch[clean.to(self.device)]
            with self.autocast():
                out = self.forward(noisy.contiguous(memory_format=self.memory_format))
            loss = F.mse_loss(out.float(), batch)
        else:
            gamma = GAMMA * budget.fraction(step)
            with self.autocast():
                loss = neighbor2neighbor_loss(self.forward, batch, rng, gamma, self.memory_format)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self._update_ema(step)
        return float(loss.detach())

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # From random weights the decay ramps up from 0.1, so that early averages do not
        # remember the random start; from given weights (a warm restart) it is full at once.
        decay = self.settings.ema
        if not self.warm_start:
            decay = min(decay, (1 + step) / (10 + step))
        for average, param in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            average.lerp_(param, 1 - decay)
        # Batch norm's running statistics are averaged too: from small batches (a CPU's)
        # they are noisy, and copied they cost a trained model 0.15 dB in 120 steps.
        for average, buffer in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            if average.is_floating_point():
                average.lerp_(buffer, 1 - decay)
            else:
                average.copy_(buffer)

    @torch.no_grad()
    def predict(self, noisy: np.ndarray) -> np.ndarray:
        """Denoise one H x W x 3 float image in eval mode; returns H x W x 3 float32."""
        model = self.evaluated
        model.eval()
        try:
            with self.autocast():
                out = model(self.to_device(noisy.transpose(2, 0, 1)[None].copy()))
            return out.float().clamp_(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        finally:
            self.train_mode()

    def finish(self, best_state: dict[str, torch.Tensor] | None) -> nn.Module:
        """Restore the best weights (when validated) and return the model in eval mode."""
        model = self.evaluated
        if best_state is not None:
            model.load_state_dict(best_state)
        return model.to(memory_format=torch.contiguous_format).eval()
