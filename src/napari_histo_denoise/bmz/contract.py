"""What every package this project writes states: its architectures, tiles and test input.

Shared by the export (:mod:`.export`, :mod:`.description`), the model card (:mod:`.card`)
and the reader (:mod:`.read`), so that what a package says and what is checked on reading
it come from one place.
"""

from __future__ import annotations

from ..settings import TILE_MULTIPLE, DenoiseSettings

#: Where each architecture's class lives: what a package's ``pytorch_state_dict`` names.
ARCHITECTURES = {
    "basic": ("napari_histo_denoise.models.basic", "HistoAutoencoder"),
    "deep": ("napari_histo_denoise.models.deep", "DeepHistoAutoencoder"),
}
#: The engine's default overlap of neighbouring tiles.
ENGINE_OVERLAP = DenoiseSettings.overlap
#: Output pixels per side a crop-and-stitch consumer drops from each tile: half the
#: engine's overlap, so that stitched tiles meet where the engine's blending windows cross.
HALO = ENGINE_OVERLAP // 2
#: Smallest tile the package accepts: the engine's smallest tile at its overlap.
MIN_TILE = 2 * ENGINE_OVERLAP + TILE_MULTIPLE
#: Side of the test input of an exported package.
TEST_SIZE = 256
#: Gaussian noise (0-255 scale) and seed of the test input.
TEST_SIGMA, TEST_SEED = 25.0, 0
#: ONNX operator set of the exported graph.
ONNX_OPSET = 17


def default_name(architecture: str) -> str:
    """The model's name in a package when the exporter gives none.

    Parameters
    ----------
    architecture : {"basic", "deep"}
        The model's architecture.
    """
    return f"napari-histo-denoise {architecture} (H+E and IHC denoiser)"


__all__ = [
    "ARCHITECTURES",
    "ENGINE_OVERLAP",
    "HALO",
    "MIN_TILE",
    "ONNX_OPSET",
    "TEST_SEED",
    "TEST_SIGMA",
    "TEST_SIZE",
    "default_name",
]
