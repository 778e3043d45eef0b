"""The facts of the model report: layers, components, skips, parameters, FLOPs, memory.

Everything here is derived from the real models (see :mod:`..tracing`): the layer
rows from forward hooks, the skip connections from the concatenations the
forward pass performs, and the activation memory from the storages it allocates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from torch import nn

from ..models import MODELS, SIZE_MULTIPLE
from ..tracing import LayerRow, Shape, StageTrace, trace

MB = 2**20
FP32_BYTES = 4
#: Adam and AdamW keep two fp32 moments per parameter.
ADAM_STATES = 2
#: Head-room factor over the measured minimum for the recommended training memory.
HEADROOM = 1.5

#: Component of each top-level block, in report order. The deep model's 7x7 stem
#: (``initial``) is its own component, counted in the grand total.
COMPONENTS = {
    "initial": "STEM",
    "encoder": "ENCODER",
    "bottleneck": "BOTTLENECK",
    "decoder": "DECODER",
    "final": "FINAL",
}
DESCRIPTIONS = {
    "HistoAutoencoder": "U-Net with skip conn.",
    "DeepHistoAutoencoder": "ResNet + U-Net",
}


def component_of(layer_name: str) -> str:
    """Return the component (ENCODER, DECODER, ...) a layer name belongs to."""
    top = layer_name.split(".", 1)[0].rstrip("0123456789")
    return COMPONENTS.get(top, "OTHER")


@dataclass(frozen=True)
class Component:
    """Parameters of one component and its share of the model."""

    name: str
    params: int
    percent: float


@dataclass(frozen=True)
class MemoryAnalysis:
    """Memory for training (AdamW) and inference at one batch size, fp32, in MiB.

    Activation figures are measured on the real forward pass: ``activations_mb``
    is what autograd keeps for the backward pass at the end of a training
    forward, ``stage_activations_mb`` splits it by block, and
    ``inference_activations_mb`` is the peak of live tensors during an
    inference forward (skips held for the decoder included).
    """

    batch_size: int
    input_shape: Shape
    parameters_mb: float
    gradients_mb: float
    optimizer_mb: float
    input_mb: float
    output_mb: float
    stage_activations_mb: dict[str, float]
    activations_mb: float
    inference_activations_mb: float

    @property
    def training_mb(self) -> float:
        """Parameters, gradients, optimiser states, input and saved activations."""
        return (
            self.parameters_mb
            + self.gradients_mb
            + self.optimizer_mb
            + self.input_mb
            + self.activations_mb
        )

    @property
    def inference_mb(self) -> float:
        """Parameters, input and the peak of live activations (output included)."""
        return self.parameters_mb + self.input_mb + self.inference_activations_mb


@dataclass(frozen=True)
class ModelSummary:
    """Everything the report says about one model."""

    name: str
    class_name: str
    description: str
    input_shape: Shape
    total_params: int
    trainable_params: int
    size_mb: float
    gflops: float
    forward_mb: float
    layers: tuple[LayerRow, ...]
    stages: tuple[StageTrace, ...]
    components: tuple[Component, ...]
    memory: MemoryAnalysis

    @property
    def conv_layers(self) -> int:
        """Convolutions (transposed included) on the path from input to output."""
        return sum(row.type in ("Conv2d", "ConvTranspose2d") for row in self.layers)

    @property
    def levels(self) -> int:
        """How many times the resolution is halved."""
        return sum(
            s.output_shape[-1] * 2 == s.input_shape[-1]
            for s in self.stages
            if s.name.startswith("encoder")
        )

    @property
    def skips(self) -> int:
        """Encoder outputs concatenated into the decoder."""
        return sum(len(s.sources) - 1 for s in self.stages if s.sources)

    @property
    def residual_blocks(self) -> int:
        """Residual blocks (each adds an identity shortcut)."""
        return len({row.name.rsplit(".", 1)[0] for row in self.layers if ".conv1" in row.name})

    def to_dict(self) -> dict:
        """A JSON-ready dict of the summary and its derived figures."""
        data = asdict(self)
        for key in ("conv_layers", "levels", "skips", "residual_blocks"):
            data[key] = getattr(self, key)
        data["memory"]["training_mb"] = self.memory.training_mb
        data["memory"]["inference_mb"] = self.memory.inference_mb
        return data


def model_summary(
    model_or_name: nn.Module | str,
    input_shape: Shape = (1, 3, 256, 256),
    batch_size: int = 8,
) -> ModelSummary:
    """Summarise a model: layer rows, components, data flow and measured memory.

    Parameters
    ----------
    model_or_name : torch.nn.Module or str
        ``"basic"``, ``"deep"`` or a model instance (never modified).
    input_shape : tuple of int
        ``(N, 3, H, W)`` for the layer table; H and W multiples of 16.
    batch_size : int
        Batch for the memory analysis (at the same H and W).

    Returns
    -------
    ModelSummary
    """
    if len(input_shape) != 4 or input_shape[1] != 3:
        raise ValueError(f"input_shape must be (N, 3, H, W), got {tuple(input_shape)}")
    if any(s <= 0 or s % SIZE_MULTIPLE for s in input_shape[2:]) or input_shape[0] < 1:
        raise ValueError(
            f"input_shape needs N >= 1 and H, W positive multiples of {SIZE_MULTIPLE}, "
            f"got {tuple(input_shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    input_shape = tuple(int(s) for s in input_shape)
    traced = trace(model_or_name, input_shape, train=False)
    params, trainable, class_name = _count(model_or_name, traced)
    batch_shape = (batch_size, *input_shape[1:])
    return ModelSummary(
        name=model_or_name if isinstance(model_or_name, str) else class_name,
        class_name=class_name,
        description=DESCRIPTIONS.get(class_name, class_name),
        input_shape=input_shape,
        total_params=params,
        trainable_params=trainable,
        size_mb=params * FP32_BYTES / MB,
        gflops=sum(row.flops for row in traced.layers) / 1e9,
        forward_mb=traced.peak_bytes / MB,
        layers=tuple(traced.layers),
        stages=tuple(traced.stages),
        components=_components(traced.layers, params),
        memory=_memory(model_or_name, batch_shape, params),
    )


def _count(model_or_name: nn.Module | str, traced) -> tuple[int, int, str]:
    if isinstance(model_or_name, str):
        params = sum(row.params for row in traced.layers)
        return params, params, MODELS[model_or_name].__name__
    params = sum(p.numel() for p in model_or_name.parameters())
    trainable = sum(p.numel() for p in model_or_name.parameters() if p.requires_grad)
    return params, trainable, type(model_or_name).__name__


def _components(layers: Sequence[LayerRow], total: int) -> tuple[Component, ...]:
    sums: dict[str, int] = {}
    for row in layers:
        sums[component_of(row.name)] = sums.get(component_of(row.name), 0) + row.params
    return tuple(Component(name, n, 100 * n / total) for name, n in sums.items())


def _memory(model_or_name: nn.Module | str, shape: Shape, params: int) -> MemoryAnalysis:
    training = trace(model_or_name, shape, train=True)
    inference = trace(model_or_name, shape, train=False)
    tensor_mb = FP32_BYTES * shape[0] * shape[2] * shape[3] * 3 / MB
    param_mb = params * FP32_BYTES / MB
    return MemoryAnalysis(
        batch_size=shape[0],
        input_shape=shape,
        parameters_mb=param_mb,
        gradients_mb=param_mb,
        optimizer_mb=ADAM_STATES * param_mb,
        input_mb=tensor_mb,
        output_mb=tensor_mb,
        stage_activations_mb={s.name: s.retained_bytes / MB for s in training.stages},
        activations_mb=training.retained_bytes / MB,
        inference_activations_mb=inference.peak_bytes / MB,
    )
