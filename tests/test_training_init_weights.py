"""Fine-tuning from the caller's weights leaves the caller's tensors as they were."""

from __future__ import annotations

import pytest
import torch
from skimage import data

from napari_histo_denoise import train
from napari_histo_denoise.models import build_model

PATCH = data.immunohistochemistry()[:64, :64]


@pytest.mark.parametrize("given", ["module", "state dict"])
def test_fine_tuning_never_changes_the_callers_tensors(given):
    torch.manual_seed(0)
    start = build_model("basic")
    init = start if given == "module" else start.state_dict()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    result = train(
        [PATCH], "basic", init_weights=init, steps=2, patch_size=32, batch_size=2,
        lr=1e-2, device="cpu", seed=0,
    )  # fmt: skip
    changed = [k for k, v in start.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed, f"{len(changed)} of {len(before)} of the caller's tensors changed"
    trained = result.model.state_dict()
    assert any(not torch.equal(trained[k].cpu(), before[k]) for k in before)  # it did train
