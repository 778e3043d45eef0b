"""``histo-denoise bench``'s CPU section: every backend and precision against torch fp32."""

from __future__ import annotations

import json

from napari_histo_denoise.cli import main


def test_the_cpu_section_times_every_path_and_checks_it_against_torch_fp32(tmp_path, capsys):
    figures = tmp_path / "bench.json"
    argv = ["bench", "--sections", "cpu", "--cpu-size", "256", "--cpu-tile", "144"]
    assert main([*argv, "--overlap", "16", "--json", str(figures)]) == 0
    rows = json.loads(figures.read_text())["cpu"]
    assert [r["path"].removesuffix(" (auto)") for r in rows] == [
        "torch fp32",
        "torch bf16 + channels_last",
        "openvino fp32",
        "openvino bf16",
    ]
    assert sum(r["path"].endswith("(auto)") for r in rows) == 1  # what auto runs here
    assert rows[0]["speed-up"] == 1.0 and all(r["Mpx/s"] > 0 for r in rows)
    for row in rows[1:]:  # trained weights (the candidate): the accuracy gate
        assert row["PSNR vs torch fp32 (dB)"] >= 45
    out = capsys.readouterr().out
    assert "CPU: " in out and "native bf16: " in out and "| path | s | Mpx/s |" in out
