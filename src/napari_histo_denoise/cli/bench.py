"""``histo-denoise bench``: run the engine benchmark (benchmarks/bench_engine.py)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

from . import DefaultsHelpFormatter

#: Where the benchmark lives in a source checkout (the editable install points here).
SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_engine.py"


def _script() -> ModuleType | None:
    if not SCRIPT.is_file():
        return None
    spec = importlib.util.spec_from_file_location("bench_engine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand with the benchmark script's options."""
    parser = subparsers.add_parser(
        "bench",
        formatter_class=DefaultsHelpFormatter,
        help="benchmark the engine and training: CPU fp32 vs bf16, 16384^2 peak RSS, GPU",
        description="Run benchmarks/bench_engine.py (needs a source checkout): the engine "
        "against the bare model forward on CPU in fp32 and bf16 (with the bf16 PSNR against "
        "fp32 on trained weights), training patches/s in fp32 and bf16, the peak RSS of a "
        "16384^2 zarr-to-zarr run, and, where CUDA works, GPU throughput, PSNR against fp32 "
        "CPU and MONAI.",
    )
    script = _script()
    if script is not None:
        script.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark script with the parsed options."""
    script = _script()
    if script is None:
        raise FileNotFoundError(
            "the benchmark script ships with the source, not the package; run "
            "'histo-denoise bench' from a source checkout (benchmarks/bench_engine.py)"
        )
    return script.run(args)
