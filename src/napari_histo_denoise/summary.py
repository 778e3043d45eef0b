"""The model report: architecture map, data flow, parameter breakdown and memory analysis.

Everything here is derived from the real models (see :mod:`.tracing`): the layer
rows from forward hooks, the skip connections from the concatenations the
forward pass performs, and the activation memory from the storages it allocates.
The text rendering follows the layout of the seed specification
(``docs/spec/histo_autoencoder_report.txt``); JSON and Markdown carry the same data.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from torch import nn

from . import __version__
from .models import MODELS, SIZE_MULTIPLE
from .tracing import LayerRow, Shape, StageTrace, trace

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


# ----------------------------------------------------------------------------- rendering

FORMATS = ("text", "json", "markdown")
RULE = "=" * 100
WIDE_RULE = "=" * 120
THIN = "-" * 100
MID = "-" * 80


def render(summaries: Sequence[ModelSummary], fmt: str = "text") -> str:
    """Render summaries as ``"text"`` (the seed's layout), ``"json"`` or ``"markdown"``.

    With two or more summaries the text and Markdown reports open with the model
    comparison, as the seed's full report does.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats are {', '.join(FORMATS)}")
    if not summaries:
        raise ValueError("nothing to render: give at least one model summary")
    if fmt == "json":
        return json.dumps([s.to_dict() for s in summaries], indent=2)
    if fmt == "markdown":
        return _markdown(summaries)
    return _text(summaries)


def _shape(shape: Shape, batch: str | None = None) -> str:
    dims = [batch, *map(str, shape[1:])] if batch else list(map(str, shape))
    return "[" + ", ".join(dims) + "]"


def _title(name: str) -> str:
    return f"{name.upper()} AUTOENCODER"


def comparison_rows(summaries: Sequence[ModelSummary]) -> list[tuple[str, list[str]]]:
    """The rows of the MODEL COMPARISON table: metric, then one value per model."""
    b = summaries[0].memory.batch_size
    h, w = summaries[0].input_shape[2:]
    return [
        ("Architecture", [s.description for s in summaries]),
        ("Total Parameters", [f"{s.total_params:,}" for s in summaries]),
        ("Model Size (MB)", [f"{s.size_mb:.1f}" for s in summaries]),
        ("Conv layers (depth)", [str(s.conv_layers) for s in summaries]),
        ("Resolution levels", [str(s.levels) for s in summaries]),
        ("Skip connections", [f"{s.skips} concat" for s in summaries]),
        ("Residual blocks", [str(s.residual_blocks) for s in summaries]),
        (f"GFLOP per {h}x{w} tile", [f"{s.gflops:.1f}" for s in summaries]),
        (
            f"Training memory, batch {b}",
            [f"{s.memory.training_mb / 1024:.2f} GB" for s in summaries],
        ),
        (
            f"Inference memory, batch {b}",
            [f"{s.memory.inference_mb / 1024:.2f} GB" for s in summaries],
        ),
    ]


def _text(summaries: Sequence[ModelSummary]) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    out = [
        "HISTOPATHOLOGY AUTOENCODER - COMPREHENSIVE VISUALIZATION REPORT",
        f"Generated on: {now} by napari-histo-denoise {__version__}",
        RULE,
    ]
    if len(summaries) > 1:
        out += _text_comparison(summaries)
    for s in summaries:
        out += _text_architecture(s) + _text_flow(s) + _text_breakdown(s) + _text_memory(s)
    return "\n".join(out)


def _text_comparison(summaries: Sequence[ModelSummary]) -> list[str]:
    names = " vs ".join(s.name.upper() for s in summaries)
    lines = ["", WIDE_RULE, f"MODEL COMPARISON - {names} AUTOENCODER", WIDE_RULE]
    lines.append(f"{'Metric':<30} " + "".join(f"{_title(s.name).title():<25} " for s in summaries))
    lines.append(MID)
    for metric, values in comparison_rows(summaries):
        lines.append(f"{metric:<30} " + "".join(f"{v:<25} " for v in values))
    return [*lines, ""]


def _text_architecture(s: ModelSummary) -> list[str]:
    lines = [
        "",
        RULE,
        f"ARCHITECTURE MAP - {_title(s.name)}",
        RULE,
        f"Model Type: {s.class_name}",
        f"Input Shape: {s.input_shape}",
        f"Total Parameters: {s.total_params:,}",
        f"Trainable Parameters: {s.trainable_params:,}",
        f"Model Size: {s.size_mb:.2f} MB",
        "",
        "LAYER-BY-LAYER BREAKDOWN:",
        THIN,
        f"{'Layer Name':<30} {'Type':<20} {'Input Shape':<25} {'Output Shape':<25} {'Params':<10}",
        THIN,
    ]
    for row in s.layers:
        inputs = str(list(row.input_shapes))
        lines.append(
            f"{row.name:<30} {row.type:<20} {inputs:<25} {row.output_shape!s:<25} {row.params:<10}"
        )
    lines += [
        THIN,
        f"Measured peak of live activations, inference at batch {s.input_shape[0]}: "
        f"{s.forward_mb:.2f} MB",
        "",
    ]
    return lines


def _text_flow(s: ModelSummary) -> list[str]:
    lines = ["", RULE, f"DATA FLOW MAP - {_title(s.name)}", RULE, ""]
    lines.append(f"    INPUT: {_shape(s.input_shape, 'B')} - RGB histology image in [0, 1]")
    skip_to = {src: st.name for st in s.stages for src in st.sources[1:]}
    section = None
    for st in s.stages:
        comp = component_of(st.name)
        if comp != section:
            section = comp
            lines += ["         │", "         ▼", f"    ── {comp} {'─' * (70 - len(comp))}"]
        if st.sources:
            parts = " ⊕ ".join(f"{src}" for src in st.sources)
            lines.append(f"    {st.name}: concat({parts}) = {_shape(st.input_shape, 'B')}")
            lines.append(f"    {' ' * len(st.name)}  → {_shape(st.output_shape, 'B')}")
        else:
            lines.append(
                f"    {st.name}: {_shape(st.input_shape, 'B')} → {_shape(st.output_shape, 'B')}"
            )
        lines.append(f"    {' ' * len(st.name)}  {_layer_chain(st.layers)}")
        if st.name in skip_to:
            lines.append(
                f"    {' ' * len(st.name)}  └─ skip: output concatenated into {skip_to[st.name]}"
            )
    lines += [
        "         │",
        "         ▼",
        f"    OUTPUT: {_shape(s.stages[-1].output_shape, 'B')} - denoised RGB image in [0, 1]",
        "",
        "    Key:",
        "    B = batch size; ⊕ = concatenation along channels (U-Net skip connection)",
        "    ConvKxK/2 = stride-2 convolution",
        "    ConvT4x4/2 = transposed convolution (2x upsampling)",
        "    BN = batch normalisation; LeakyReLU slope 0.2",
    ]
    if s.residual_blocks:
        lines.append("    ResBlock = Conv3x3 + BN + ReLU + Conv3x3 + BN, plus identity, then ReLU")
    return [*lines, ""]


def _layer_chain(layers: Sequence[str]) -> str:
    """``Conv3x3 + BN + ... + 2 x ResBlock``: runs of equal blocks collapsed."""
    parts: list[str] = []
    i = 0
    while i < len(layers):
        j = i
        while j < len(layers) and layers[j] == layers[i]:
            j += 1
        parts.append(layers[i] if j - i == 1 else f"{j - i} x {layers[i]}")
        i = j
    return " + ".join(parts)


def _text_breakdown(s: ModelSummary) -> list[str]:
    lines = ["", RULE, f"PARAMETER BREAKDOWN - {_title(s.name)}", RULE]
    lines += ["COMPONENT-WISE PARAMETER COUNT:", MID]
    for row in s.layers:
        if row.params:
            lines.append(f"{component_of(row.name):<12} {row.name:<30}{row.params:>23,}")
    lines.append(MID)
    for c in s.components:
        label = "FINAL LAYER" if c.name == "FINAL" else c.name
        lines.append(f"{label + ' TOTAL:':<40}{c.params:>26,}")
    lines += [MID, f"{'GRAND TOTAL:':<40}{s.total_params:>26,}", ""]
    lines += ["PARAMETER DISTRIBUTION:", "-" * 40]
    for c in s.components:
        lines.append(f"{c.name.title() + ':':<12}{c.percent:>5.1f}%")
    return [*lines, ""]


def _text_memory(s: ModelSummary) -> list[str]:
    m = s.memory
    lines = ["", RULE, f"MEMORY ANALYSIS - {_title(s.name)}", RULE]
    lines += [
        f"Analysis for batch size: {m.batch_size} (input {m.input_shape}, fp32)",
        "",
        f"Model Parameters Memory: {m.parameters_mb:.2f} MB",
        f"Input Tensor Memory: {m.input_mb:.2f} MB",
        f"Output Tensor Memory: {m.output_mb:.2f} MB",
        "",
        "ACTIVATIONS SAVED FOR BACKWARD (measured, training forward):",
        "-" * 40,
    ]
    for stage, mb in m.stage_activations_mb.items():
        lines.append(f"{stage + ':':<14}{mb:>10.2f} MB")
    lines += [
        f"Total Intermediate Activations: {m.activations_mb:.2f} MB",
        "",
        "TRAINING MEMORY BREAKDOWN (AdamW):",
        "-" * 40,
        f"Model Parameters: {m.parameters_mb:.2f} MB",
        f"Gradients: {m.gradients_mb:.2f} MB",
        f"Optimizer States: {m.optimizer_mb:.2f} MB",
        f"Input: {m.input_mb:.2f} MB",
        f"Intermediate Activations: {m.activations_mb:.2f} MB",
        "-" * 40,
        f"Total Training Memory: {m.training_mb:.2f} MB",
        f"Total Training Memory: {m.training_mb / 1024:.2f} GB",
        "",
        "INFERENCE MEMORY BREAKDOWN (no autograd):",
        "-" * 40,
        f"Model Parameters: {m.parameters_mb:.2f} MB",
        f"Input: {m.input_mb:.2f} MB",
        f"Peak Live Activations (measured): {m.inference_activations_mb:.2f} MB",
        f"Total Inference Memory: {m.inference_mb:.2f} MB",
        f"Total Inference Memory: {m.inference_mb / 1024:.2f} GB",
        "",
        "RECOMMENDED GPU MEMORY:",
        "-" * 40,
        f"Minimum for Training: {m.training_mb / 1024:.1f} GB",
        f"Recommended for Training: {HEADROOM * m.training_mb / 1024:.1f} GB",
        f"Minimum for Inference: {m.inference_mb / 1024:.1f} GB",
        "",
        RULE,
    ]
    return lines


def _markdown(summaries: Sequence[ModelSummary]) -> str:
    out = [f"# Model report (napari-histo-denoise {__version__})", ""]
    if len(summaries) > 1:
        out += ["## Model comparison", ""]
        out.append("| Metric | " + " | ".join(_title(s.name).title() for s in summaries) + " |")
        out.append("|---" * (len(summaries) + 1) + "|")
        out += [f"| {k} | " + " | ".join(v) + " |" for k, v in comparison_rows(summaries)]
        out.append("")
    for s in summaries:
        m = s.memory
        out += [
            f"## {_title(s.name).title()} (`{s.class_name}`)",
            "",
            f"Input {s.input_shape}; {s.total_params:,} parameters ({s.trainable_params:,} "
            f"trainable), {s.size_mb:.2f} MB in fp32, {s.gflops:.1f} GFLOP per forward.",
            "",
            "### Architecture map",
            "",
            "| Layer | Type | Input shape | Output shape | Params |",
            "|---|---|---|---|---:|",
        ]
        out += [
            f"| `{r.name}` | {r.type} | {list(r.input_shapes)} | {r.output_shape} | {r.params:,} |"
            for r in s.layers
        ]
        out += ["", "### Data flow", "", "| Block | Input | Output | Input is | Layers |"]
        out.append("|---|---|---|---|---|")
        out += [
            f"| `{st.name}` | {_shape(st.input_shape, 'B')} | {_shape(st.output_shape, 'B')} "
            f"| {' ⊕ '.join(st.sources) or 'previous block'} | {_layer_chain(st.layers)} |"
            for st in s.stages
        ]
        out += ["", "### Parameters by component", "", "| Component | Params | Share |"]
        out.append("|---|---:|---:|")
        out += [f"| {c.name} | {c.params:,} | {c.percent:.1f}% |" for c in s.components]
        out.append(f"| **Total** | **{s.total_params:,}** | 100% |")
        out += [
            "",
            f"### Memory at batch {m.batch_size} (fp32, measured activations)",
            "",
            "| Item | MB |",
            "|---|---:|",
            f"| Parameters | {m.parameters_mb:.2f} |",
            f"| Gradients | {m.gradients_mb:.2f} |",
            f"| AdamW states | {m.optimizer_mb:.2f} |",
            f"| Input | {m.input_mb:.2f} |",
            f"| Activations saved for backward | {m.activations_mb:.2f} |",
            f"| **Training total** | **{m.training_mb:.2f}** |",
            f"| Peak live activations, inference | {m.inference_activations_mb:.2f} |",
            f"| **Inference total** | **{m.inference_mb:.2f}** |",
            "",
        ]
    return "\n".join(out)
