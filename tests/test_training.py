"""Training: the basic model learns, and the loop's mechanics (cancel, progress, resume, best
weights, self-supervised mode, argument checks, CLI, the files beside the weights) on a tiny
module or very short runs."""

from __future__ import annotations

import json
import signal
import threading

import dask.array as da
import numpy as np
import pytest
import torch
from skimage import data, io
from torch import nn

from napari_histo_denoise import Cancelled, iter_train, train
from napari_histo_denoise.checkpoint import load_model, save_weights
from napari_histo_denoise.cli import main
from napari_histo_denoise.devices import resolve_precision
from napari_histo_denoise.events import drain
from napari_histo_denoise.files import file_sha256
from napari_histo_denoise.metrics import psnr
from napari_histo_denoise.models import DeepHistoAutoencoder, build_model
from napari_histo_denoise.noise import parse_noise
from napari_histo_denoise.patches import PatchSampler, augment, jitter_stain, tissue_fraction
from napari_histo_denoise.selfsupervised import (
    neighbor2neighbor_loss,
    neighbour_indices,
    subsample,
)
from napari_histo_denoise.settings import TrainSettings
from napari_histo_denoise.train_state import read_info
from napari_histo_denoise.training import load_images
from napari_histo_denoise.training.batches import prefetched

IHC = data.immunohistochemistry()  # 512 x 512 x 3 uint8, real IHC tissue
TRAIN, HELD_OUT = IHC[:, :384], IHC[:, 384:]  # the held-out strip is never trained on
FAST = dict(patch_size=32, batch_size=4, val_crop=32, val_crops=2)


class Conv3(nn.Module):
    """A 3x3 convolution clamped to [0, 1]: a stand-in model for tests of the loop itself."""

    def __init__(self, box_blur: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        if box_blur:  # a real (weak) denoiser: a per-channel 3x3 mean
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.bias.zero_()
                for c in range(3):
                    self.conv.weight[c, c] = 1 / 9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).clamp(0, 1)


class SmallResidual(nn.Module):
    """Two convolutions added to the input: a tiny denoiser that learns in a few dozen steps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.conv2(nn.functional.leaky_relu(self.conv1(x), 0.2))).clamp(0, 1)


class DropoutNet(nn.Module):
    """Convolutions with batch norm and dropout: a module whose training draws from torch's RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.drop = nn.Dropout2d(0.25)
        self.conv2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.drop(torch.relu(self.norm(self.conv1(x))))
        return (x + self.conv2(hidden)).clamp(0, 1)


def _denoise(model: nn.Module, noisy: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(noisy.transpose(2, 0, 1)[None].copy()))
    return out[0].permute(1, 2, 0).numpy()


def test_basic_model_training_lowers_loss_and_beats_the_noisy_input():
    result = train(TRAIN, "basic", noise="gaussian:50", steps=16, lr=3e-3, seed=0, **FAST)
    loss = result.history["loss"]
    assert len(loss) == 16
    assert np.mean(loss[-4:]) < 0.6 * np.mean(loss[:4])

    clean = HELD_OUT[192:256, :64].astype(np.float32) / 255
    noisy = parse_noise("gaussian:50")(clean, 7).astype(np.float32)
    denoised = _denoise(result.model, noisy)
    assert psnr(clean, denoised) > psnr(clean, noisy) + 1.0
    assert result.metadata["architecture"] == "basic"
    assert result.metadata["noise"] == "gaussian:50"
    assert result.metadata["device"] == "cpu"
    assert result.metadata["precision"] == resolve_precision("auto", "cpu")  # bf16 if native


def test_progress_events_are_yielded_and_passed_to_the_callback():
    seen = []
    events = iter_train(
        TRAIN, Conv3(), steps=6, val_images=HELD_OUT, val_every=3, progress=seen.append, **FAST
    )
    yielded = []
    result = drain(events, yielded.append)
    assert yielded == seen
    assert [e.step for e in yielded] == [1, 2, 3, 4, 5, 6]
    assert all(e.steps == 6 and np.isfinite(e.loss) for e in yielded)
    # Step 0 validates the initial weights; then steps 3 and 6.
    assert [v["step"] for v in result.history["val"]] == [0, 3, 6]
    assert yielded[3].val_psnr == result.history["val"][1]["psnr"]
    assert yielded[5].val_ssim == result.history["val"][2]["ssim"]
    elapsed = [e.elapsed_s for e in yielded]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_between_steps(kind):
    flag = threading.Event()
    cancel = flag if kind == "event" else flag.is_set
    done = []

    def on_progress(event):
        done.append(event.step)
        if event.step == 3:
            flag.set()

    with pytest.raises(Cancelled, match="after 3 of 50 steps"):
        train(TRAIN, Conv3(), steps=50, progress=on_progress, cancel=cancel, **FAST)
    assert done == [1, 2, 3]


def test_resume_continues_from_init_weights_and_leaves_the_given_model_alone():
    model = Conv3()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = dict(val_images=HELD_OUT, val_every=5, lr=1e-2, **FAST)
    first = train(TRAIN, model, steps=5, **options)
    for key, value in model.state_dict().items():  # the caller's module is not trained
        assert torch.equal(value, before[key])

    for init in (first.model, first.model.state_dict()):
        resumed = train(TRAIN, Conv3(), steps=1, init_weights=init, **options)
        # Step 0 of the resumed run measures exactly the weights the first run ended with.
        assert resumed.history["val"][0]["psnr"] == first.history["val"][-1]["psnr"]
    fresh = train(TRAIN, Conv3(), steps=1, **options)
    assert fresh.history["val"][0]["psnr"] != first.history["val"][-1]["psnr"]


def test_resume_from_a_weights_file(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", train(TRAIN, "basic", steps=1, **FAST).model)
    saved, _meta = load_model(path)
    resumed = train(TRAIN, "basic", steps=1, lr=1e-9, init_weights=path, **FAST)
    for key, value in saved.state_dict().items():
        if key.endswith("weight"):  # lr 1e-9: one step leaves the loaded weights in place
            torch.testing.assert_close(resumed.model.state_dict()[key], value)
    assert resumed.metadata["init_weights"] == str(path)


def test_chunks_of_training_add_up_in_the_lineage(tmp_path):
    first = train(TRAIN, "basic", steps=2, **FAST)
    own = first.metadata["lineage"]
    assert own["total"] | {"hours": 0} == {
        "chunks": 1,
        "steps": 2,
        "patches": 8,
        "hours": 0,
        "devices": [own["chunks"][0]["device"]],
        "train_images": ["images[0]"],
    }
    assert own["chunks"][0]["parent_sha256"] is None
    parent = first.save(tmp_path / "first.safetensors", int8=True)[-1]  # the int8 file

    second = train(TRAIN, "basic", steps=3, init_weights=parent, **FAST).metadata
    chunks, total = second["lineage"]["chunks"], second["lineage"]["total"]
    assert second["init_sha256"] == file_sha256(parent) == chunks[0]["sha256"]
    assert chunks[1]["parent_sha256"] == chunks[0]["sha256"] and "sha256" not in chunks[1]
    assert chunks[0]["finished"] == load_model(parent)[1]["created_utc"]
    assert (total["chunks"], total["steps"], total["patches"]) == (2, 5, 20)
    assert total["hours"] == pytest.approx(sum(c["hours"] for c in chunks), abs=1e-3)

    # Weights written before lineages were recorded (and trained from others) count as one
    # chunk, flagged as such.
    meta = {k: v for k, v in first.metadata.items() if k not in ("lineage", "init_sha256")}
    old = save_weights(tmp_path / "old.safetensors", first.model, meta | {"init_weights": "a.pt"})
    third = train(TRAIN, "basic", steps=1, init_weights=old, **FAST).metadata
    earlier = third["lineage"]["chunks"][0]
    assert earlier["steps"] == 2 and earlier["earlier_unrecorded"]
    assert earlier["stored_as"] == "float32" and chunks[0]["stored_as"] == "int8"
    assert third["lineage"]["total"]["steps"] == 3
    assert third["lineage"]["total"]["train_images"] == first.metadata["train_images"]


# Every kind of randomness of a run: noise levels, clean patches, stain jitter, dropout.
RESUMABLE = dict(
    steps=8, lr=1e-2, val_images=HELD_OUT, val_every=3, ema=0.9, noise="gaussian:15-50",
    clean_fraction=0.25, stain_jitter=0.05, seed=3, **FAST,
)  # fmt: skip


def _calls_until(count: int):
    """A cancel callable that says stop at its ``count``-th call."""
    calls = iter(range(1, 1_000_000))
    return lambda: next(calls) >= count


@pytest.mark.parametrize(
    ("cancel", "message", "stopped_at", "owed"),
    [
        # Cancel checks: 2 validation crops at step 0, steps 1-3, 2 crops, steps 4-6, 2 crops.
        (_calls_until(10), "after 5 of 8 steps", 5, False),  # before step 6
        (_calls_until(11), "during validation", 6, True),  # validating after step 6
    ],
    ids=["between steps", "during validation"],
)
def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path, cancel, message, stopped_at, owed):
    torch.manual_seed(0)
    net = DropoutNet()
    torch.manual_seed(1)  # dropout draws from torch's RNG: the same start for both runs
    whole = train(TRAIN, net, **RESUMABLE)

    state = tmp_path / "run.state.safetensors"
    torch.manual_seed(1)
    with pytest.raises(Cancelled, match=message):
        train(TRAIN, net, cancel=cancel, state=state, **RESUMABLE)
    info = read_info(state)
    assert (info["step"], info["validation_owed"]) == (stopped_at, owed)
    torch.manual_seed(99)  # the state brings its own torch RNG state
    resumed = train(TRAIN, net, resume=state, state=state, **RESUMABLE)

    assert resumed.history == whole.history  # loss, lr and validation of every step
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    for key in ("best_step", "best_val_psnr", "steps", "init_weights", "train_images"):
        assert resumed.metadata[key] == whole.metadata[key]
    assert resumed.metadata["resumed_from"] == str(state)
    assert not state.exists()  # a finished run leaves no state behind


def test_closing_the_generator_keeps_the_state(tmp_path):
    state = tmp_path / "run.state.safetensors"
    events = iter_train(TRAIN, Conv3(), steps=10, val_every=5, state=state, **FAST)
    for _ in range(3):
        next(events)
    assert not state.exists()  # the first checkpoint is at step 5
    events.close()
    assert read_info(state)["step"] == 3


def test_a_state_is_written_at_every_validation_point(tmp_path):
    state = tmp_path / "run.state.safetensors"
    seen = []
    train(
        TRAIN, Conv3(), steps=6, val_every=2, state=state, **FAST,
        progress=lambda e: seen.append(read_info(state)["step"] if state.exists() else None),
    )  # fmt: skip
    assert seen == [None, 2, 2, 4, 4, 4]
    assert not state.exists()  # deleted once the run is complete


def test_resume_refuses_another_run(tmp_path):
    state = tmp_path / "run.state.safetensors"
    flag = threading.Event()
    options = dict(steps=6, state=state, cancel=flag, **FAST)
    with pytest.raises(Cancelled):
        train(TRAIN, Conv3(), progress=lambda e: e.step == 2 and flag.set(), **options)
    with pytest.raises(ValueError, match=r"other settings: steps 7 \(the run's: 6\)"):
        train(TRAIN, Conv3(), steps=7, resume=state, **FAST)
    with pytest.raises(ValueError, match="other training images"):
        train([TRAIN, HELD_OUT], Conv3(), steps=6, resume=state, **FAST)
    with pytest.raises(ValueError, match="other model"):
        train(TRAIN, SmallResidual(), steps=6, resume=state, **FAST)
    with pytest.raises(ValueError, match="drop init_weights"):
        train(TRAIN, Conv3(), steps=6, resume=state, init_weights=Conv3(), **FAST)
    weights = save_weights(tmp_path / "w.safetensors", build_model("basic"))
    with pytest.raises(ValueError, match="not a training state file"):
        train(TRAIN, "basic", steps=6, resume=weights, **FAST)
    # device, precision and compile may change: they say where the run goes on.
    resumed = train(TRAIN, Conv3(), steps=6, resume=state, device="cpu", **FAST)
    assert resumed.metadata["steps"] == 6


def test_result_save_writes_report_and_curves_beside_the_weights(tmp_path):
    result = train(TRAIN, "basic", steps=3, val_images=HELD_OUT, val_every=2, **FAST)
    files = result.save(tmp_path / "w.safetensors", int8=True)
    assert [f.name for f in files] == [
        "w.safetensors", "w.json", "w.curves.png", "w.int8.safetensors"
    ]  # fmt: skip
    report = json.loads(files[1].read_text())
    assert report["history"]["lr"] == result.history["lr"] and len(report["history"]["loss"]) == 3
    assert [v["step"] for v in report["history"]["val"]] == [0, 2, 3]
    curves = io.imread(files[2])
    assert curves.shape == (440, 900, 3) and files[2].stat().st_size < 200_000
    assert len(np.unique(curves.reshape(-1, 3), axis=0)) > 20  # drawn, not blank


def test_validation_keeps_the_best_weights():
    blur = Conv3(box_blur=True)
    # An absurd learning rate wrecks the blur at the first step: the best weights are step 0's.
    result = train(TRAIN, blur, steps=4, lr=1.0, val_images=HELD_OUT, val_every=1, **FAST)
    scores = [v["psnr"] for v in result.history["val"]]
    assert max(scores[1:]) < scores[0]
    assert result.metadata["best_step"] == 0
    assert result.metadata["best_val_psnr"] == pytest.approx(scores[0], abs=1e-4)
    for key, value in blur.state_dict().items():
        assert torch.equal(result.model.state_dict()[key], value)
    # The blur is a real denoiser: above the noisy input on the same crops.
    assert scores[0] > result.metadata["val_noisy_psnr"]


def test_self_supervised_mode_learns_from_noisy_images_only():
    noisy = parse_noise("gaussian:25")(TRAIN / 255.0, 3).astype(np.float32)
    torch.manual_seed(0)
    model = SmallResidual()
    fixed = torch.from_numpy(noisy[:64, :64].transpose(2, 0, 1)[None].copy())

    def reconstruction_loss(net):  # the Neighbor2Neighbor loss without its ramped regulariser
        with torch.no_grad():
            return float(neighbor2neighbor_loss(net.eval(), fixed, np.random.default_rng(0), 0))

    result = train(
        noisy, model, mode="self-supervised", noise=None, steps=60, lr=1e-2, seed=0, **FAST
    )
    assert result.metadata["method"] == "neighbor2neighbor"
    assert reconstruction_loss(result.model) < 0.9 * reconstruction_loss(model)
    # It denoises a held-out crop although it never saw a clean pixel.
    clean = HELD_OUT[192:256, :64].astype(np.float32) / 255
    held_out_noisy = parse_noise("gaussian:25")(clean, 7).astype(np.float32)
    assert psnr(clean, _denoise(result.model, held_out_noisy)) > psnr(clean, held_out_noisy) + 1


def test_neighbour_subsampler_picks_two_different_adjacent_pixels_per_cell():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    first, second = neighbour_indices(images.shape, np.random.default_rng(0), images.device)
    assert first.shape == (2, 1, 4, 4) and bool((first != second).all())
    assert bool(torch.isin((first - second).abs(), torch.tensor([1, 2])).all())  # edge pairs
    assert not bool(((first + second) == 3).any())  # never diagonal (0-3 or 1-2)
    a = subsample(images, first)
    assert a.shape == (2, 3, 4, 4)
    row, col = first // 2, first % 2  # the picked pixel lies in its own 2 x 2 cell
    ys = torch.arange(4).view(1, 1, 4, 1) * 2 + row
    xs = torch.arange(4).view(1, 1, 1, 4) * 2 + col
    offset = torch.arange(2).view(2, 1, 1, 1) * 192 + torch.arange(3).view(1, 3, 1, 1) * 64
    assert torch.equal(a, (offset + ys * 8 + xs).float())


def test_patches_prefer_tissue_and_use_all_eight_orientations():
    white = np.full((256, 256, 3), 245, np.uint8)  # glass
    slide = np.concatenate([white, IHC[:256, :256]], axis=1)  # half background, half tissue
    sampler = PatchSampler([slide], ["slide"], 32)
    patches = sampler.sample(64, np.random.default_rng(0))
    assert patches.shape == (64, 3, 32, 32) and patches.dtype == np.float32
    fractions = [tissue_fraction(p.transpose(1, 2, 0)) for p in patches]
    assert tissue_fraction(white / 255.0) == 0
    assert np.mean(fractions) > 0.9  # uniform positions would give about 0.5

    square = np.arange(4).reshape(2, 2, 1)
    rng = np.random.default_rng(0)
    variants = {augment(square, rng).tobytes() for _ in range(200)}
    assert len(variants) == 8


class Normed(nn.Module):
    """A convolution and a batch norm: for the tests of batch-norm statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.norm(self.conv(x)))


def test_the_weight_average_of_a_warm_restart_is_full_at_once_and_averages_batch_norm():
    torch.manual_seed(0)
    start = Normed()
    options = dict(steps=3, lr=1e-9, ema=0.99, noise="gaussian:25", **FAST)
    fresh = train(TRAIN, start, **options).model.norm  # the decay ramps up from 0.1
    warm = train(TRAIN, start, init_weights=start.state_dict(), **options).model.norm
    # lr ~0: only batch norm's running statistics move (momentum 0.1 a step); a ramped average
    # follows them, a full one (0.99) barely leaves the statistics it started from
    assert fresh.num_batches_tracked == warm.num_batches_tracked == 3
    moved_fresh, moved_warm = (n.running_mean.norm() for n in (fresh, warm))
    assert moved_fresh > 0.05 and moved_warm < 0.15 * moved_fresh
    assert (warm.running_var - 1).abs().max() < 0.15 * (fresh.running_var - 1).abs().max()


def test_frozen_batch_norm_keeps_its_statistics_while_the_rest_learns():
    torch.manual_seed(0)
    start = Normed()
    with torch.no_grad():
        start.norm.running_mean.fill_(0.3)  # "trained" statistics, far from any batch's
    options = dict(init_weights=start.state_dict(), steps=4, lr=1e-2, noise="gaussian:25", **FAST)
    result = train(TRAIN, start, freeze_batch_norm=True, **options)
    norm = result.model.norm
    assert torch.equal(norm.running_mean, start.norm.running_mean)
    assert torch.equal(norm.running_var, start.norm.running_var)
    assert norm.num_batches_tracked == 0 and result.metadata["freeze_batch_norm"] is True
    assert not torch.equal(result.model.conv.weight, start.conv.weight)
    assert not torch.equal(norm.weight, start.norm.weight)  # its scale still learns
    moved = train(TRAIN, start, **options).model.norm
    assert not torch.equal(moved.running_mean, start.norm.running_mean)


def test_batches_do_not_depend_on_how_many_threads_draw_them():
    sampler = PatchSampler([IHC], ["ihc"], 32)

    def batches(workers, count=6, state=None):
        rng = np.random.default_rng(0)
        if state is not None:
            rng.bit_generator.state = state
        drawn = list(prefetched(sampler, 4, rng, count, workers))
        return drawn, rng.bit_generator.state

    (one, end), (three, _) = batches(1), batches(3)
    for (a, state_a), (b, state_b) in zip(one, three, strict=True):
        assert np.array_equal(a, b) and state_a == state_b
    assert one[-1][1] == end  # the last batch's state is where the stream stopped
    rest, _ = batches(2, 3, state=one[2][1])  # a stream restarted after the third batch
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(one[3:], rest, strict=True))
    closed = prefetched(sampler, 4, np.random.default_rng(0), 100, 2)
    assert np.array_equal(next(closed)[0], one[0][0])
    closed.close()  # returns at once: batches not yet begun are cancelled


def test_stain_jitter_varies_each_patch_within_stain_colours():
    batch = torch.from_numpy(IHC[:128].reshape(2, 64, 512, 3)[:, :, :64]).permute(0, 3, 1, 2)
    batch = (batch.float() / 255).contiguous(memory_format=torch.channels_last)
    before = batch.clone()
    same = jitter_stain(batch, np.random.default_rng(0), 0.0)
    assert same.dtype == torch.float32 and (same - batch).abs().max() < 1e-5
    jittered = jitter_stain(batch, np.random.default_rng(1), 0.05)
    assert torch.equal(batch, before) and 0 <= jittered.min() and jittered.max() <= 1
    change = (jittered - batch).abs().mean(dim=(1, 2, 3))
    assert (0.001 < change).all() and (change < 0.1).all() and change[0] != change[1]
    # the same factors applied step by step in HED optical density, one patch at a time
    from skimage.color import hed_from_rgb, rgb_from_hed

    rng = np.random.default_rng(1)
    scale, shift = 1 + rng.uniform(-0.05, 0.05, (2, 3)), rng.uniform(-0.05, 0.05, (2, 3))
    brightness = 1 + rng.uniform(-0.05, 0.05, 2)
    for i in range(2):
        hed = -np.log(np.maximum(batch[i].permute(1, 2, 0).numpy(), 1e-6)) @ hed_from_rgb
        jittered_hed = hed * scale[i] + shift[i]
        expected = np.clip(np.exp(-(jittered_hed @ rgb_from_hed)) * brightness[i], 0, 1)
        assert np.abs(jittered[i].permute(1, 2, 0).numpy() - expected).max() < 1e-5


def test_load_images_reads_folders_and_files(tmp_path):
    io.imsave(tmp_path / "a.png", IHC[:64, :64], check_contrast=False)
    io.imsave(tmp_path / "b.tif", IHC[64:128, :96], check_contrast=False)
    (tmp_path / "notes.txt").write_text("not an image")
    arrays, names = load_images(tmp_path)
    assert names == ["a.png", "b.tif"]
    assert [a.shape for a in arrays] == [(64, 64, 3), (64, 96, 3)]
    np.testing.assert_array_equal(arrays[1], IHC[64:128, :96])
    arrays, names = load_images([tmp_path / "a.png", IHC])
    assert names == ["a.png", "images[1]"] and arrays[1] is IHC
    pyramid = [da.from_array(IHC, chunks=128), da.from_array(IHC[::2, ::2], chunks=128)]
    arrays, names = load_images([pyramid])  # a multiscale layer: level 0, read into memory
    assert isinstance(arrays[0], np.ndarray)
    np.testing.assert_array_equal(arrays[0], IHC)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(mode="noise2noise"), "unknown training mode 'noise2noise'"),
        (dict(noise="gausian:25"), "invalid noise spec 'gausian:25'"),
        (dict(patch_size=40), "patch_size must be a multiple of 16"),
        (dict(mode="self-supervised", patch_size=48), "multiple of 32 in self-supervised"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(lr=-1.0), "lr must be a positive finite number"),
        (dict(precision="fp8"), "unknown precision 'fp8'"),
        (dict(noise=None), "synthetic training needs a noise spec"),
        (dict(batch_size=1, patch_size=16), "batch norm"),
        (dict(cancel=42), "cancel must be a threading.Event or a callable"),
        (dict(init_weights=3.5), "init_weights must be"),
    ],
)
def test_bad_arguments_give_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        train(TRAIN, "basic", **{"steps": 1, **options})


def test_bad_model_and_images_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model 'huge'.*'basic', 'deep'"):
        train(TRAIN, "huge", steps=1)
    with pytest.raises(ValueError, match="holds no images"):
        train(tmp_path, Conv3(), steps=1)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        train(tmp_path / "missing", Conv3(), steps=1)
    with pytest.raises(ValueError, match="no images given"):
        train([], Conv3(), steps=1)
    with pytest.raises(ValueError, match="float images must hold finite values in"):
        train(TRAIN * 2.0, Conv3(), steps=1, **FAST)
    with torch.device("meta"):  # deep weights without the memory
        deep = DeepHistoAutoencoder().state_dict()
    with pytest.raises(ValueError, match="these are weights of the deep model"):
        train(TRAIN, "basic", steps=1, init_weights=deep)


def test_settings_round_trip_through_iter_train():
    import dataclasses

    settings = TrainSettings(steps=2, lr=1e-2, val_every=1, **FAST)
    events = list(iter_train(TRAIN, Conv3(), val_images=HELD_OUT, **dataclasses.asdict(settings)))
    assert [e.step for e in events] == [1, 2] and events[-1].val_psnr is not None
    assert settings.validation_interval == 1
    assert TrainSettings(steps=50).validation_interval == 5


def test_cli_train_writes_weights_with_metadata(tmp_path, capsys):
    images, val = tmp_path / "train", tmp_path / "val"
    images.mkdir()
    val.mkdir()
    io.imsave(images / "ihc.png", TRAIN[:128, :128], check_contrast=False)
    io.imsave(val / "ihc_val.png", HELD_OUT[:64, :64], check_contrast=False)
    out = tmp_path / "w.safetensors"
    argv = ["train", "--images", str(images), "--model", "basic", "--noise", "gaussian:15-50"]
    argv += ["--steps", "2", "--patch-size", "32", "--batch-size", "2", "--val", str(val)]
    argv += ["--val-crop", "32", "--val-crops", "1", "-o", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "step 2 (100%) loss" in captured.err and "val " in captured.err
    assert f"wrote {out}, {out.with_suffix('.json')}, {tmp_path / 'w.curves.png'}" in captured.out
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["metadata"]["steps"] == 2 and len(report["history"]["loss"]) == 2
    _model, meta = load_model(out)
    assert meta["architecture"] == "basic" and meta["steps"] == 2
    assert meta["noise"] == "gaussian:15-50" and meta["train_images"] == ["ihc.png"]
    assert {"best_val_psnr", "best_val_ssim", "elapsed_s", "device", "lr", "seed"} <= set(meta)

    assert main(argv) == 2  # exists: refused before any training
    assert "exists; pass --overwrite" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    argv[argv.index(str(images))] = str(empty)
    assert main([*argv, "--overwrite"]) == 2
    assert "holds no images" in capsys.readouterr().err


def test_cli_ctrl_c_keeps_the_state_and_resume_finishes_the_run(tmp_path, capsys, monkeypatch):
    images = tmp_path / "train"
    images.mkdir()
    io.imsave(images / "ihc.png", TRAIN[:128, :128], check_contrast=False)
    argv = ["train", "--images", str(images), "--steps", "4", "--patch-size", "32"]
    argv += ["--batch-size", "2", "--val-every", "1", "--lr", "3e-3"]
    whole, part = tmp_path / "whole.safetensors", tmp_path / "part.safetensors"
    assert main([*argv, "-o", str(whole)]) == 0

    from napari_histo_denoise.cli.progress_line import ProgressLine

    show = ProgressLine.show

    def interrupt_at_step_2(self, event):
        show(self, event)
        if event.step == 2:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends

    monkeypatch.setattr(ProgressLine, "show", interrupt_at_step_2)
    assert main([*argv, "-o", str(part)]) == 130
    state = tmp_path / "part.state.safetensors"
    assert f"after 2 of 4 steps; the run's state is in {state}" in capsys.readouterr().err
    assert not part.exists() and read_info(state)["step"] == 2
    assert main([*argv, "-o", str(part)]) == 2  # a fresh run would discard the state
    assert "holds an interrupted run" in capsys.readouterr().err

    monkeypatch.undo()
    # Options not given again are the run's own.
    assert main(["train", "--images", str(images), "--resume", str(state), "-o", str(part)]) == 0
    assert not state.exists()
    expected, meta = load_model(whole)
    resumed, resumed_meta = load_model(part)
    for key, value in expected.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert resumed_meta["steps"] == meta["steps"] == 4
