"""The network type in a study: kinds -> kohya options, trial lr factors, recommendation, export."""

from __future__ import annotations

import tomllib

import pytest

from lrfind.export.kohya_config import kohya_training_toml
from lrfind.network.kinds import network_values
from lrfind.network.types import check_network_args, network_type_names, type_of
from lrfind.probe.derive import network_lr_factor
from lrfind.study.recommend import TrialRecord, recommend
from lrfind.study.space import load_space
from lrfind.study.trial_params import TrialParams
from lrfind.study.trial_values import plan_trial
from lrfind.artifacts.recommendation import Recommendation
from lrfind.study.stats import DatasetStats
from probe_reports import probe_with_lr

SPACE = """
network_dim = [8, 16]
network_alpha_fraction = [0.5, 1.0]
epochs = 4
network_type = ["lora", "locon", "lycoris_locon", "loha", "lokr"]
conv_dim_fraction = [0.25, 0.5]
lokr_factor = [4, 8]
"""
STATS = DatasetStats.from_dict({"name": "ds", "reg_images": [], "concepts": [
    {"folder": "10_mychar", "name": "mychar", "repeats": 10, "images_per_bucket": [[[512, 512], 6]]}]})
PROBE = probe_with_lr(2e-4, 8, 8.0, status="converged")


@pytest.mark.parametrize("kind", network_type_names())
def test_every_kind_is_valid_kohya_options_and_maps_back(kind):
    values = network_values(kind, 16, 8.0, conv_dim_fraction=0.25, lokr_factor=4)
    check_network_args(values["network_module"], values["network_args"])  # the network type accepts them
    assert type_of(values["network_module"], values["network_args"]).name == kind
    if kind != "lora":
        assert (values["network_args"]["conv_dim"], values["network_args"]["conv_alpha"]) == (4, 2.0)
    assert ("factor" in values["network_args"]) == (kind == "lokr")


def test_locon_without_a_fraction_adapts_convs_at_dim_and_lycoris_keeps_its_defaults():
    assert network_values("locon", 8, 4.0)["network_args"] == {"conv_dim": 8, "conv_alpha": 4.0}
    assert network_values("loha", 8, 4.0) == {"network_module": "lycoris.kohya", "network_args": {"algo": "loha"}}
    assert network_values("lora", 8, 4.0, conv_dim_fraction=0.5) == {"network_module": "networks.lora",
                                                                      "network_args": {}}


def params(kind, **kw):
    return TrialParams(network_dim=8, network_alpha_fraction=1.0, epochs=4, repeats=None, lr_multiplier=1.0,
                       optimizer="AdamW", lr_scheduler="constant", network_type=kind, **kw)


@pytest.mark.parametrize("kind", network_type_names())
def test_trial_lr_is_the_probes_times_the_measured_type_factor(tmp_path, kind):
    (tmp_path / "s.toml").write_text(SPACE)
    space = load_space(tmp_path / "s.toml")
    lora = plan_trial(params("lora"), PROBE, space, STATS).train_values
    other = plan_trial(params(kind, lokr_factor=4 if kind == "lokr" else None), PROBE, space, STATS).train_values
    assert other["unet_lr"] == pytest.approx(lora["unet_lr"] * network_lr_factor(kind))
    assert other["network_module"] == network_values(kind, 8, 8.0)["network_module"]
    # a probe of another type: the ratio of the two factors
    probe = PROBE.model_copy(update={"network_module": "lycoris.kohya", "network_args": {"algo": "loha"}})
    from_loha = plan_trial(params(kind, lokr_factor=4 if kind == "lokr" else None), probe, space, STATS)
    assert from_loha.train_values["unet_lr"] == pytest.approx(
        other["unet_lr"] / network_lr_factor("loha"))


def test_recommendation_and_kohya_export_carry_the_network(tmp_path):
    (tmp_path / "s.toml").write_text(SPACE)
    space = load_space(tmp_path / "s.toml")
    best = {"network_dim": 16, "network_alpha_fraction": 0.5, "epochs": 4, "lr_multiplier": 1.0,
            "optimizer": "AdamW", "lr_scheduler": "constant", "network_type": "lokr", "conv_dim_fraction": 0.5,
            "lokr_factor": 8}
    trials = [TrialRecord(0, "COMPLETE", 0.3, best),
              TrialRecord(1, "COMPLETE", 0.4, {**best, "network_type": "lora"}),
              TrialRecord(2, "COMPLETE", 0.5, {**best, "network_type": "loha"})]
    rec = Recommendation.from_json(recommend(trials, space, PROBE, STATS).to_json())
    assert rec.network_module == rec.train_values["network_module"] == "lycoris.kohya"
    assert rec.train_values["network_args"] == {"algo": "lokr", "conv_dim": 8, "conv_alpha": 4.0, "factor": 8}
    assert "LoKr (lycoris.kohya algo=lokr conv_dim=8 conv_alpha=4.0 factor=8)" in rec.summary
    assert set(rec.agreement) >= {"network_type"} and not rec.agreement["network_type"].agree
    text = kohya_training_toml(rec, model_path="/m.safetensors", dataset_dir=tmp_path, output_dir=tmp_path / "o",
                               output_name="x", logging_dir=None)
    flat = {k: v for section in tomllib.loads(text).values() for k, v in section.items()}
    assert flat["network_module"] == "lycoris.kohya"
    # kohya: `key, value = net_arg.split("=")` for each, the network converts the strings
    assert dict(a.split("=") for a in flat["network_args"]) == {"algo": "lokr", "conv_dim": "8",
                                                                "conv_alpha": "4.0", "factor": "8"}
    assert "lycoris-lora" in text
