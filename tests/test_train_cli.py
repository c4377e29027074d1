"""`lrfind train` as a user runs it: kohya names, TOML configs, outputs, and bad input."""

from __future__ import annotations

import json

import pytest

from lrfind.cli import main

BASE = ["--model", "tiny", "--resolution", "64", "--network-dim", "4", "--network-alpha", "2",
        "--train-batch-size", "4", "--no-progress", "--network-train-unet-only"]


def test_train_writes_kohya_lora_epochs_metadata_and_tensorboard(example_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["train", str(example_dataset), *BASE, "--max_train_epochs", "2", "--save_every_n_epochs", "1",
               "--output-dir", str(out), "--output-name", "mychar", "--logging-dir", str(tmp_path / "logs"),
               "--optimizer-type", "DAdaptAdam", "--learning-rate", "1.0", "--save-precision", "bf16"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["mychar-000001.safetensors", "mychar-000002-state",
                                                     "mychar.safetensors", "mychar_epochs.json", "mychar_final.json"]
    from safetensors import safe_open

    with safe_open(str(out / "mychar.safetensors"), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
        assert f.get_tensor(keys[0]).dtype.is_floating_point
    assert all(k.startswith("lora_unet_") for k in keys)
    assert {"ss_network_dim", "ss_network_alpha", "ss_optimizer", "ss_steps", "ss_epoch", "ss_tag_frequency",
            "ss_dataset_dirs", "ss_sd_model_name", "ss_resolution", "ss_seed"} <= set(meta)
    assert meta["ss_network_dim"] == "4" and float(meta["ss_network_alpha"]) == 2.0 and meta["ss_epoch"] == "2"
    assert "10_lrfcat cat" in json.loads(meta["ss_dataset_dirs"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [logdir] = list((tmp_path / "logs").glob("*/network_train"))
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/current", "loss/average", "loss/epoch_average", "loss/validation", "lr/unet", "lr/d*lr/unet"} <= tags
    assert [e.step for e in acc.Scalars("loss/epoch_average")] == [1, 2]  # kohya: step = epoch
    assert "saved" in capsys.readouterr().out


def test_toml_config_with_kohya_sections_and_cli_override(example_dataset, tmp_path):
    config = tmp_path / "cfg.toml"
    config.write_text(f"""
[model_arguments]
pretrained_model_name_or_path = "tiny"
[dataset_arguments]
train_data_dir = "{example_dataset.as_posix()}"
resolution = 64
[training_arguments]
max_train_steps = 2
output_dir = "{(tmp_path / 'from_toml').as_posix()}"
output_name = "fromtoml"
network_train_unet_only = true
progress = false
[optimizer_arguments]
optimizer_type = "Prodigy"
learning_rate = 1.0
optimizer_args = ["safeguard_warmup=True", "d_coef=0.5"]
""")
    assert main(["train", "--config_file", str(config), "--output-name", "override"]) == 0
    assert (tmp_path / "from_toml" / "override.safetensors").is_file()


@pytest.mark.parametrize("args,needle", [
    (["--optimizer-type", "Adam"], "unknown optimizer"),
    (["--lr-scheduler", "cosine_annealing"], "unknown lr scheduler"),
    (["--resolution", "100"], "multiple of 64"),
    (["--network-dim", "0"], "network_dim"),
    (["--learning-rate", "-1"], "learning_rate"),
    (["--learning-rate", "inf"], "learning_rate: Input should be a finite number"),
    (["--learning-rate", "nan"], "learning_rate"),
    (["--unet-lr", "inf"], "unet_lr"),
    (["--model", "/nonexistent/model.safetensors"], "model.safetensors"),
    (["--optimizer-args", "bogus=1"], "bogus"),
    (["--optimizer-type", "DAdaptAdam", "--learning-rate", "1", "--no-network-train-unet-only",
      "--text-encoder-lr", "0.5"], "one lr"),
])
def test_bad_options_exit_2_with_one_line_and_write_nothing(args, needle, example_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["train", str(example_dataset), *BASE, "--max-train-steps", "2", "--output-dir", str(out)]
    rc = main(argv + args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("text", ["[model_arguments\nx = 1", "max_train_steps = 2\nnot_a_kohya_option = 3"])
def test_bad_toml_exits_2(text, example_dataset, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    rc = main(["train", str(example_dataset), "--config", str(config), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.toml" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_continue_from_network_weights(example_dataset, tmp_path):
    first = tmp_path / "a"
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "3", "--output-dir", str(first),
                 "--output-name", "a", "--save-precision", "float"]) == 0
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(tmp_path / "b"),
                 "--output-name", "b", "--network-weights", str(first / "a.safetensors"), "--learning-rate", "1e-12",
                 "--save-precision", "float"]) == 0
    from safetensors.torch import load_file

    a, b = load_file(str(first / "a.safetensors")), load_file(str(tmp_path / "b" / "b.safetensors"))
    assert set(a) == set(b)
    assert all(float((a[k] - b[k]).abs().max()) < 1e-6 for k in a)  # continued from a (a tiny lr barely moves it)


def test_a_diverged_run_exits_2_with_the_step_the_lr_and_what_to_lower(example_dataset, tmp_path, capsys):
    rc = main(["train", str(example_dataset), *BASE, "--max-train-steps", "3", "--learning-rate", "1e30",
               "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and "internal error" not in err
    assert "diverged at step 2" in err and "lr 1e+30" in err and "lower --learning-rate (e.g. 1e+29)" in err


class _RunsCode:
    """Unpickling this would run code: a resume state must never load it."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("content", ["malicious", "garbage", "wrong_structure"])
def test_a_bad_optimizer_state_on_resume_is_one_line(content, example_dataset, tmp_path, capsys):
    import torch

    out = tmp_path / "out"
    argv = ["train", str(example_dataset), *BASE, "--max-train-epochs", "2", "--output-dir", str(out),
            "--output-name", "r"]
    assert main(argv) == 0
    [state] = list(out.glob("r-*-state"))
    target = state / "optimizer.pt"
    if content == "malicious":
        torch.save({"state": _RunsCode()}, target)
    elif content == "garbage":
        target.write_bytes(b"\x00not a torch file")
    else:
        torch.save({"state": {}, "param_groups": "not a list"}, target)
    capsys.readouterr()
    rc = main(argv + ["--resume", str(state)])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "optimizer.pt" in err and "without --resume" in err and "pwned" not in captured.out


@pytest.mark.parametrize("argv", [
    ["train", "DATASET", "--seed", str(2**70)],
    ["train", "DATASET", "--seed=-1"],
    ["train", "DATASET", "--validation-seed", str(2**32)],
    ["probe", "DATASET", "--seed", str(2**70)],
    ["study", "DATASET", "--name", "s", "--seed", str(2**70)],
    ["study", "DATASET", "--name", "s", "--sampler-seed=-1"],
    ["export-kohya", "s", "--seed", str(2**40)],
    ["model", "save", "tiny", "OUT", "--seed", str(2**70)],
])
def test_seeds_outside_numpys_range_exit_2_naming_the_range(argv, example_dataset, tmp_path, capsys):
    argv = [str(example_dataset) if a == "DATASET" else str(tmp_path / "o") if a == "OUT" else a for a in argv]
    rc = main(argv + (["--out", str(tmp_path / "o")] if argv[0] in ("probe", "study") else [])
              + (["--max-train-steps", "1", "--output-dir", str(tmp_path / "o")] if argv[0] == "train" else []))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "from 0 to 4294967295" in err
    assert not (tmp_path / "o").exists()


def test_the_largest_seed_trains(example_dataset, tmp_path):
    assert main(["train", str(example_dataset), *BASE, "--seed", str(2**32 - 1), "--max-train-steps", "1",
                 "--output-dir", str(tmp_path / "o")]) == 0


RES_ARGS = ["--model", "tiny", "--network-dim", "4", "--train-batch-size", "4", "--no-progress",
            "--network-train-unet-only", "--max-train-steps", "1"]


@pytest.mark.parametrize("resolution", ["64,64", "64x64", "64"])
def test_resolution_in_kohyas_width_height_form_on_the_command_line(resolution, example_dataset, tmp_path):
    out = tmp_path / "out"
    assert main(["train", str(example_dataset), *RES_ARGS, "--resolution", resolution, "--output-dir", str(out),
                 "--output-name", "r", "--save-precision", "float"]) == 0
    from safetensors import safe_open

    with safe_open(str(out / "r.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["ss_resolution"].replace("(", "[").replace(")", "]")) == [64, 64]


@pytest.mark.parametrize("value", ['"64,64"', "[64, 64]", '"64x64"'])
def test_resolution_pairs_in_a_toml_like_kohya_writes_them(value, example_dataset, tmp_path):
    config = tmp_path / "cfg.toml"
    config.write_text(f"resolution = {value}\nmax_train_steps = 1\nnetwork_train_unet_only = true\nprogress = false\n")
    assert main(["train", str(example_dataset), "--config", str(config), "--output-dir", str(tmp_path / "o")]) == 0


@pytest.mark.parametrize("resolution,needle", [("512,768", "give one side, e.g. 768"), ("64,x", "not like 512"),
                                               ("64,64,64", "not like 512")])
def test_a_non_square_or_malformed_resolution_exits_2(resolution, needle, example_dataset, tmp_path, capsys):
    rc = main(["train", str(example_dataset), *RES_ARGS, "--resolution", resolution, "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_alpha_above_dim_warns_once_on_one_line(example_dataset, tmp_path, capsys):
    rc = main(["train", str(example_dataset), *RES_ARGS, "--resolution", "64", "--network-alpha", "8",
               "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0 and len(err) == 1
    assert err[0].startswith("lrfind: warning: network_alpha 8 is above network_dim 4") and "alpha/dim = 2" in err[0]


@pytest.mark.parametrize("command", ["train", "study"])
def test_help_shows_no_default_for_a_required_option(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert stop.value.code == 0
    assert "PydanticUndefined" not in text
    assert "(default: tiny)" in text  # an optional field (the base model) still shows its default
