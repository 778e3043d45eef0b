"""napari-histo-denoise: denoise histopathology images with two U-Net autoencoders.

The public API is re-exported here and imported lazily (PEP 562), so that
``import napari_histo_denoise`` (which napari does when it reads the plugin
manifest) costs nothing and imports neither torch nor napari.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> submodule that defines it.
_EXPORTS = {
    "MODELS": "models",
    "build_model": "models",
    "HistoAutoencoder": "models",
    "DeepHistoAutoencoder": "models",
    "ModelSummary": "summary",
    "model_summary": "summary",
    "denoise": "engine",
    "iter_denoise": "engine",
    "denoise_to_zarr": "engine",
    "denoise_region": "engine",
    "iter_denoise_region": "engine",
    "TileCache": "engine",
    "Cancelled": "engine",
    "Progress": "engine",
    "DenoiseSettings": "settings",
    "TrainSettings": "settings",
    "train": "training",
    "iter_train": "training",
    "TrainResult": "training",
    "TrainProgress": "training",
    "resolve_device": "devices",
    "available_devices": "devices",
    "WeightsError": "checkpoint",
    "save_weights": "checkpoint",
    "load_model": "checkpoint",
    "export_bmz": "bmz",
    "iter_export_bmz": "bmz",
    "run_bmz_test": "bmz",
    "parse_noise": "noise",
    "estimate_noise": "noise_level",
    "NoiseEstimate": "noise_level",
    "evaluate": "evaluation",
    "EvaluationReport": "evaluation",
    "read_image": "io",
    "ImageReadError": "io",
    "denoise_slide": "pipeline",
    "iter_denoise_slide": "pipeline",
    "write_ome_zarr": "slides",
    "write_ome_tiff": "slides",
    "tissue_mask": "slides",
    "denoise_layer": "_napari.scripting",
    "denoise_view": "_napari.scripting",
    "train_layer": "_napari.scripting",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
