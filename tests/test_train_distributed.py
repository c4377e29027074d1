"""Data-parallel `lrfind train` (issue 18 part 3): 2 CPU processes (gloo) at batch 1 train the same
LoRA as one process at batch 2, and only the main process writes and reports."""

from __future__ import annotations

from safetensors.torch import load_file

from lrfind.cli import main
from lrfind.training.distributed import ProcessGroup

RUN = ["--resolution", "64", "--max-train-steps", "6", "--learning-rate", "1e-3", "--no-save-state", "--no-progress",
       "--save-precision", "float", "--flip-aug", "--shuffle-caption", "--xy-grid"]


def _largest_difference(a, b) -> float:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def test_two_processes_at_batch_1_train_what_one_process_trains_at_batch_2(example_dataset, tmp_path, capfd):
    assert main(["train", str(example_dataset), *RUN, "--batch-size", "2", "--output-dir", str(tmp_path / "one")]) == 0
    assert main(["train", str(example_dataset), *RUN, "--batch-size", "1", "--output-dir", str(tmp_path / "b1")]) == 0
    capfd.readouterr()
    assert main(["train", str(example_dataset), *RUN, "--batch-size", "1", "--num-processes", "2",
                 "--output-dir", str(tmp_path / "two")]) == 0
    out = capfd.readouterr().out
    assert "data-parallel: 2 processes x batch 1 = global batch 2" in out and "steps in total" in out
    assert out.count("saved ") == 1 and out.count("trained 6 steps") == 1  # the main process alone
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "one").iterdir()) and "last.safetensors" in files
    same = _largest_difference(tmp_path / "one" / "last.safetensors", tmp_path / "two" / "last.safetensors")
    other = _largest_difference(tmp_path / "one" / "last.safetensors", tmp_path / "b1" / "last.safetensors")
    # fp16 files: a rounding flip of one fp16 step (~3e-5 at these magnitudes) is float tolerance
    assert same < 1e-4 and other > 30 * same, (same, other)  # batch 2 in one process, not batch 1


def test_shards_cover_a_global_batch_once():
    for count in (1, 2, 5, 8):
        shards = [ProcessGroup(rank, 3, rank).shard(count) for rank in range(3)]
        covered = [i for s in shards for i in range(count)[s]]
        assert covered == list(range(count))
        assert max(s.stop - s.start for s in shards) - min(s.stop - s.start for s in shards) <= 1
