"""export-kohya of a LyCORIS study: the exported args make kohya build the network lrfind trained.

lycoris-lora 4.1.3's default preset stops `lycoris.kohya.create_network` on SD's UNet (duplicated
lora name); the export writes lrfind's preset as a file and names it in network_args.
"""

from __future__ import annotations

import tomllib

import pytest
from lycoris.utils.preset import read_preset

from lrfind.export.lycoris_preset import PRESET_FILE, kohya_preset_toml
from lrfind.network import attach_network
from lrfind.network.lycoris_args import resolved_preset
from test_export_kohya import kohya_flatten, make_recommendation, run_cli, write_study
from test_lycoris import lycoris_reference, model, spec  # noqa: F401 - model is a fixture


def test_no_preset_file_where_kohya_builds_the_same_network():
    assert kohya_preset_toml("networks.lora", {"conv_dim": 4}) is None
    assert kohya_preset_toml("lycoris.kohya", {"algo": "loha", "preset": "attn-mlp"}) is None
    assert kohya_preset_toml("lycoris.kohya", {"algo": "loha", "preset": "/my/preset.toml"}) is None


@pytest.mark.parametrize("args", [{"algo": "loha"}, {"algo": "lokr", "factor": 4}, {"algo": "locon", "preset": "full"}])
def test_the_preset_file_builds_in_lycoris_what_lrfind_trained(model, tmp_path, args):
    """kohya hands preset=FILE.toml to lycoris' read_preset: the modules equal lrfind's, while
    the built-in preset name stops lycoris as it stops kohya."""
    with pytest.raises(AssertionError, match="duplicated lora name"):
        lycoris_reference(model, {k: v for k, v in args.items() if k != "preset"}, resolved_preset("full"))
    path = tmp_path / PRESET_FILE
    path.write_text(kohya_preset_toml("lycoris.kohya", args))
    built = lycoris_reference(model, {k: v for k, v in args.items() if k != "preset"}, read_preset(str(path)))
    network = attach_network(model, spec(args, dim=8, alpha=2.0), seed=0)
    ours = {k: tuple(v.shape) for k, v in network.kohya_state_dict().items()}
    network.detach()
    assert ours == built


def test_export_of_a_loha_study_writes_and_names_the_preset(tmp_path, monkeypatch, capsys):
    rec = make_recommendation(tmp_path)
    rec = rec.model_copy(update={"train_values": {**rec.train_values, "network_module": "lycoris.kohya",
                                                  "network_args": {"algo": "loha"}}})
    study = write_study(tmp_path, rec)
    out = tmp_path / "export"
    assert run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study), "--out", str(out)]) == 0
    config = kohya_flatten(tomllib.loads((out / "kohya_config.toml").read_text()))
    assert config["network_module"] == "lycoris.kohya"
    assert sorted(config["network_args"]) == sorted(["algo=loha", f"preset={out / PRESET_FILE}"])
    assert read_preset(str(out / PRESET_FILE)) is not None
    assert str(out / PRESET_FILE) in capsys.readouterr().out
