"""The napari face: dock widgets, sample data and scripting helpers.

Nothing here holds denoising logic: the widgets build a settings object and call the core
(:mod:`napari_histo_denoise.engine`, :mod:`~napari_histo_denoise.training`,
:mod:`~napari_histo_denoise.summary`). Module top levels never import torch, so napari starts fast.
"""
