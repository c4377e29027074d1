"""`lrfind demo --model tiny-sdxl` end to end (its own file: pytest-xdist runs a file per worker,
and the SD 1.x demo tests already fill one)."""

from __future__ import annotations

import json


def test_the_demo_runs_every_step_on_tiny_sdxl(tmp_path, capsys):
    """`lrfind demo --model tiny-sdxl`: the probe's default 200 steps reach a plateau (Prodigy leaves
    d0 in time on tiny-sdxl), the SDXL tiny preset (every network type), kohya's SDXL names and SDXL export."""
    from safetensors import safe_open

    from lrfind.cli import main

    assert main(["demo", "--model", "tiny-sdxl", "--trials", "1", "--out", str(tmp_path)]) == 0, capsys.readouterr().out
    study = tmp_path / "studies" / "demo"
    probe = json.loads((study / "probe.json").read_text())
    assert probe["steps"] == 200 and probe["status"] == "converged" and probe["unet_lr"] > 0
    rec = json.loads((study / "recommendation.json").read_text())
    assert rec["network_type"] in ("lora", "locon", "loha", "lokr")
    with safe_open(str(study / "final" / "demo.safetensors"), "pt") as handle:
        assert handle.metadata()["ss_base_model_version"] == "sdxl_base_v1-0"
        assert all(key.startswith(("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_"))
                   for key in handle.keys())
    config = (study / "kohya" / "kohya_config.toml").read_text()
    assert config.startswith("# kohya sd-scripts training config (sdxl_train_network.py --config_file)")
    assert (tmp_path / "reports" / "demo.html").is_file()
