"""Denoise view, press to result: a 2000 x 2000 view of a 16k x 16k pyramid and of CMU-1.

    xvfb-run -a python benchmarks/view_denoise.py [--weights W] [--pan 200]

A hidden napari viewer with a 2000 x 2000 canvas at zoom 1 shows 2000 x 2000 pixels of
level 0 (napari draws level 0 there). Each row is one :func:`napari_histo_denoise.denoise_view`
call, timed from the call to the result layer being in the viewer, with the widget's
defaults (tile 256, overlap 32, device, precision and backend ``auto``):

- the 16384 x 16384 pyramid (the bundled CMU-1 region mirrored out to 16k, five levels made
  lazily with dask): the first press of the session (the model is built, and compiled by
  OpenVINO), a first press on another area (model ready), then a pan of ``--pan`` pixels
  right and down;
- the bundled CMU-1 region (2967 x 2220, one level): first press and the same pan.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SLIDE = Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/data/cmu1_small_region.svs"
VIEW = 2000


def cmu1() -> np.ndarray:
    from napari_histo_denoise.io import read_image

    data, _ = read_image(SLIDE)
    return np.asarray(data[0] if isinstance(data, list) else data)


def pyramid_16k(image: np.ndarray) -> list:
    """The image mirrored out to 16384 x 16384 and its 2x-downsampled levels, all lazy."""
    import dask.array as da

    size = 16384
    reps = (-(-size // image.shape[0]), -(-size // image.shape[1]))
    tile = np.concatenate([image, image[::-1]], 0)
    tile = np.concatenate([tile, tile[:, ::-1]], 1)  # mirrored: no seam where copies meet
    level = da.tile(da.from_array(tile, chunks=(1024, 1024, 3)), (*(-(-r // 2) for r in reps), 1))
    level = level[:size, :size].rechunk((1024, 1024, 3))
    levels = [level]
    while max(levels[-1].shape[:2]) > 1024:
        coarse = da.coarsen(np.mean, levels[-1].astype(np.float32), {0: 2, 1: 2}, trim_excess=True)
        levels.append(coarse.round().astype(np.uint8))
    return levels


def press(viewer, layer: str, centre: tuple[float, float], weights) -> dict:
    import napari_histo_denoise as hd

    viewer.scene.camera.center = centre
    start = time.perf_counter()
    result = hd.denoise_view(viewer, layer, weights=weights, timeout=3600)
    seconds = time.perf_counter() - start
    record = result.metadata["histo_denoise"]
    view = record["view"]
    height = view["rows"][1] - view["rows"][0]
    width = view["columns"][1] - view["columns"][0]
    return {
        "seconds": seconds,
        "pixels": f"{height} x {width}",
        "level": view["level"],
        "computed": view["tiles_computed"],
        "reused": view["tiles_reused"],
        "ran": f"{record['device']}, {record['precision']}, {record['backend']}",
    }


def main() -> None:
    import napari

    from napari_histo_denoise.pretrained import best_basic_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="basic weights (default: the best held)")
    parser.add_argument("--pan", type=int, default=200, help="pixels of the small pan")
    args = parser.parse_args()
    weights = args.weights or best_basic_weights()
    image = cmu1()
    viewer = napari.Viewer(show=False)
    viewer.canvas.size = (VIEW, VIEW)
    viewer.add_image(pyramid_16k(image), name="pyramid 16k", multiscale=True)
    viewer.add_image(image, name="CMU-1")
    viewer.scene.camera.zoom = 1.0
    cy, cx = (n // 2 for n in image.shape[:2])
    rows = []
    for label, layer, centre in (
        ("16k pyramid, first press of the session", "pyramid 16k", (5000, 5000)),
        ("16k pyramid, first press on another area", "pyramid 16k", (11000, 9000)),
        (
            f"16k pyramid, after a {args.pan} px pan",
            "pyramid 16k",
            (11000 + args.pan, 9000 + args.pan),
        ),
        ("CMU-1, first press", "CMU-1", (cy, cx)),
        (f"CMU-1, after a {args.pan} px pan", "CMU-1", (cy + args.pan, cx + args.pan)),
    ):
        viewer.layers.selection.active = viewer.layers[layer]
        rows.append((label, press(viewer, layer, centre, weights)))
    viewer.close()
    ran = rows[0][1]["ran"]
    print(f"weights: {Path(weights).name}; canvas {VIEW} x {VIEW} at zoom 1; ran on {ran}\n")
    print("| press | view (level) | tiles computed / reused | press to result |")
    print("|---|---|---:|---:|")
    for label, r in rows:
        print(
            f"| {label} | {r['pixels']} px (level {r['level']}) | {r['computed']} / {r['reused']} "
            f"| {r['seconds']:.1f} s |"
        )


if __name__ == "__main__":
    main()
