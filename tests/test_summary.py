import json

import pytest

from napari_histo_denoise.cli import main
from napari_histo_denoise.models import build_model
from napari_histo_denoise.summary import component_of, model_summary, render

from seed_report import breakdown_rows, layer_rows, seed_text

TITLES = {"basic": "BASIC AUTOENCODER", "deep": "DEEP AUTOENCODER"}


@pytest.fixture(scope="module")
def summaries():
    return {name: model_summary(name) for name in TITLES}


def rows_of(summary):
    return [
        (r.name, r.type, sum(r.input_shapes, ()), r.output_shape, r.params) for r in summary.layers
    ]


@pytest.mark.parametrize("name", TITLES)
def test_every_layer_row_equals_the_seed(summaries, name):
    seed = layer_rows(seed_text(), TITLES[name])
    assert len(seed) == {"basic": 63, "deep": 92}[name]
    assert rows_of(summaries[name]) == seed


@pytest.mark.parametrize("name", TITLES)
def test_text_report_reproduces_the_seed_tables(summaries, name):
    text = render([summaries[name]], "text")
    assert layer_rows(text, TITLES[name]) == layer_rows(seed_text(), TITLES[name])
    ours = breakdown_rows(text, TITLES[name])
    seed = breakdown_rows(seed_text(), TITLES[name])
    # The seed files the deep model's stem under OTHER; we call it STEM and count it.
    assert [(c.replace("STEM", "OTHER"), n, p) for c, n, p in ours] == seed


def test_totals_and_components_add_up(summaries):
    basic, deep = summaries["basic"], summaries["deep"]
    assert basic.total_params == basic.trainable_params == 34_544_963
    assert deep.total_params == deep.trainable_params == 133_288_259
    assert {c.name: c.params for c in basic.components} == {
        "ENCODER": 4_689_216,
        "BOTTLENECK": 14_161_920,
        "DECODER": 15_656_576,
        "FINAL": 37_251,
    }
    # The seed's deep totals, plus the stem (9,600) that its grand total leaves out.
    assert {c.name: c.params for c in deep.components} == {
        "STEM": 9_600,
        "ENCODER": 56_430_720,
        "BOTTLENECK": 56_641_536,
        "DECODER": 20_169_152,
        "FINAL": 37_251,
    }
    for s in summaries.values():
        assert sum(c.params for c in s.components) == s.total_params
        assert sum(c.percent for c in s.components) == pytest.approx(100)
    assert basic.size_mb == pytest.approx(131.78, abs=0.005)
    assert deep.size_mb == pytest.approx(508.45, abs=0.005)


def test_data_flow_follows_the_real_skip_connections(summaries):
    for s in summaries.values():
        sources = {st.name: st.sources for st in s.stages}
        assert sources["decoder3"] == ("decoder4", "encoder3")
        assert sources["decoder2"] == ("decoder3", "encoder2")
        assert sources["decoder1"] == ("decoder2", "encoder1")
        assert sources["decoder4"] == ()  # the bottleneck alone, no skip
        assert s.levels == 4 and s.skips == 3
    assert summaries["deep"].residual_blocks == 15
    assert summaries["basic"].residual_blocks == 0
    # The deep model goes to 1/16 resolution, not the 8 x 8 of the seed's hand-drawn map.
    bottleneck = next(st for st in summaries["deep"].stages if st.name == "bottleneck")
    assert bottleneck.output_shape == (1, 1024, 16, 16)


def test_flops_match_the_measured_model_cost(summaries):
    # docs/design.md: basic 81.9 and deep 190.8 GFLOP per 256 x 256 tile.
    assert summaries["basic"].gflops == pytest.approx(81.9, abs=0.05)
    assert summaries["deep"].gflops == pytest.approx(190.8, abs=0.05)


def test_memory_analysis_is_consistent(summaries):
    for s in summaries.values():
        m = s.memory
        assert m.batch_size == 8
        assert m.gradients_mb == m.parameters_mb == pytest.approx(s.size_mb)
        assert m.optimizer_mb == pytest.approx(2 * m.parameters_mb)
        assert m.input_mb == pytest.approx(6.0)  # 8 x 3 x 256 x 256 fp32
        assert sum(m.stage_activations_mb.values()) == pytest.approx(m.activations_mb)
        assert m.training_mb > m.inference_mb > m.parameters_mb
        # The training forward keeps every block's output for backward, so it holds at least
        # the sum of the block outputs; inference holds far less.
        outputs_mb = sum(8 * 4 * _numel(st.output_shape[1:]) for st in s.stages) / 2**20
        assert m.activations_mb > outputs_mb
        assert m.inference_activations_mb < m.activations_mb / 3


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_activation_memory_scales_with_batch_and_area():
    small = model_summary("basic", input_shape=(1, 3, 64, 64), batch_size=2).memory
    large = model_summary("basic", input_shape=(1, 3, 64, 64), batch_size=8).memory
    wide = model_summary("basic", input_shape=(1, 3, 128, 128), batch_size=2).memory
    assert large.activations_mb == pytest.approx(4 * small.activations_mb, rel=1e-3)
    assert wide.activations_mb == pytest.approx(4 * small.activations_mb, rel=1e-3)
    assert large.inference_activations_mb == pytest.approx(
        4 * small.inference_activations_mb, rel=1e-3
    )


def test_summary_of_a_module_leaves_it_untouched():
    model = build_model("basic").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = model_summary(model, input_shape=(1, 3, 64, 64), batch_size=2)
    assert s.class_name == "HistoAutoencoder" and s.total_params == 34_544_963
    assert not model.training
    after = model.state_dict()
    assert all(after[k].device.type == "cpu" and after[k].equal(v) for k, v in before.items())


def test_summary_of_a_frozen_custom_module_counts_trainable_params():
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 3, 1))
    model[0].requires_grad_(False)
    s = model_summary(model, input_shape=(1, 3, 32, 32), batch_size=1)
    assert s.total_params == 8 * 3 * 9 + 8 + 3 * 8 + 3
    assert s.trainable_params == 3 * 8 + 3
    assert [r.name for r in s.layers] == ["0", "1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (1, 3, 250, 256)}, "multiples of 16"),
        ({"input_shape": (1, 1, 256, 256)}, r"\(N, 3, H, W\)"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_summary_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        model_summary("basic", **kwargs)


def test_unknown_model_and_format():
    with pytest.raises(ValueError, match="valid names"):
        model_summary("resnet")
    with pytest.raises(ValueError, match="valid formats"):
        render([model_summary("basic", input_shape=(1, 3, 32, 32))], "html")


def test_json_and_markdown(summaries):
    data = json.loads(render(list(summaries.values()), "json"))
    assert [d["total_params"] for d in data] == [34_544_963, 133_288_259]
    assert data[1]["layers"][0]["name"] == "initial.0"
    assert data[0]["memory"]["training_mb"] > data[0]["memory"]["inference_mb"]
    md = render(list(summaries.values()), "markdown")
    assert "## Model comparison" in md
    for s in summaries.values():
        for row in s.layers:
            assert f"| `{row.name}` | {row.type} |" in md


def test_component_names():
    assert component_of("initial.0") == "STEM"
    assert component_of("encoder3.4.conv2") == "ENCODER"
    assert component_of("decoder1.0") == "DECODER"
    assert component_of("final.3") == "FINAL"


def test_cli_summary_both_reproduces_every_seed_row(capsys):
    assert main(["summary", "both"]) == 0
    text = capsys.readouterr().out
    seed = seed_text()
    for title in TITLES.values():
        assert layer_rows(text, title) == layer_rows(seed, title)
    for section in (
        "MODEL COMPARISON",
        "ARCHITECTURE MAP",
        "DATA FLOW MAP",
        "PARAMETER BREAKDOWN",
        "MEMORY ANALYSIS",
    ):
        assert section in text


def test_cli_summary_formats_and_output_file(tmp_path, capsys):
    out = tmp_path / "deep.json"
    assert main(["summary", "deep", "--format", "json", "--batch-size", "2", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data[0]["memory"]["batch_size"] == 2
    assert main(["summary", "basic", "--format", "markdown", "--input-size", "64"]) == 0
    assert "(1, 3, 64, 64)" in capsys.readouterr().out


def test_cli_reports_bad_input_in_one_line(capsys):
    assert main(["summary", "basic", "--input-size", "100"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("histo-denoise summary: error:") and "multiples of 16" in err


def test_repeated_traces_give_the_same_data_flow():
    # Storage addresses are reused across and within traces; the skips must not change.
    flows = {
        tuple((st.name, st.sources) for st in model_summary("deep", (1, 3, 64, 64), 2).stages)
        for _ in range(5)
    }
    assert len(flows) == 1
