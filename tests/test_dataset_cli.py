"""`lrfind dataset check` and `lrfind dataset example`, run in-process."""

from __future__ import annotations

import json

import pytest

from dataset_photos import write_caption, write_photo
from lrfind import cli
from lrfind.data.example import example_dataset_path


@pytest.fixture(autouse=True)
def only_the_dataset_command(monkeypatch):
    # Test this command alone: a broken sibling command module must not fail these tests.
    monkeypatch.setattr(cli, "COMMANDS", {"dataset": "lrfind.cli.dataset_cmd"})


def _run(capsys, *argv):
    code = cli.main(["dataset", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrfind: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_our_and_kohyas_option_spellings(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["dataset", "check", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--caption-extension", "--caption_extension", "--train_batch_size", "--reg_data_dir",
                   "--min-bucket-reso", "--bucket_no_upscale", "--no-bucket", "--json"):
        assert option in out


def test_dataset_without_subcommand_prints_help(capsys):
    code, out, _ = _run(capsys)
    assert code == 2 and "check" in out and "example" in out


def test_shipped_example_dataset_checks_clean(capsys):
    code, out, err = _run(capsys, "check", example_dataset_path())
    assert code == 0 and err == ""
    assert "10_lrfcat cat" in out and "5_lrfcup cup" in out
    assert "steps per epoch: 70" in out
    assert "warnings:" not in out


def test_kohya_spellings_reg_dir_and_json(capsys, tmp_path):
    root, reg = tmp_path / "ds", tmp_path / "reg"
    write_caption(write_photo(root / "4_lrfcat cat" / "a.png", "chelsea"), "lrfcat, cat, green eyes")
    write_photo(root / "4_lrfcat cat" / "b.jpg", "chelsea", box=(0, 0, 300, 300))
    write_photo(reg / "1_cat" / "r.png", "chelsea", box=(50, 0, 350, 300))
    code, out, _ = _run(capsys, "check", root, "--train_batch_size", 2, "--reg_data_dir", reg,
                        "--caption_extension", ".txt", "--max_train_epochs", 3, "--json")
    assert code == 0
    report = json.loads(out)
    assert [(c["kind"], c["samples_per_epoch"], c["missing_captions"]) for c in report["concepts"]] == [
        ("train", 8, 1), ("reg", 8, 1)
    ]
    # buckets: 640x384 holds 4 samples, 512x512 holds 4 + 8 reg: 2 + 6 batches of 2
    assert report["steps_per_epoch"] == 8 and report["total_steps"] == 24
    # CLIP BPE: lr f cat , cat , green eyes (the trigger word is not in the vocabulary)
    assert report["concepts"][0]["tokens_max"] == 8


def test_no_bucket_and_no_upscale_options(capsys):
    code, out, _ = _run(capsys, "check", example_dataset_path(), "--no-bucket", "--json")
    assert code == 0 and [(b["width"], b["height"]) for b in json.loads(out)["buckets"]] == [(512, 512)]
    code, out, _ = _run(capsys, "check", example_dataset_path(), "--bucket_no_upscale", "--json")
    assert code == 0 and all(b["width"] <= 480 and b["height"] <= 400 for b in json.loads(out)["buckets"])


@pytest.mark.parametrize(
    "options, fragments",
    [
        (["--resolution", "500"], ["resolution", "multiple of 64"]),
        (["--batch-size", "0"], ["batch_size"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--min-bucket-reso", "100"], ["multiples of 64"]),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, options, fragments):
    _assert_one_line_error(*_run(capsys, "check", example_dataset_path(), *options), *fragments)


def test_bad_dataset_exits_2_naming_the_file(capsys, tmp_path):
    _assert_one_line_error(*_run(capsys, "check", tmp_path / "missing"), "missing", "does not exist")
    image = write_photo(tmp_path / "ds" / "2_x" / "broken.jpg", "chelsea")
    image.write_bytes(image.read_bytes()[:3000])
    code, out, err = _run(capsys, "check", tmp_path / "ds")
    assert code == 2 and "Traceback" not in err
    assert "2_x/broken.jpg  error     is truncated" in out
    assert err.strip().splitlines() == [
        f"lrfind: error: 1 file(s) in {tmp_path / 'ds'} cannot be trained (listed above): fix or delete them, "
        "then run the check again"
    ]


def test_example_command_copies_the_dataset(capsys, tmp_path):
    code, out, _ = _run(capsys, "example", tmp_path / "ex")
    assert code == 0 and "lrfind dataset check" in out
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["10_lrfcat cat", "5_lrfcup cup"]
    _assert_one_line_error(*_run(capsys, "example", tmp_path / "ex"), "already exists")


def test_a_nul_byte_in_a_caption_exits_2_naming_the_file(capsys, tmp_path):
    root = tmp_path / "ds"
    caption = write_caption(write_photo(root / "2_lrfcat cat" / "a.png", "chelsea"), "lrfcat\x00 cat")
    code, out, err = _run(capsys, "check", root)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "2_lrfcat cat/a.txt  error     holds a control character (U+0000) at position 6" in out
    assert "re-save it as plain UTF-8 text" in out


def test_resolution_in_kohyas_width_height_form(capsys):
    code, out, err = _run(capsys, "check", example_dataset_path(), "--resolution", "512,512")
    assert code == 0 and "resolution 512" in out
    code, out, err = _run(capsys, "check", example_dataset_path(), "--resolution", "512,768")
    _assert_one_line_error(code, out, err, "resolution 512,768", "give one side")
