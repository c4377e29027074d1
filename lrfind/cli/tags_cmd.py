"""`lrfind dataset tags DATASET`: tag counts, caption lengths and the trigger word; with edit options,
rewrite the captions (backed up; `--undo` puts them back)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EDIT_OPTIONS = "--remove, --replace, --trigger, --dedupe or --strip-weights"


def _old_new(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not OLD=NEW (e.g. --replace 'long_hair=long hair')")
    old, new = text.split("=", 1)
    return old, new


def add_tags_parser(sub: argparse._SubParsersAction) -> None:
    tags = sub.add_parser(
        "tags",
        help="show caption tags per folder (counts, token lengths, trigger word) and batch-edit them",
        description="Without edit options: each tag's count and share of images per concept folder and overall, "
        "caption lengths in CLIP tokens (kohya cuts at 75 unless --max_token_length 150/225), tags in every "
        "image, duplicate tags and where the trigger word stands. With edit options: rewrite the captions "
        f"({EDIT_OPTIONS}); originals are kept in DATASET/.lrfind-caption-backup/ and --undo restores them. "
        "Tags are the comma-separated parts of a caption's first line, compared ignoring case (CLIP lowercases).",
    )
    tags.add_argument("dataset", type=Path, metavar="DATASET", help="folder holding the `N_name` subfolders")
    tags.add_argument("--concept", metavar="FOLDER", default=None,
                      help="only this concept folder (e.g. 10_mychar, or mychar)")
    tags.add_argument("--caption-extension", "--caption_extension", dest="caption_extension", default=".txt", metavar="EXT",
                      help="caption file extension (default .txt)")
    tags.add_argument("--remove", nargs="+", action="extend", default=[], metavar="TAG",
                      help="delete these tags (e.g. the character's fixed features, so the trigger word learns them)")
    tags.add_argument("--replace", action="append", type=_old_new, default=[], metavar="OLD=NEW",
                      help="replace tag OLD by NEW (NEW may be several tags: 'a=b, c'); repeatable")
    tags.add_argument("--trigger", metavar="WORD", default=None,
                      help="put WORD first in every caption (added where missing); then train with kohya's "
                      "--shuffle_caption --keep_tokens 1 to keep it there")
    tags.add_argument("--dedupe", action="store_true", help="drop repeated tags within a caption (the first stays)")
    tags.add_argument("--strip-weights", action="store_true", help="(tag:1.2), ((tag)), [tag] -> tag")
    tags.add_argument("--underscores-as-spaces", action="store_true",
                      help="treat long_hair and long hair as the same tag (when counting and editing)")
    tags.add_argument("--dry-run", action="store_true", help="print what the edits would change per file; write nothing")
    tags.add_argument("--undo", action="store_true", help="restore the captions of the last edit, byte for byte")
    tags.add_argument("--top", type=int, default=20, metavar="N", help="tags listed per folder (default 20; 0 = all)")
    tags.add_argument("--json", action="store_true", help="print the result as JSON")
    tags.set_defaults(func=run)


def _edits(args: argparse.Namespace):
    from lrfind.config import build
    from lrfind.data.tags import TagEdits

    return build(TagEdits, remove=tuple(args.remove), replace=tuple(args.replace), trigger=args.trigger,
                 dedupe=args.dedupe, strip_weights=args.strip_weights, underscores_as_spaces=args.underscores_as_spaces)


def run(args: argparse.Namespace) -> int:
    from lrfind.config import DatasetConfig, build
    from lrfind.data.caption_files import read_concepts, undo_last_edit
    from lrfind.errors import ConfigError

    edits = _edits(args)
    extension = build(DatasetConfig, train_dir=args.dataset, caption_extension=args.caption_extension).caption_extension
    if args.undo:
        if edits.any or args.dry_run or args.concept:
            raise ConfigError("--undo restores the whole last edit: pass it with DATASET alone")
        backup, restored = undo_last_edit(args.dataset)
        if args.json:
            print(json.dumps({"backup": str(backup), "restored": [str(p) for p in restored]}, indent=2))
        else:
            print(f"restored {len(restored)} caption(s) from {backup} (backup removed)")
        return 0
    concepts = read_concepts(args.dataset, extension, args.concept)
    if not edits.any:
        if args.dry_run:
            raise ConfigError(f"--dry-run shows what edits would change: add {EDIT_OPTIONS}")
        return _show(args, concepts, edits)
    return _edit(args, concepts, edits)


def _show(args: argparse.Namespace, concepts, edits) -> int:
    from lrfind.data.tag_stats import build_tag_report, render_tag_report
    from lrfind.models.tokenizer import count_tokens  # imports transformers: only once the captions read

    report = build_tag_report(str(args.dataset), [c.captions() for c in concepts], count_tokens,
                              trigger=edits.trigger, underscores_as_spaces=edits.underscores_as_spaces)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_tag_report(report, args.top), end="")
    return 0


def _edit(args: argparse.Namespace, concepts, edits) -> int:
    from lrfind.data.caption_files import apply_changes, plan_changes

    changes = plan_changes(concepts, edits)
    total = sum(1 for c in concepts for f in c.files if f.text is not None)
    backup = apply_changes(args.dataset, changes) if changes and not args.dry_run else None
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "captions": total, "backup": str(backup) if backup else None,
                          "changed": [{"file": str(c.path), "old": c.old_caption, "new": c.new_caption} for c in changes]},
                         indent=2))
        return 0
    if args.dry_run:
        for change in changes:
            print(f"{change.path.relative_to(args.dataset)}\n  - {change.old_caption}\n  + {change.new_caption}")
        print(f"would change {len(changes)} of {total} caption(s) (dry run: nothing written)")
    elif backup:
        print(f"changed {len(changes)} of {total} caption(s); the originals are in {backup}")
        print(f"undo: lrfind dataset tags {args.dataset} --undo")
    else:
        print(f"nothing to change in {total} caption(s)")
    if edits.trigger and changes:
        print(f"{edits.trigger!r} {'would be' if args.dry_run else 'is now'} the first tag: train with kohya's "
              "--shuffle_caption --keep_tokens 1 so shuffling leaves it first")
    return 0
