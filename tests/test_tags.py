"""Caption tags: parsing and edits (pure), counts, and `lrfind dataset tags` on copies of the example dataset."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from lrfind import atomic, cli
from lrfind.config import DatasetConfig
from lrfind.data import caption_files
from lrfind.data.example import copy_example_dataset
from lrfind.data.kohya import scan_dataset
from lrfind.data.tag_stats import FolderCaptions, build_tag_report, render_tag_report
from lrfind.data.tags import CaptionText, TagEdits, edit_caption, split_tags, strip_weights, tag_key

CAT, CUP = "10_lrfcat cat", "5_lrfcup cup"
CAT_01 = "lrfcat, cat, tabby cat, close-up, face, green eyes, pink nose, white whiskers, striped fur, blurry background"
CUP_01 = "lrfcup, cup, espresso, red cup, red saucer, silver spoon, wooden table, from above"


@pytest.fixture(autouse=True)
def only_the_dataset_command(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"dataset": "lrfind.cli.dataset_cmd"})


@pytest.fixture
def example(tmp_path):
    return copy_example_dataset(tmp_path / "example")


def _tree(root):
    """Every file under root (backups included) -> its bytes' SHA-256."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _tags(capsys, *argv):
    code = cli.main(["dataset", "tags", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _caption(root, folder, name):
    return (root / folder / name).read_text(encoding="utf-8")


# ---- pure tag logic ---------------------------------------------------------------------------------


def test_tags_split_as_kohya_splits_and_compare_ignoring_case_only():
    assert split_tags(" a ,b,, c d ,") == ["a", "b", "c d"]
    assert tag_key("Blue_Eyes") == "blue_eyes" != tag_key("blue eyes")
    assert tag_key("Blue_Eyes", underscores_as_spaces=True) == tag_key("blue  eyes", underscores_as_spaces=True)


def test_strip_weights_keeps_escaped_parentheses():
    caption = r"(smile:1.2), ((blue eyes)), [hat], hatsune miku \(cosplay\), (red hair, long hair:0.8), ((x:1.1))"
    assert strip_weights(caption) == r"smile, blue eyes, hat, hatsune miku \(cosplay\), red hair, long hair, x"


def test_edits_in_order_and_an_unchanged_caption_keeps_its_spacing():
    edits = TagEdits(remove=("cat, Tabby Cat",), replace=(("green eyes", "green_eyes, eyes"),), trigger="mycat",
                     dedupe=True, strip_weights=True)
    assert edit_caption("lrfcat,(cat:1.3), tabby cat, Face, green eyes, face, MyCat", edits) == \
        "mycat, lrfcat, Face, green_eyes, eyes"
    assert edit_caption("mycat,face ,  eyes", TagEdits(trigger="mycat", dedupe=True)) == "mycat,face ,  eyes"
    underscored = TagEdits(remove=("long hair",), underscores_as_spaces=True)
    assert edit_caption("a, long_hair, Long Hair", underscored) == "a"
    assert edit_caption("a, long_hair", TagEdits(remove=("long hair",))) == "a, long_hair"


@pytest.mark.parametrize("values, fragment", [
    ({"replace": (("a", " "),)}, "use --remove"),
    ({"replace": (("a, b", "c"),)}, "OLD must be one tag"),
    ({"trigger": "a, b"}, "must be one tag"),
    ({"trigger": "Mychar", "remove": ("mychar",)}, "also in --remove"),
    ({"remove": (",",)}, "at least one tag"),
])
def test_bad_edits_are_refused(values, fragment):
    with pytest.raises(ValidationError, match=fragment):
        TagEdits(**values)


def test_caption_text_keeps_bom_line_end_and_later_lines():
    text = CaptionText.parse("\ufeff a, b \r\nsecond line\r\n")
    assert (text.caption, text.line_end, text.rest) == ("a, b", "\r\n", "second line\r\n")
    assert text.with_caption("c") == "\ufeffc\r\nsecond line\r\n"
    assert CaptionText.parse("a\rb").rest == "b" and CaptionText.parse("").caption == ""


# ---- counts ---------------------------------------------------------------------------------------


def test_tag_report_counts_shares_every_image_duplicates_trigger_and_tokens():
    folders = [
        FolderCaptions("10_mychar woman", "mychar woman", (
            ("1.txt", "mychar, 1girl, Blue Eyes, smile"),
            ("2.txt", "1girl, mychar, blue eyes, blue eyes"),
            ("3.txt", "1girl, blue eyes, " + ", ".join(f"t{i}" for i in range(80))),
            ("4.txt", None),  # no caption file: kohya trains the class tokens "mychar woman"
        )),
        FolderCaptions("2_bg", "bg", (("a.txt", "bg, tree"), ("b.txt", "tree, bg"))),
    ]
    report = build_tag_report("DS", folders, count_tokens=lambda caption: len(split_tags(caption)))
    char, bg = report.folders
    counts = {c.tag: (c.images, c.share, c.occurrences) for c in char.tags}
    assert counts["blue eyes"] == (3, 0.75, 4) and counts["1girl"] == (3, 0.75, 3)
    assert counts["mychar woman"] == (1, 0.25, 1) and counts["mychar"] == (2, 0.5, 2)
    assert char.tags[0].tag in ("1girl", "blue eyes") and char.missing_caption_files == ("10_mychar woman/4.txt",)
    assert char.in_every_image == () and bg.in_every_image == ("tree",)  # the trigger "bg" is not a candidate
    assert char.duplicates == (("10_mychar woman/2.txt", ("blue eyes",)),)
    assert (char.trigger.word, char.trigger.source, char.trigger.first) == ("mychar", "folder name", 1)
    assert char.trigger.later == (("10_mychar woman/2.txt", 2),)
    assert char.trigger.missing == ("10_mychar woman/3.txt", "10_mychar woman/4.txt")
    assert (char.tokens.min, char.tokens.max, char.tokens.over_75, char.tokens.over_150) == (1, 82, 1, 0)
    assert char.tokens.over_75_files == (("10_mychar woman/3.txt", 82),)
    assert report.overall.images == 6 and report.overall.trigger is None
    text = render_tag_report(report, top=3)
    assert "over 75: 1" in text and "--keep_tokens 1" in text and "more tag(s)" in text


# ---- the command on copies of the example dataset --------------------------------------------------


def test_show_tags_of_the_example(example, capsys):
    code, out, _ = _tags(capsys, example, "--json")
    assert code == 0
    report = json.loads(out)
    cat = report["folders"][0]
    assert cat["folder"] == CAT and cat["images"] == 6 and cat["in_every_image"] == ["cat"]
    assert {t["tag"]: t["images"] for t in cat["tags"]}["tabby cat"] == 4
    assert cat["trigger"]["first"] == 6 and 20 <= cat["tokens"]["max"] <= 75
    code, out, _ = _tags(capsys, example, "--concept", "lrfcup")
    assert code == 0 and CUP in out and CAT not in out and "in every image" in out


@pytest.mark.parametrize("options, edits, file, expected", [
    (["--remove", "cat", "tabby cat"], TagEdits(remove=("cat", "tabby cat")), (CAT, "01.txt"),
     "lrfcat, close-up, face, green eyes, pink nose, white whiskers, striped fur, blurry background\n"),
    (["--replace", "Green Eyes=green_eyes"], TagEdits(replace=(("Green Eyes", "green_eyes"),)), (CAT, "01.txt"),
     CAT_01.replace("green eyes", "green_eyes") + "\n"),
    (["--trigger", "mycat"], TagEdits(trigger="mycat"), (CUP, "01.txt"), "mycat, " + CUP_01 + "\n"),
    (["--trigger", "cup", "--concept", CUP], TagEdits(trigger="cup"), (CUP, "01.txt"),
     "cup, lrfcup, espresso, red cup, red saucer, silver spoon, wooden table, from above\n"),
])
def test_each_edit_changes_exactly_the_captions_it_should(example, capsys, options, edits, file, expected):
    before = {p: p.read_bytes() for p in example.rglob("*") if p.is_file()}
    code, out, _ = _tags(capsys, example, *options)
    assert code == 0 and "undo: lrfind dataset tags" in out
    assert _caption(example, *file) == expected
    only = options[options.index("--concept") + 1] if "--concept" in options else None
    for path, data in before.items():
        if path.suffix != ".txt" or (only and path.parent.name != only):
            assert path.read_bytes() == data  # images and the other folder: the same bytes
        else:
            assert path.read_text() == edit_caption(data.decode().rstrip("\n"), edits) + "\n"


def test_dedupe_and_strip_weights(example, capsys):
    (example / CAT / "03.txt").write_text("lrfcat, (cat:1.2), ((close-up)), Cat, [ear], nose \\(cat\\)\n")
    assert _tags(capsys, example, "--strip-weights", "--dedupe")[0] == 0
    assert _caption(example, CAT, "03.txt") == "lrfcat, cat, close-up, ear, nose \\(cat\\)\n"
    assert _caption(example, CAT, "01.txt") == CAT_01 + "\n"  # nothing to do there: untouched


def test_dry_run_changes_no_byte_and_prints_each_change(example, capsys):
    before = _tree(example)
    code, out, _ = _tags(capsys, example, "--remove", "cat", "--trigger", "lrfcat", "--dry-run", "--concept", CAT)
    assert code == 0 and _tree(example) == before
    assert f"{CAT}/01.txt\n  - {CAT_01}\n  + {CAT_01.replace(', cat,', ',')}" in out
    assert "would change 6 of 6 caption(s) (dry run: nothing written)" in out


def test_undo_restores_every_byte_one_edit_at_a_time(example, capsys):
    (example / CAT / "02.txt").write_bytes(b"\xef\xbb\xbflrfcat, cat,face\r\nmore text\r\n")  # BOM, CRLF, 2nd line
    original = _tree(example)
    assert _tags(capsys, example, "--remove", "cat")[0] == 0
    assert (example / CAT / "02.txt").read_bytes() == b"\xef\xbb\xbflrfcat, face\r\nmore text\r\n"
    after_first = _tree(example)
    assert _tags(capsys, example, "--trigger", "newcat", "--concept", CAT)[0] == 0
    code, out, _ = _tags(capsys, example, "--undo")
    assert code == 0 and "restored 6 caption(s)" in out and _tree(example) == after_first
    assert _tags(capsys, example, "--undo")[0] == 0
    assert _tree(example) == original and not (example / caption_files.BACKUP_DIR).exists()
    code, _, err = _tags(capsys, example, "--undo")
    assert code == 2 and "nothing to undo" in err


def test_undo_refuses_to_overwrite_a_later_change(example, capsys):
    assert _tags(capsys, example, "--remove", "cup")[0] == 0
    (example / CUP / "02.txt").write_text("edited by hand\n")
    before = _tree(example)
    code, _, err = _tags(capsys, example, "--undo")
    assert code == 2 and "02.txt changed after the edit" in err and _tree(example) == before


def test_a_crash_mid_edit_leaves_each_caption_old_or_new_and_undo_restores_all(example, capsys, monkeypatch):
    old = {p: p.read_bytes() for p in example.rglob("*.txt")}
    original = _tree(example)
    written = []

    def crashing_writer(path, data):
        if len(written) == 3:  # the fourth caption: half its bytes reach the temp file, then the "crash"
            with atomic.atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError("simulated crash")
        atomic.write_bytes(path, data)
        written.append(path)

    real_writer = caption_files.write_caption
    monkeypatch.setattr(caption_files, "write_caption", crashing_writer)
    code = cli.main(["dataset", "tags", str(example), "--trigger", "x"])
    assert code == 1 and "simulated crash" in capsys.readouterr().err  # an internal error, not bad input
    new = {p: ("x, " + data.decode()).encode() for p, data in old.items()}
    states = {p: p.read_bytes() for p in old}
    assert sum(states[p] == new[p] for p in old) == 3 and all(states[p] in (old[p], new[p]) for p in old)
    assert not [p for p in example.rglob("*.tmp")]  # no half-written file left behind
    monkeypatch.setattr(caption_files, "write_caption", real_writer)
    assert _tags(capsys, example, "--undo")[0] == 0 and _tree(example) == original


def test_non_utf8_caption_exits_2_naming_it_and_changes_nothing(example, capsys):
    (example / CUP / "02.txt").write_bytes("caf\xe9, cup".encode("latin-1"))
    before = _tree(example)
    for options in (["--trigger", "x"], []):
        code, out, err = _tags(capsys, example, *options)
        assert code == 2 and out == "" and "Traceback" not in err
        assert f"{example / CUP / '02.txt'} is not UTF-8" in err and "nothing was changed" in err
        assert _tree(example) == before


def test_the_backup_folder_is_skipped_by_lrfind_and_by_kohyas_rule(example, capsys):
    assert _tags(capsys, example, "--remove", "cat")[0] == 0
    assert (example / caption_files.BACKUP_DIR).is_dir()
    dataset = scan_dataset(DatasetConfig(train_dir=example))
    assert dataset.warnings == () and [c.folder.name for c in dataset.concepts] == [CAT, CUP]
    # kohya: int(name.split("_")[0]) must parse as the repeats, else the folder is ignored
    with pytest.raises(ValueError):
        int(caption_files.BACKUP_DIR.split("_")[0])


def test_ss_tag_frequency_matches_kohyas_count_after_edits(example, capsys):
    from lrfind.network.metadata import dataset_metadata

    (example / CAT / "06.jpg").with_suffix(".txt").unlink()  # kohya: the class tokens are its caption
    assert _tags(capsys, example, "--replace", "tabby cat=Tabby_Cat", "--trigger", "LrfCat", "--concept", CAT)[0] == 0
    frequency = json.loads(dataset_metadata(scan_dataset(DatasetConfig(train_dir=example)))["ss_tag_frequency"])
    assert frequency == {folder.name: kohya_tag_frequency(folder) for folder in (example / CAT, example / CUP)}
    assert frequency[CAT]["tabby_cat"] == 4 and frequency[CAT]["lrfcat"] == 5 and frequency[CAT]["lrfcat cat"] == 1
    # and `dataset tags` counts the same occurrences per folder
    report = json.loads(_tags(capsys, example, "--json")[1])
    assert {t["tag"]: t["occurrences"] for t in report["folders"][0]["tags"]} == frequency[CAT]


def kohya_tag_frequency(folder):
    """kohya's DreamBoothDataset: read_caption (first line, stripped) and set_tag_frequency, restated."""
    counts = {}
    for image in sorted(folder.glob("*.jpg")):
        path = image.with_suffix(".txt")
        if path.is_file():
            with open(path, "rt", encoding="utf-8") as f:
                caption = f.readlines()[0].strip()
        else:
            caption = folder.name.split("_", 1)[1]
        for tag in caption.split(","):
            tag = tag.strip()
            if tag:
                counts[tag.lower()] = counts.get(tag.lower(), 0) + 1
    return counts
