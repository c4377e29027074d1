"""A study over network types on the tiny model, and its recommendation trained and exported."""

from __future__ import annotations

import json
import shutil
import tomllib

from lrfind.cli import main

SPACE = """
description = "network types on the tiny model"
network_dim = [4]
network_alpha_fraction = [1.0]
epochs = 1
repeats = [1]
network_type = ["loha", "lokr"]
conv_dim_fraction = [0.5]
lokr_factor = [4]

[fixed]
resolution = 64
train_batch_size = 2
network_train_unet_only = true

[budget]
trial_budget_steps = 6
eval_every_steps = 3
"""


def test_study_over_network_types_recommends_a_run_that_trains_and_exports(
        example_dataset, tmp_path, tiny, feature_store, capsys):
    from lrfind.network import load_lora
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe
    from lrfind.study.config import StudyConfig
    from lrfind.study.runner import run_study

    out = tmp_path / "studies" / "types"
    run_probe(ProbeConfig(dataset={"train_dir": example_dataset, "resolution": 64, "batch_size": 2}, steps=24, out=out,
                          progress=False),
              components=tiny, store=feature_store)
    (tmp_path / "space.toml").write_text(SPACE)
    cfg = StudyConfig(dataset={"train_dir": example_dataset}, name="types", space=str(tmp_path / "space.toml"),
                      n_trials=4,
                      out=out, progress=False, heartbeat_interval=1, grace_period=2, sampler="tpe")
    run_study(cfg)
    rec = json.loads((out / "recommendation.json").read_text())
    kind = rec["network_type"]
    assert kind in ("loha", "lokr") and rec["train_values"]["network_module"] == "lycoris.kohya"
    trial_file = next((out / "trials").glob("*/lora.safetensors"))
    _, trial_meta = load_lora(trial_file)
    assert trial_meta["ss_network_module"] == "lycoris.kohya"

    capsys.readouterr()
    assert main(["train", str(example_dataset), "--from-study", "types", "--study-dir", str(out),
                 "--sample-steps", "2", "--xy-grid-weights", "1", "--no-progress"]) == 0
    final = out / "final"
    state, meta = load_lora(final / "types.safetensors")
    marker = {"loha": ".hada_w1_a", "lokr": ".lokr_w1"}[kind]
    assert any(k.endswith(marker) for k in state)
    assert meta["ss_network_module"] == "lycoris.kohya"
    assert json.loads(meta["ss_network_args"])["algo"] == kind
    assert (final / "types_xy_grid.png").is_file()

    assert main(["export-kohya", "types", "--study-dir", str(out), "--out", str(tmp_path / "kohya"),
                 "--dataset", str(example_dataset)]) == 0
    config = tomllib.loads((tmp_path / "kohya" / "kohya_config.toml").read_text())
    network = config["additional_network_arguments"]
    assert network["network_module"] == "lycoris.kohya" and f"algo={kind}" in network["network_args"]
