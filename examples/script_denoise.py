"""Denoise the plugin's noisy IHC sample from a script, in a napari viewer.

Usage::

    python examples/script_denoise.py --weights basic.safetensors            # one call
    python examples/script_denoise.py --weights basic.safetensors --widget   # via the dock widget
    python examples/script_denoise.py --weights basic.safetensors --no-gui   # headless check

``--weights`` is a file written by ``histo-denoise train`` (or the widget's Save weights).
Without weights, ``--train-steps N`` trains a basic model on the sample first (a few hundred
steps on a GPU give a visible result; on a CPU expect minutes and a modest one).
"""

from __future__ import annotations

import argparse

import napari

import napari_histo_denoise as hd

PLUGIN = "napari-histo-denoise"


def main() -> None:
    """Open the noisy sample, denoise it one of the two ways, print the run record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights file (.safetensors)")
    parser.add_argument("--model", default="basic", choices=("basic", "deep"))
    parser.add_argument("--train-steps", type=int, default=0, help="train first (no --weights)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--widget", action="store_true", help="drive the dock widget instead")
    parser.add_argument("--no-gui", action="store_true", help="do not show the viewer")
    args = parser.parse_args()
    if not args.weights and not args.train_steps:
        parser.error("give --weights FILE, or --train-steps N to train on the sample first")

    viewer = napari.Viewer(show=not args.no_gui)
    (noisy,) = viewer.open_sample(PLUGIN, "noisy_ihc")

    weights = args.weights
    if not weights:
        # Self-supervised: the sample is all we have and it is noisy.
        hd.train_layer(
            viewer, noisy, args.model, mode="self-supervised", noise=None,
            steps=args.train_steps, patch_size=64, batch_size=8, device=args.device,
        )  # fmt: skip
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
        weights = widget.train.save_weights("trained_on_sample.safetensors")
        print(f"trained weights saved to {weights}")

    if args.widget:
        # The dock widget: set it from code, run, and wait on the run.
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
        widget.set_layer(noisy)
        widget.set_settings(
            model=args.model, weights=weights, tile_size=args.tile_size, device=args.device
        )
        result = widget.run().wait()
        if result is None:
            raise SystemExit("the run did not finish; see the notification")
    else:
        # One call: blocks (the viewer stays responsive) and returns the new layer.
        result = hd.denoise_layer(
            viewer, noisy, args.model, weights, tile_size=args.tile_size, device=args.device
        )

    print(f"added {result.name!r}")
    for key, value in result.metadata["histo_denoise"].items():
        print(f"  {key}: {value}")
    if not args.no_gui:
        # Original and denoised side by side (the grid lives on viewer.canvas from napari 0.9).
        (viewer.canvas if hasattr(viewer, "canvas") else viewer).grid.enabled = True
        napari.run()


if __name__ == "__main__":
    main()
