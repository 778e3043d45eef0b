"""The model report rendered: text in the seed specification's layout, JSON and Markdown.

The text follows ``docs/spec/histo_autoencoder_report.txt``; JSON and Markdown carry the
same data.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence

from .. import __version__
from ..tracing import Shape
from .facts import HEADROOM, ModelSummary, component_of

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
