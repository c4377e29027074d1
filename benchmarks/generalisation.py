"""Benchmark (issue 17): does the held-out objective recommend a LoRA that generalises better?

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/generalisation.py [--seeds 0]
        [--n-trials 6] [--epochs 24] [--lr-multiplier 3,16] [--tolerance 0.01] [--json FILE]

On `tiny-pretrained` (the cat and the cup were kept out of its pretraining), a regime that
should overfit: a dozen 64 px images, lr 3-16x the probe's (the AdamW optimum on this model is ~4x
it, benchmarks/RESULTS.md), up to 24 epochs of AdamW at a constant lr (a study took 3.5 min at one
thread on a 2-core CPU at load average 9; a seed is two studies and two final runs).
Three disjoint image sets of
the same two concepts, all square crops of scikit-image's `chelsea` (cat) and `coffee` (cup), no
two of them overlapping by more than MAX_IOU:
  dataset   what the study is given (kohya layout, 1 repeat): the new study holds its split out of
            it (train + held-out, --validation-split 0.25), the old one trains and validates on
            all of it; both final runs train on all of it (lrfind's default);
  test      crops no study and no final run ever sees.
Two studies, same dataset, space, sampler seed, training seed, trial count and probe (run once):
  old  round one's objective: validation loss on the training images themselves
       (--validation-split 0), no drift (the space's [objective] drift = 0), no CLIP (--score loss).
       The study measures drift at each epoch boundary whatever its weight, and its epoch sweep
       makes a longer epoch count that drifts further pay 0.5 % of loss; round one had no drift at
       all, so this benchmark switches the drift probe off for this study (runner.study_drift_probe
       -> None): a documented override inside the benchmark, no library default changed.
  new  today's objective: loss on the held-out split / the base model's + 1 x drift (--score loss:
       the tiny CLIP is random, so its terms would add noise, not fidelity).
Each recommendation is trained as `lrfind train --from-study` would (train_config_from_study, all
images), and judged at every epoch end on the test set with the LoRA live: the noise-prediction
loss at fixed timesteps and noise (benchmarks/overfitting_curve.py's FixedNoiseLoss, four noise
seeds) and the drift on pretraining-set images and prompts without trigger words (its relative
drift: not the drift the new objective optimised, which uses class-token prompts). Printed: each
objective's recommended point, its final run's test loss (also / the base model's) and drift, the
ratios new/old, and whether the objectives disagreed: when they recommend the same run the
benchmark says "no disagreement" with the figures rather than a win; a test-loss change smaller
than --tolerance or than the test loss's own wobble over the runs' last epochs is called noise.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets the offline environment before any Hugging Face import)

# concept folder -> (scikit-image source, caption); the trigger word first, kohya-style tags
CONCEPTS = {"1_lrfcat cat": ("chelsea", "lrfcat, cat, tabby cat, face, green eyes, whiskers, striped fur"),
            "1_lrfcup cup": ("coffee", "lrfcup, cup, espresso, red cup, saucer, spoon, wooden table")}
DATASET_IMAGES = {"1_lrfcat cat": 8, "1_lrfcup cup": 4}  # split 0.25: 2 + 1 held out by the new study
TEST_IMAGES = {"1_lrfcat cat": 4, "1_lrfcup cup": 3}
VALIDATION_SPLIT = 0.25
MAX_IOU = 0.7  # two crops sharing more than this are near-duplicates: never in two sets
SAVED_PX = 128  # crops are saved at this size (the runs train at 64 px)
TEST_NOISE_SEEDS = (0, 1, 2, 3)  # 4 x 4 timesteps per test image: the measurement's own noise ~0.3 %
SPREAD_EPOCHS = 6  # the last epochs of a final run over which the test loss's wobble is measured

SPACE_TOML = """\
# benchmarks/generalisation.py: an overfitting regime on tiny-pretrained (high lr, many epochs)
description = "generalisation benchmark"
network_dim = [4, 16]
network_alpha_fraction = [0.5, 1.0]
lr_multiplier = {{ range = [{lr_low}, {lr_high}] }}
epochs = {{ range = [1, {epochs}] }}
optimizer = ["AdamW"]
lr_scheduler = ["constant"]

[fixed]
resolution = 64
train_batch_size = 1
network_train_unet_only = true
enable_bucket = false

[objective]
loss = 1.0
drift = {drift}
clip_i = 0.0
clip_t = 0.0

[budget]
trial_budget_steps = {budget}
eval_every_steps = 12
"""


# ---------------------------------------------------------------- the three image sets (pure)

def iou(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """Intersection over union of two square boxes (left, top, side)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


def crop_boxes(width: int, height: int, n: int, seed: int, max_iou: float = MAX_IOU) -> list[tuple[int, int, int]]:
    """n square boxes (left, top, side) inside a width x height photo, sides 50-100 % of its short
    side, no two sharing more than max_iou: distinct views of one subject. Deterministic in seed."""
    rng = random.Random(f"crops:{seed}")
    short = min(width, height)
    boxes: list[tuple[int, int, int]] = []
    for _ in range(10_000):
        if len(boxes) == n:
            return boxes
        side = rng.randint(short // 2, short)
        box = (rng.randint(0, width - side), rng.randint(0, height - side), side)
        if all(iou(box, other) <= max_iou for other in boxes):
            boxes.append(box)
    raise ValueError(f"could not place {n} crops of a {width}x{height} photo with IoU <= {max_iou}")


def split_boxes(boxes: list, n_dataset: int) -> tuple[list, list]:
    """(dataset boxes, test boxes), the test ones spread evenly through the list: crop_boxes places
    later boxes where earlier ones leave room, so taking the last ones would bias the test set."""
    n_test = len(boxes) - n_dataset
    if not 0 <= n_test <= len(boxes):
        raise ValueError(f"{n_dataset} dataset boxes of {len(boxes)}")
    test_idx = {int(len(boxes) / n_test * (i + 0.5)) for i in range(n_test)} if n_test else set()
    return [b for i, b in enumerate(boxes) if i not in test_idx], [b for i, b in enumerate(boxes) if i in test_idx]


def check_disjoint(sets: dict[str, list[str]]) -> None:
    """Raise if any file name is in two of the sets (e.g. train, held-out, test)."""
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            shared = set(sets[first]) & set(sets[second])
            if shared:
                raise ValueError(f"{sorted(shared)[0]} is both in {first} and {second}")


def write_image_sets(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """root/dataset and root/test in kohya layout (one folder per concept): (dataset, test)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    for folder, (source, caption) in CONCEPTS.items():
        photo = np.asarray(getattr(data, source)())
        height, width = photo.shape[:2]
        boxes = crop_boxes(width, height, DATASET_IMAGES[folder] + TEST_IMAGES[folder], seed)
        for part, chosen in zip(("dataset", "test"), split_boxes(boxes, DATASET_IMAGES[folder])):
            target = root / part / folder
            target.mkdir(parents=True, exist_ok=True)
            for left, top, side in chosen:
                stem = f"{source}_{left}_{top}_{side}"  # names say which crop: the sets' disjointness is checkable
                crop = Image.fromarray(photo[top:top + side, left:left + side]).convert("RGB")
                crop.resize((SAVED_PX, SAVED_PX), Image.Resampling.LANCZOS).save(target / f"{stem}.jpg", quality=95)
                (target / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    return root / "dataset", root / "test"


# ---------------------------------------------------------------- the comparison (pure)

@dataclass(frozen=True)
class Outcome:
    """One objective's recommendation and its final run's figures on the test set."""

    objective: str
    point: dict  # network_dim, network_alpha, unet_lr, epochs, repeats
    test_loss: float
    base_test_loss: float
    test_drift: float
    best_test_epoch: int  # the epoch of the final run's lowest test loss (what an oracle would pick)
    study_value: float
    trials: int
    study_steps: int

    @property
    def test_ratio(self) -> float:
        return self.test_loss / self.base_test_loss


def same_point(old: dict, new: dict) -> bool:
    """Do two recommendations describe the same run? (lr compared to 0.1 %: it is a float)"""
    if set(old) != set(new):
        return False
    for key in old:
        a, b = old[key], new[key]
        if isinstance(a, float) or isinstance(b, float):
            if not math.isclose(float(a), float(b), rel_tol=1e-3):
                return False
        elif a != b:
            return False
    return True


def curve_spread(rows: list[dict], last: int = SPREAD_EPOCHS) -> float:
    """Standard deviation / mean of the test loss over a final run's last `last` epochs: how much
    one epoch more or less moves it at a high lr (the LoRA's weights wobble from epoch to epoch)."""
    losses = [r["test_loss"] for r in rows[1:]][-last:]
    return statistics.pstdev(losses) / statistics.mean(losses) if len(losses) > 1 else 0.0


def verdict(old: Outcome, new: Outcome, tolerance: float) -> str:
    """What the pair of final runs says, in words; `tolerance`: the relative change of test loss
    taken as noise (training-seed noise on this model is ~1 %, benchmarks/RESULTS.md)."""
    if same_point(old.point, new.point):
        return "no disagreement: both objectives recommend the same run, so the test figures are the same"
    loss = new.test_loss / old.test_loss - 1
    drift = new.test_drift / old.test_drift - 1 if old.test_drift > 0 else math.inf
    if abs(loss) <= tolerance:
        side = "lower" if drift < 0 else "higher"
        return (f"disagreed, but test loss within the {tolerance:.0%} noise ({loss:+.2%}); "
                f"the new one drifts {side} ({drift:+.0%})")
    side = "better" if loss < 0 else "worse"
    return f"disagreed: the new objective's run is {side} on the test set (loss {loss:+.2%}, drift {drift:+.0%})"


# ---------------------------------------------------------------- running it

class TestSetProbe:
    """Loop callback: test-set loss and drift at each epoch end, LoRA live (epoch 0: the base)."""

    def __init__(self, unet, test_losses: list, drift):
        self.unet, self.test_losses, self.drift = unet, test_losses, drift
        self.base_drift_pred = drift.predict(unet)
        self.rows = [self._row(0)]

    def _row(self, epoch: int) -> dict:
        pred = self.drift.predict(self.unet)
        drift = float((pred - self.base_drift_pred).double().pow(2).mean() / self.base_drift_pred.double().pow(2).mean())
        return {"epoch": epoch, "test_loss": statistics.mean(t.loss(self.unet) for t in self.test_losses),
                "drift": drift}

    def on_epoch_end(self, state) -> None:
        self.rows.append(self._row(state.epoch))


class Bench:
    """Scratch folder, the image sets, the model (loaded once), the shared probe, the test probes."""

    def __init__(self, scratch: Path, args):
        import numpy as np
        import overfitting_curve as oc  # its fixed-noise loss and pretraining-set drift inputs
        from PIL import Image
        from skimage import data

        from lrfind.config import ModelConfig
        from lrfind.models import loading

        self.scratch, self.args = scratch, args
        self.dataset, self.test = write_image_sets(scratch / "images")
        self.components = loading.load_components(ModelConfig(model="tiny-pretrained"))
        loading.load_components = lambda cfg, dtype=None: self.components  # every study shares this load
        files = sorted(self.test.rglob("*.jpg"))
        pixels = oc._pixels([np.asarray(Image.open(p).convert("RGB")) for p in files], 64)
        captions = [p.with_suffix(".txt").read_text().strip() for p in files]
        self.test_losses = [oc.FixedNoiseLoss(self.components, pixels, captions, seed=s) for s in TEST_NOISE_SEEDS]
        drift_images = [np.asarray(getattr(data, name)()) for name in oc.DRIFT_SOURCES]
        drift_images = [np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3] for a in drift_images]
        self.drift = oc.FixedNoiseLoss(self.components, oc._pixels(drift_images, 64), list(oc.DRIFT_SOURCES.values()))
        self.probe_json = None

    def study_config(self, objective: str, seed: int):
        from lrfind.study.config import StudyConfig

        args = self.args
        space = self.scratch / f"space-{objective}.toml"
        lr_low, lr_high = args.lr_multiplier
        budget = args.epochs * sum(DATASET_IMAGES.values())  # the old study's longest run: nothing scaled
        space.write_text(SPACE_TOML.format(lr_low=lr_low, lr_high=lr_high, epochs=args.epochs, budget=budget,
                                           drift=0.0 if objective == "old" else 1.0), encoding="utf-8")
        name = f"{objective}-s{seed}"
        cfg = StudyConfig(dataset={"train_dir": self.dataset}, name=name, model={"model": "tiny-pretrained"},
                          space=str(space), score="loss",
                          n_trials=args.n_trials, seed=seed, sampler_seed=seed, progress=False,
                          validation_split=0.0 if objective == "old" else VALIDATION_SPLIT,
                          out=self.scratch / "studies" / name, cache_dir=self.scratch / "cache")
        cfg.out_dir().mkdir(parents=True, exist_ok=True)
        if self.probe_json is not None:  # one probe for every study here (as a resumed study reuses its own)
            shutil.copy(self.probe_json, cfg.out_dir() / "probe.json")
        return cfg

    def run_study(self, objective: str, seed: int):
        """The study; the old objective's without a drift probe (see the module doc). Returns
        (recommendation, trials, steps trained, held-out image names)."""
        import optuna

        from lrfind.study import runner
        from lrfind.study.held_out import HELD_OUT_ATTR

        cfg = self.study_config(objective, seed)
        with_drift = runner.study_drift_probe
        if objective == "old":
            runner.study_drift_probe = lambda space, components, dataset: None
        try:
            outcome = runner.run_study(cfg)
        finally:
            runner.study_drift_probe = with_drift
        if self.probe_json is None:
            self.probe_json = cfg.out_dir() / "probe.json"
        study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
        trials = study.get_trials(deepcopy=False)
        held_out = [Path(p).name for p in (study.user_attrs.get(HELD_OUT_ATTR) or {}).get("images", [])]
        steps = sum(int(t.user_attrs.get("steps_done", 0)) for t in trials)
        return cfg, outcome.recommendation, len(trials), steps, held_out

    def train_and_test(self, cfg, rec) -> list[dict]:
        """The recommended full run (all dataset images), test-set figures at each epoch end."""
        from lrfind.api import train, train_config_from_study

        config = train_config_from_study(cfg.name, study_dir=cfg.out_dir(), train_data_dir=cfg.dataset.train_dir,
                                         cache_dir=cfg.cache_dir, progress=False,
                                         save_state=False, xy_grid=False, save_every_n_epochs=None,
                                         sample_every_n_epochs=None, logging_dir=None)
        probe = TestSetProbe(self.components.unet, self.test_losses, self.drift)
        train(config, components=self.components, callbacks=[probe])
        return probe.rows


def point_of(rec) -> dict:
    return {"network_dim": rec.network_dim, "network_alpha": float(rec.network_alpha), "unet_lr": float(rec.unet_lr),
            "epochs": rec.epochs, "repeats": rec.repeats or max((c.repeats for c in rec.concept_repeats), default=1)}


def run_seed(bench: Bench, seed: int) -> dict:
    outcomes, curves, held = {}, {}, {}
    for objective in ("new", "old"):  # new first: its study runs the shared probe on its training share
        started = time.perf_counter()
        cfg, rec, trials, steps, held_out = bench.run_study(objective, seed)
        rows = bench.train_and_test(cfg, rec)
        best = min(rows[1:], key=lambda r: r["test_loss"])
        outcomes[objective] = Outcome(objective, point_of(rec), rows[-1]["test_loss"], rows[0]["test_loss"],
                                      rows[-1]["drift"], best["epoch"], float(rec.value), trials, steps)
        curves[objective], held[objective] = rows, held_out
        print(f"seed {seed} {objective}: {trials} trials, {steps} steps, {time.perf_counter() - started:.0f} s, "
              f"held out {held_out or 'none'}", flush=True)
    dataset = [p.name for p in bench.dataset.rglob("*.jpg")]
    check_disjoint({"train": sorted(set(dataset) - set(held["new"])), "held-out": held["new"],
                    "test": [p.name for p in bench.test.rglob("*.jpg")]})
    return {"seed": seed, "outcomes": outcomes, "curves": curves, "held_out": held["new"]}


def fmt_point(p: dict) -> str:
    return (f"dim {p['network_dim']}, alpha {p['network_alpha']:g}, lr {p['unet_lr']:.3g}, "
            f"{p['epochs']} ep, {p['repeats']} rep")


def print_seed(result: dict, tolerance: float) -> None:
    old, new = result["outcomes"]["old"], result["outcomes"]["new"]
    print(f"\nseed {result['seed']} (new study's held-out split: {', '.join(result['held_out'])})")
    print("| objective | recommended point | study value | test loss (/ base) | test drift | best test epoch |")
    print("|---|---|---|---|---|---|")
    for o in (old, new):
        print(f"| {o.objective} | {fmt_point(o.point)} | {o.study_value:.4f} | {o.test_loss:.5f} ({o.test_ratio:.4f}) "
              f"| {o.test_drift:.4f} | {o.best_test_epoch} |")
    drift_ratio = new.test_drift / old.test_drift if old.test_drift > 0 else math.inf
    print(f"new/old: test loss {new.test_loss / old.test_loss:.4f}, drift {drift_ratio:.3f}")
    spread = max(curve_spread(result["curves"]["old"]), curve_spread(result["curves"]["new"]))
    print(f"test loss's epoch-to-epoch spread over the runs' last {SPREAD_EPOCHS} epochs: {spread:.2%} "
          f"(taken as noise when above --tolerance {tolerance:.0%})")
    print(verdict(old, new, max(tolerance, spread)))
    print("epoch | old: test loss | drift | new: test loss | drift")
    old_rows, new_rows = result["curves"]["old"], result["curves"]["new"]
    for i in range(max(len(old_rows), len(new_rows))):
        cells = [f"{rows[i]['test_loss']:.5f} | {rows[i]['drift']:.4f}" if i < len(rows) else "- | -"
                 for rows in (old_rows, new_rows)]
        print(f"{i:5d} | {cells[0]} | {cells[1]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="study seeds (sampler, training seed and split), comma-separated")
    parser.add_argument("--n-trials", type=int, default=6, help="trials per study (the same budget for both)")
    parser.add_argument("--epochs", type=int, default=24, help="the space's most epochs")
    parser.add_argument("--lr-multiplier", type=lambda s: tuple(float(x) for x in s.split(",")), default=(3.0, 16.0),
                        help="the space's lr multiplier range LOW,HIGH (x the probe's lr)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="test-loss change taken as noise")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)

    print(_common.machine_line(), flush=True)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-generalisation-") as tmp:
        bench = Bench(Path(tmp), args)
        for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
            results.append(run_seed(bench, seed))
            print_seed(results[-1], args.tolerance)
    pairs = [(r["outcomes"]["old"], r["outcomes"]["new"]) for r in results]
    disagreed = [not same_point(o.point, n.point) for o, n in pairs]
    print(f"\nobjectives disagreed in {sum(disagreed)} of {len(pairs)} seed(s)")
    if any(disagreed):
        ratios = [n.test_loss / o.test_loss for (o, n), d in zip(pairs, disagreed) if d]
        print(f"where they did, new/old test loss: {', '.join(f'{r:.4f}' for r in ratios)}")
    print(f"{_common.machine_line()}\nwall {time.perf_counter() - started:.0f} s, peak RSS {_common.peak_rss_gib():.2f} GiB")
    if args.json:
        args.json.write_text(json.dumps([{**r, "outcomes": {k: asdict(v) for k, v in r["outcomes"].items()}}
                                         for r in results], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
