"""Benchmark (issue #4): is the probe's lr the lr an AdamW grid search finds, at a fraction of its cost?

    python benchmarks/probe_accuracy.py [--resolution 64] [--batch-size 2] [--steps 200]
        [--grid-low 1e-4 --grid-high 3e-1 --grid-points 12] [--seeds 0,1,2] [--workers N]

On the tiny model (model seed 0) and the shipped real-image example dataset, for each seed:
  grid   AdamW at each lr of a log-spaced grid, N steps each, constant lr, UNet LoRA dim 8 /
         alpha 8 (the probe's defaults), scored by the final deterministic validation loss;
  probe  `lrfind probe` with DAdaptAdam and with Prodigy (their default steps), and the LR range
         test (--method range), on the same data, dim, alpha, resolution and batch.
The seed sets the LoRA's initialisation and the training noise; the model stays the same.
It prints the grid table (validation loss per lr and seed, and their mean), the grid best per seed
and of the mean curve (plus a parabola vertex in log-lr: a sub-grid estimate), and for each method
probe_lr / grid_best_lr and the compute ratio probe steps / (grid points x N), with wall times.
Target (issue #4): within x2 of the grid best, at <= 15 % of the grid's compute.
`plateau / grid best` is the raw d*lr plateau against the grid: the factor the folk recipe misses
(the probe optimizer's plateau_factor in lrfind.optimizers corrects it; `lr` is re-derived from the stored plateau with the
current factors, so `--from-json FILE` re-summarises saved runs after a factor changes).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lr_grid import adamw_val_loss, fmt, grid_best, load_saved, log_grid, make_bench, run_probe_on  # noqa: E402

PROBES = (("dadaptation", "dadaptation"), ("prodigy", "dadaptation"), ("dadaptation", "range"))


def run_seed(args_dict: dict, seed: int) -> dict:
    """Everything for one seed, in one process (a worker of its own when --workers > 1)."""
    args = argparse.Namespace(**args_dict)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix=f"lrfind-acc-{seed}-") as tmp:
        bench = make_bench(Path(tmp), args.resolution, args.batch_size, model=args.model)
        lrs = log_grid(args.grid_low, args.grid_high, args.grid_points)
        losses = []
        for lr in lrs:
            losses.append(adamw_val_loss(bench, lr, args.steps, seed))
            print(f"  seed {seed}  AdamW lr {lr:.3g}: val {fmt(losses[-1])}", flush=True)
        probes = {}
        for optimizer, method in PROBES:
            report = run_probe_on(bench, optimizer, seed, method=method)
            name = "range test" if method == "range" else optimizer
            if method == "range":
                rt = report["range_test"]
                probes[name] = {"lr": rt["suggested_lr"], "plateau": None, "status": rt["status"],
                                "min_loss_lr": rt["min_loss_lr"], "steps": len(rt["points"]) and rt["points"][-1][0]}
            else:
                probes[name] = {"lr": report.get("adamw_lr"), "plateau": report.get("plateau_value"),
                                "status": report.get("status"), "steps": report.get("steps"),
                                "plateau_step": report.get("plateau_step"), "confidence": report.get("confidence"),
                                "earlier_plateau": _earlier_plateau(report),
                                "half_run_plateau": half_run_plateau(report["curve"]), "curve": report["curve"]}
            shown = {k: v for k, v in probes[name].items() if k != "curve"}
            print(f"  seed {seed}  probe {name}: {shown}", flush=True)
        return {"seed": seed, "lrs": lrs, "losses": losses, "probes": probes, "timings": bench.timings,
                "device": bench.device}


def _earlier_plateau(report: dict) -> float | None:
    """The d*lr of a plateau before the reported one (a staircase, or a plateau before divergence)."""
    from lrfind.probe.plateau import analyse_curve

    steps, values, losses = zip(*report["curve"])
    nan = float("nan")
    earlier = analyse_curve(list(steps), [nan if v is None else v for v in values],
                            [nan if v is None else v for v in losses]).earlier_plateau
    return earlier[2] if earlier else None


def half_run_plateau(curve: list) -> float | None:
    """What the probe would have reported had it stopped at half its steps (a run that diverged late
    still shows the plateau it held before)."""
    from lrfind.probe.plateau import analyse_curve

    half = curve[: len(curve) // 2]
    nan = float("nan")
    result = analyse_curve([r[0] for r in half], [nan if r[1] is None else r[1] for r in half],
                           [nan if r[2] is None else r[2] for r in half])
    return result.value if result.status == "converged" else None


def run_all(args) -> list[dict]:
    if args.workers <= 1:
        return [run_seed(vars(args), seed) for seed in args.seeds]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_seed, [vars(args)] * len(args.seeds), args.seeds))


def geo_mean(values) -> float | None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarise(args, results: list[dict]) -> dict:
    lrs = results[0]["lrs"]
    mean_losses = [sum(r["losses"][i] for r in results) / len(results) for i in range(len(lrs))]
    per_seed = {r["seed"]: grid_best(lrs, r["losses"]) for r in results}
    overall = grid_best(lrs, mean_losses)
    grid_steps = len(lrs) * args.steps
    grid_seconds = sum(r["timings"]["adamw grid"][0] for r in results) / len(results)
    summary = {"grid_best_lr": overall.best_lr, "grid_fitted_lr": overall.fitted_lr, "at_edge": overall.at_edge,
               "per_seed_best": {s: [g.best_lr, g.fitted_lr] for s, g in per_seed.items()}, "methods": {}}
    for name in results[0]["probes"]:
        _rederive(results, name)
        ratios = [r["probes"][name]["lr"] / per_seed[r["seed"]].fitted_lr for r in results if r["probes"][name]["lr"]]
        plateau_ratios = [r["probes"][name]["plateau"] / per_seed[r["seed"]].fitted_lr for r in results
                          if r["probes"][name]["plateau"]]
        half_ratios = [r["probes"][name]["half_run_plateau"] / per_seed[r["seed"]].fitted_lr for r in results
                       if r["probes"][name].get("half_run_plateau")]
        earlier_ratios = [r["probes"][name]["earlier_plateau"] / per_seed[r["seed"]].fitted_lr for r in results
                          if r["probes"][name].get("earlier_plateau")]
        key = "probe range" if name == "range test" else f"probe {name}"
        seconds = sum(r["timings"][key][0] for r in results) / len(results)
        steps = sum(r["timings"][key][1] for r in results) / len(results)
        lr = geo_mean(r["probes"][name]["lr"] for r in results)
        summary["methods"][name] = {
            "lr": lr, "lr_over_grid_best": lr / overall.fitted_lr if lr else None,
            "per_seed_ratio": ratios, "plateau_over_grid_best": geo_mean(plateau_ratios),
            "earlier_plateau_over_grid_best": geo_mean(earlier_ratios), "n_earlier": len(earlier_ratios),
            "half_run_plateau_over_grid_best": geo_mean(half_ratios), "n_half": len(half_ratios),
            "statuses": [r["probes"][name]["status"] for r in results],
            "compute_steps": steps / grid_steps, "compute_time": seconds / grid_seconds,
        }
    return summary


def _rederive(results: list[dict], name: str) -> None:
    """A d*lr probe's AdamW lr from its stored plateau with the CURRENT lrfind.probe.derive (the
    plateau factors of lrfind.optimizers), so that --from-json shows what a changed factor does to the same runs."""
    from lrfind.probe.derive import derive_settings

    if name == "range test":
        return
    for r in results:
        plateau = r["probes"][name]["plateau"]
        r["probes"][name]["lr"] = derive_settings(plateau, name).adamw_lr if plateau else None


def print_report(args, results: list[dict], summary: dict) -> None:
    lrs = results[0]["lrs"]
    print(f"\nprobe accuracy: {args.model} model, example dataset, {args.resolution} px, batch {args.batch_size}, "
          f"AdamW {args.steps} steps per grid point, dim 8 / alpha 8; device {results[0]['device']}")
    print("lr        " + "".join(f"  seed {r['seed']:<5}" for r in results) + "  mean")
    for i, lr in enumerate(lrs):
        row = [r["losses"][i] for r in results]
        mean = sum(row) / len(row)
        print(f"{lr:<10.3g}" + "".join(f"  {fmt(v):<10}" for v in row) + f"  {fmt(mean)}")
    for seed, (best, fitted) in summary["per_seed_best"].items():
        print(f"seed {seed}: grid best {best:.3g}, parabola {fitted:.3g}")
    edge = " (AT THE GRID EDGE: widen the grid)" if summary["at_edge"] else ""
    print(f"mean curve: grid best {summary['grid_best_lr']:.3g}, parabola {summary['grid_fitted_lr']:.3g}{edge}")
    print(f"\n{'method':<12} {'lr':>9} {'lr/grid best':>13} {'per seed':>22} {'plateau/grid':>13} "
          f"{'steps ratio':>12} {'time ratio':>11}  status")
    for name, m in summary["methods"].items():
        per_seed = ",".join(f"{x:.2f}" for x in m["per_seed_ratio"])
        print(f"{name:<12} {fmt(m['lr']):>9} {fmt(m['lr_over_grid_best']):>13} {per_seed:>22} "
              f"{fmt(m['plateau_over_grid_best']):>13} {m['compute_steps']:>12.1%} {m['compute_time']:>11.1%}  "
              f"{','.join(map(str, m['statuses']))}")
    for name, m in summary["methods"].items():
        if m["n_earlier"]:
            print(f"{name}: {m['n_earlier']} run(s) had an earlier plateau (a staircase or a plateau before "
                  f"divergence); its d*lr / grid best = {m['earlier_plateau_over_grid_best']:.3g}")
    for name, m in summary["methods"].items():
        if m["n_half"]:
            print(f"{name}: the plateau at half the probe's steps / grid best = "
                  f"{m['half_run_plateau_over_grid_best']:.3g} ({m['n_half']} seed(s) converged by then)")
    cheap = {n for n, m in summary["methods"].items() if max(m["compute_steps"], m["compute_time"]) <= 0.15}
    on_mean = [n for n, m in summary["methods"].items() if n in cheap and m["lr_over_grid_best"]
               and 0.5 <= m["lr_over_grid_best"] <= 2]
    every = [n for n in on_mean if _seeds_within(summary["methods"][n]) == len(results)]
    for name, m in summary["methods"].items():
        print(f"{name}: within x2 of its seed's grid best in {_seeds_within(m)} of {len(results)} seeds")
    print(f"target (within x2 of the grid best at <= 15 % of its steps and time), geometric mean over seeds, "
          f"met by: {', '.join(on_mean) or 'none'}; in every seed: {', '.join(every) or 'none'}")


def _seeds_within(method: dict) -> int:
    return sum(1 for x in method["per_seed_ratio"] if 0.5 <= x <= 2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", choices=("tiny", "tiny-pretrained", "tiny-sdxl"), help="built-in base model")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=200, help="AdamW steps per grid point")
    p.add_argument("--grid-low", type=float, default=1e-4)
    p.add_argument("--grid-high", type=float, default=3e-1)
    p.add_argument("--grid-points", type=int, default=12)
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--workers", type=int, default=1, help="processes, one seed each")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    p.add_argument("--json", type=Path, help="also write the raw results and the summary here")
    p.add_argument("--from-json", type=Path, help="re-summarise a --json file's raw results with the current "
                                                  "lrfind.probe.derive (no training; the other options are ignored)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved_args, results = load_saved(args.from_json)
        summary = summarise(argparse.Namespace(**saved_args), results)
        print_report(argparse.Namespace(**saved_args), results, summary)
        return 0
    results = run_all(args)
    if args.json:  # the raw results first: hours of compute survive a failing summary
        from lrfind.atomic import write_json

        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    summary = summarise(args, results)
    print_report(args, results, summary)
    if args.json:
        from lrfind.atomic import write_json

        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                               "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
