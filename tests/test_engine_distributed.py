"""The lazy result computes under dask.distributed with worker processes."""

from __future__ import annotations

import distributed
import numpy as np
import torch
from torch import nn

from napari_histo_denoise import engine
from napari_histo_denoise.engine import denoise


def _conv() -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(0.1)
        conv.weight[range(3), range(3), 1, 1] += 1.0
    return conv.eval()


def _cached_tokens() -> list[str]:
    from napari_histo_denoise.engine import model_cache

    return [key[0] for key in model_cache._MODEL_CACHE]


def test_local_cluster_with_two_worker_processes_matches_local_result():
    image = np.random.default_rng(0).integers(0, 256, (300, 260, 3), dtype=np.uint8)
    model = _conv()
    lazy = denoise(image, model, tile_size=64, overlap=16, batch_size=8, device="cpu")
    expected = lazy.compute(scheduler="sync")
    # the model sits in the graph once (the shared run), never inside a band task
    runs = [
        v
        for v in dict(lazy.__dask_graph__()).values()
        if isinstance(getattr(v, "value", None), engine.DenoiseRun)
    ]
    assert len(runs) == 1
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = client.compute(lazy).result(timeout=120)
        cached = client.run(_cached_tokens)
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == np.uint8
    # each worker that ran bands built the model once
    assert all(len(tokens) <= 1 for tokens in cached.values())
    assert sum(len(tokens) for tokens in cached.values()) >= 1
