"""`lrfind train --network-module lycoris.kohya`: every algo trains, saves, continues exactly."""

from __future__ import annotations

import json

import pytest

from lrfind.cli import main

BASE = ["--model", "tiny", "--resolution", "64", "--network-dim", "4", "--network-alpha", "2",
        "--train-batch-size", "4", "--no-progress", "--save-precision", "float",
        "--network-module", "lycoris.kohya"]


@pytest.mark.parametrize("algo_args", [["algo=locon", "conv_dim=2"], ["algo=loha"], ["algo=lokr", "factor=4"]],
                         ids=["locon", "loha", "lokr"])
def test_every_algo_trains_saves_and_continues_bit_exactly(example_dataset, tmp_path, algo_args):
    from safetensors import safe_open
    from safetensors.torch import load_file

    first = tmp_path / "a"
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "2", "--output-dir", str(first),
                 "--output-name", "a", "--network-args", *algo_args, "--logging-dir", str(tmp_path / "logs")]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [logdir] = list((tmp_path / "logs").glob("*/network_train"))
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    assert {"loss/current", "lr/unet", "lr/textencoder"} <= set(events.Tags()["scalars"])  # kohya's tags
    with safe_open(str(first / "a.safetensors"), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    algo = algo_args[0].split("=")[1]
    marker = {"locon": ".lora_down.weight", "loha": ".hada_w1_a", "lokr": ".lokr_w1"}[algo]
    assert any(k.endswith(marker) for k in keys) and any(k.startswith("lora_te_text_model_") for k in keys)
    assert meta["ss_network_module"] == "lycoris.kohya"
    assert json.loads(meta["ss_network_args"]) == {**dict(a.split("=") for a in algo_args), "dropout": None}
    # lr 1e-30 moves nothing a float32 can show: the continued network is the file it started from
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(tmp_path / "b"),
                 "--output-name", "b", "--network-args", *algo_args, "--learning-rate", "1e-30",
                 "--network-weights", str(first / "a.safetensors")]) == 0
    a, b = load_file(str(first / "a.safetensors")), load_file(str(tmp_path / "b" / "b.safetensors"))
    assert a.keys() == b.keys() and all(float((a[k] - b[k]).abs().max()) < 1e-20 for k in a)


def test_weights_of_another_type_exit_2_and_write_nothing(example_dataset, tmp_path, capsys):
    first = tmp_path / "a"
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(first),
                 "--output-name", "a", "--network-args", "algo=loha"]) == 0
    capsys.readouterr()
    rc = main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(tmp_path / "b"),
               "--network-args", "algo=lokr", "--network-weights", str(first / "a.safetensors")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "a LoHa file, and this network is LoKr" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("args,needle", [(["algo=glora"], "accepted: locon, loha, lokr"),
                                         (["algo=lokr", "factor=1"], "LoKr cannot factorise by 1"),
                                         (["algo=loha", "foo=1"], "foo: not a lycoris.kohya argument")])
def test_bad_network_args_exit_2_with_one_line(example_dataset, tmp_path, capsys, args, needle):
    rc = main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(tmp_path / "o"),
               "--network-args", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_probe_trains_the_network_it_is_given(example_dataset, tmp_path):
    out = tmp_path / "probe"
    assert main(["probe", str(example_dataset), "--model", "tiny", "--resolution", "64", "--steps", "8",
                 "--batch-size", "2", "--network-module", "lycoris.kohya", "--network-args", "algo=lokr",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert report["network_module"] == "lycoris.kohya" and report["network_args"] == {"algo": "lokr"}


def test_probe_with_bad_network_args_exits_2(example_dataset, tmp_path, capsys):
    rc = main(["probe", str(example_dataset), "--network-module", "lycoris.kohya", "--network-args", "algo=x",
               "--out", str(tmp_path / "p")])
    assert rc == 2 and "algo=x: unknown LyCORIS algo" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
