"""A torch denoiser run by OpenVINO on the CPU: converted in memory, compiled once per tile shape.

OpenVINO's CPU plugin runs the models in bf16 (on CPUs with AVX512-BF16 or AMX) or f32 with
its own fused kernels, faster than torch's eager CPU path (docs/benchmarks.md). The model is
converted from the loaded torch module (nothing is written to disk); each tile shape the
engine uses is compiled once, on first use, with a dynamic batch (as fast as a fixed one,
measured), so the short last batch of a band reuses it.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

#: OpenVINO's inference precision hint for each precision name.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_PRECISION_NAMES = {hint: name for name, hint in PRECISION_HINTS.items()}
#: How long to wait on a running inference before checking for a cancel (milliseconds).
CANCEL_POLL_MS = 50
#: Tile shapes kept compiled (each holds a copy of the weights).
MAX_SHAPES = 4


class OpenVinoModel:
    """Runs ``model`` (in eval mode; N x 3 x H x W floats in [0, 1]) with OpenVINO."""

    def __init__(self, model: nn.Module, precision: str) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
        example = torch.zeros(1, 3, 64, 64)
        with warnings.catch_warnings():
            # Tracing warns about the models' own input checks, which it records as constants.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            self.graph = ov.convert_model(model, example_input=example, input=[(-1, 3, -1, -1)])
        self._requests: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(
        self, batch: np.ndarray, check_cancel: Callable[[], None] | None = None
    ) -> np.ndarray:
        """Denoise one float32 batch; ``check_cancel`` may raise while it runs, to stop it."""
        with self._lock:
            request = self._request(batch.shape[2:])
            request.start_async([np.ascontiguousarray(batch, dtype=np.float32)])
            while not request.wait_for(CANCEL_POLL_MS):
                if check_cancel is not None:
                    try:
                        check_cancel()
                    except BaseException:
                        request.cancel()
                        _settle(request)
                        raise
            return request.get_output_tensor(0).data.copy()  # the next run reuses the buffer

    def shapes(self) -> list[tuple[int, int]]:
        """The tile shapes compiled so far, oldest first."""
        return list(self._requests)

    def _request(self, tile: tuple[int, int]):
        request = self._requests.get(tile)
        if request is None:
            graph = self.graph.clone()
            graph.reshape([-1, 3, *tile])  # fixed tile, dynamic batch
            compiled = self.core.compile_model(graph, "CPU", self.config)
            request = self._requests[tile] = compiled.create_infer_request()
            while len(self._requests) > MAX_SHAPES:
                self._requests.popitem(last=False)
        self._requests.move_to_end(tile)
        return request


@functools.cache
def precision_run(precision: str) -> str:
    """The precision OpenVINO's CPU plugin really runs when asked for ``precision`` here.

    The plugin takes the hint as a wish and runs what the CPU has instead (fp16 runs as bf16
    on a CPU with AVX512-BF16 and no FP16, as fp32 on one with neither), so records ask it:
    a one-layer model is compiled with the hint and the plugin's choice read back.
    """
    import openvino as ov

    graph = ov.convert_model(nn.Conv2d(3, 3, 1).eval(), example_input=torch.zeros(1, 3, 8, 8))
    hint = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    compiled = ov.Core().compile_model(graph, "CPU", hint)
    return _PRECISION_NAMES[compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()]


def _settle(request) -> None:
    """Wait for a cancelled request to stop, so that it can run again."""
    try:
        request.wait()
    except RuntimeError:  # OpenVINO reports the cancel as an error of the wait
        pass
