"""Benchmark (issue #4, item 4): does the best AdamW lr move with dim/alpha as derive.rescale_lr says?

    python benchmarks/probe_rescale.py [--settings 8:8,8:2,32:32,4:1,32:8] [--steps 150]
        [--grid-low 1e-3 --grid-high 0.256 --grid-points 9] [--seeds 0] [--workers N]

On the tiny model and the shipped example dataset, for each LoRA (dim, alpha): AdamW at every lr
of one log-spaced grid (N steps, constant lr, UNet only) -> the lr with the best final validation
loss (a parabola in log-lr refines it), and the DAdaptAdam and Prodigy probes' plateau d*lr.
Against the first setting it compares the measured ratio best_lr(setting) / best_lr(first) with
what each rule of derive.RESCALE_RULES predicts, and fits log lr = c + p log dim - q log alpha
(kohya's alpha/dim scaling, rule "alpha_over_dim", is p = q = 1) and, on the ratio alone,
lr ~ (dim/alpha)^k. The same fits are made for the probes' plateaus: does the probe follow the rule
by itself (then probing at the final dim/alpha needs no rescale)?
End to end, as a study uses it: the probe's AdamW lr at the first setting (derive_settings, with
the plateau factors of lrfind.optimizers) rescaled to each setting by the space's default rule, against that setting's grid
best (`e2e`, target within x2); and the probe run at the setting itself, no rescale (`own`).
`--from-json FILE` re-summarises saved runs with the current lrfind.probe.derive, without training.

`--networks lora,locon,loha,lokr` (issue #13) adds the network type as a factor: every setting's
grid is run for each type of lrfind.network.types (its defaults: LoCon conv_dim = dim, LyCORIS
preset full, LoKr factor -1), and the best lr of each kind is compared with LoRA's at the same
dim/alpha (the factor trial_values applies when a study searches the type). Probes run on LoRA only.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lr_grid import adamw_val_loss, fmt, grid_best, load_saved, log_grid, make_bench, run_probe_on  # noqa: E402


def run_task(args_dict: dict, task: tuple) -> dict:
    """One (dim, alpha, seed): its grid and its probes, in one process."""
    dim, alpha, seed, network = task
    args = argparse.Namespace(**args_dict)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix=f"lrfind-rescale-{dim}-{alpha:g}-{seed}-{network}-") as tmp:
        bench = make_bench(Path(tmp), args.resolution, args.batch_size, model=args.model)
        lrs = log_grid(args.grid_low, args.grid_high, args.grid_points)
        losses = [adamw_val_loss(bench, lr, args.steps, seed, dim, alpha, network) for lr in lrs]
        plateaus = {}
        for optimizer in args.probes if network == "lora" else ():
            report = run_probe_on(bench, optimizer, seed, dim, alpha)
            plateaus[optimizer] = {"value": report.get("plateau_value"), "status": report.get("status")}
        print(f"  {network} dim {dim} alpha {alpha:g} seed {seed}: "
              + " ".join(f"{lr:.2g}:{fmt(v)}" for lr, v in zip(lrs, losses)) + f"  probes {plateaus}", flush=True)
        return {"dim": dim, "alpha": alpha, "seed": seed, "network": network, "lrs": lrs, "losses": losses,
                "plateaus": plateaus, "device": bench.device}


def run_all(args) -> list[dict]:
    tasks = [(d, a, s, n) for n in args.networks for d, a in args.settings for s in args.seeds]
    if args.workers <= 1:
        return [run_task(vars(args), t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_task, [vars(args)] * len(tasks), tasks))


def fit_power_laws(dims, alphas, lrs) -> dict:
    """Least squares: log lr = c + p log dim - q log alpha, and log lr = c + k log(dim/alpha)."""
    import numpy as np

    y = np.log(lrs)
    design = np.column_stack([np.ones(len(y)), np.log(dims), -np.log(alphas)])
    (_, p, q), *_ = np.linalg.lstsq(design, y, rcond=None)
    ratio = np.column_stack([np.ones(len(y)), np.log(np.asarray(dims, float) / np.asarray(alphas, float))])
    (_, k), *_ = np.linalg.lstsq(ratio, y, rcond=None)
    return {"p_dim": float(p), "q_alpha": float(q), "k_dim_over_alpha": float(k)}


def geo_mean(values) -> float | None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarise(args, results: list[dict]) -> dict:
    from lrfind.probe.derive import DEFAULT_RESCALE_RULE, RESCALE_RULES, derive_settings, rescale_lr

    args.rule = args.rule or DEFAULT_RESCALE_RULE

    rows = []
    results = [r for r in results if r.get("network", "lora") == "lora"]
    for dim, alpha in args.settings:
        runs = [r for r in results if (r["dim"], r["alpha"]) == (dim, alpha)]
        lrs = runs[0]["lrs"]
        mean = [sum(r["losses"][i] for r in runs) / len(runs) for i in range(len(lrs))]
        best = grid_best(lrs, mean)
        plateaus = {o: geo_mean(r["plateaus"][o]["value"] for r in runs) for o in args.probes}
        rows.append({"dim": dim, "alpha": alpha, "best_lr": best.best_lr, "fitted_lr": best.fitted_lr,
                     "at_edge": best.at_edge, "best_loss": best.best_loss, "plateaus": plateaus,
                     "statuses": {o: [r["plateaus"][o]["status"] for r in runs] for o in args.probes}})
    base = rows[0]
    for row in rows:
        row["measured_ratio"] = row["fitted_lr"] / base["fitted_lr"]
        row["predicted"] = {rule: rescale_lr(1.0, base["dim"], base["alpha"], row["dim"], row["alpha"], rule)
                            for rule in RESCALE_RULES}
        row["plateau_ratio"] = {o: (row["plateaus"][o] / base["plateaus"][o]
                                    if row["plateaus"][o] and base["plateaus"][o] else None) for o in args.probes}
        row["e2e"], row["own"] = {}, {}
        for o in args.probes:  # the study's chain: probe at the first setting -> rescaled -> vs this grid
            if base["plateaus"][o]:
                lr = derive_settings(base["plateaus"][o], o).adamw_lr
                row["e2e"][o] = rescale_lr(lr, base["dim"], base["alpha"], row["dim"], row["alpha"],
                                           args.rule) / row["fitted_lr"]
            own = row["plateaus"][o]
            row["own"][o] = derive_settings(own, o).adamw_lr / row["fitted_lr"] if own else None
    dims, alphas = [r["dim"] for r in rows], [r["alpha"] for r in rows]
    fits = {"adamw grid": fit_power_laws(dims, alphas, [r["fitted_lr"] for r in rows])}
    for o in args.probes:
        usable = [r for r in rows if r["plateaus"][o]]
        if len(usable) >= 3:
            fits[f"{o} plateau"] = fit_power_laws([r["dim"] for r in usable], [r["alpha"] for r in usable],
                                                  [r["plateaus"][o] for r in usable])
    errors = {rule: max(abs(math.log2(r["measured_ratio"] / r["predicted"][rule])) for r in rows)
              for rule in rows[0]["predicted"]}
    e2e = {o: max((abs(math.log2(r["e2e"][o])) for r in rows if r["e2e"].get(o)), default=None)
           for o in args.probes}
    return {"rows": rows, "fits": fits, "worst_log2_error": errors, "worst_log2_e2e": e2e}


def network_factors(args, results: list[dict]) -> list[dict]:
    """Per setting and network kind: the grid best and its ratio to LoRA's at the same dim/alpha."""
    rows = []
    for dim, alpha in args.settings:
        best = {}
        for network in args.networks:
            runs = [r for r in results if (r["dim"], r["alpha"], r.get("network", "lora")) == (dim, alpha, network)]
            if runs:
                lrs = runs[0]["lrs"]
                mean = [sum(r["losses"][i] for r in runs) / len(runs) for i in range(len(lrs))]
                best[network] = grid_best(lrs, mean)
        for network, grid in best.items():
            lora = best.get("lora")
            rows.append({"dim": dim, "alpha": alpha, "network": network, "best_lr": grid.best_lr,
                         "fitted_lr": grid.fitted_lr, "best_loss": grid.best_loss, "at_edge": grid.at_edge,
                         "ratio_to_lora": grid.fitted_lr / lora.fitted_lr if lora else None})
    return rows


def print_network_factors(rows: list[dict]) -> None:
    from lrfind.network.types import network_type_names
    from lrfind.probe.derive import network_lr_factor

    print("\nnetwork type: AdamW grid best per kind / LoRA's at the same dim and alpha; rule = "
          "lrfind.probe.derive.network_lr_factor")
    print(f"{'dim':>4} {'alpha':>6} {'network':>14} {'grid best':>10} {'parabola':>9} {'best loss':>10} "
          f"{'ratio':>7} {'rule':>7}")
    for r in rows:
        edge = "*" if r["at_edge"] else " "
        print(f"{r['dim']:>4} {r['alpha']:>6g} {r['network']:>14} {r['best_lr']:>10.3g}{edge}{r['fitted_lr']:>8.3g} "
              f"{r['best_loss']:>10.5g} {fmt(r['ratio_to_lora']):>7} {fmt(network_lr_factor(r['network']) if r['network'] in network_type_names() else None):>7}")


def print_report(args, summary: dict, device: str) -> None:
    rows = summary["rows"]
    rules = list(rows[0]["predicted"])
    print(f"\ndim/alpha rescale: {args.model} model, example dataset, {args.resolution} px, batch {args.batch_size}, "
          f"AdamW {args.steps} steps x {args.grid_points} lrs ({args.grid_low:g}..{args.grid_high:g}), "
          f"seeds {args.seeds}; device {device}")
    head = f"{'dim':>4} {'alpha':>6} {'grid best':>10} {'parabola':>9} {'ratio':>7} " + "".join(
        f"{'pred ' + r:>20}" for r in rules) + "".join(f"{o + ' plateau':>22}{'ratio':>7}" for o in args.probes)
    print(head)
    for r in rows:
        edge = "*" if r["at_edge"] else " "
        line = (f"{r['dim']:>4} {r['alpha']:>6g} {r['best_lr']:>10.3g}{edge}{r['fitted_lr']:>8.3g} "
                f"{r['measured_ratio']:>7.2f} " + "".join(f"{r['predicted'][rule]:>20.3g}" for rule in rules))
        for o in args.probes:
            line += f"{fmt(r['plateaus'][o]):>22}{fmt(r['plateau_ratio'][o]):>7}"
        print(line)
    if any(r["at_edge"] for r in rows):
        print("* best at the grid's edge: the optimum may lie outside the grid")
    for name, fit in summary["fits"].items():
        print(f"fit {name:<20} lr ~ dim^{fit['p_dim']:.2f} / alpha^{fit['q_alpha']:.2f};  "
              f"lr ~ (dim/alpha)^{fit['k_dim_over_alpha']:.2f}")
    for rule, err in summary["worst_log2_error"].items():
        verdict = "holds within x2" if err <= 1 else "is off"
        print(f"rule {rule:<16} worst miss x{2 ** err:.2f}: {verdict}")
    ref = rows[0]
    print(f"\nend to end (rule {args.rule}): probe AdamW lr at dim {ref['dim']} / alpha {ref['alpha']:g}, rescaled, "
          "/ the setting's grid best (e2e); probe run at the setting itself, no rescale (own)")
    print(f"{'dim':>4} {'alpha':>6} " + "".join(f"{o + ' e2e':>18}{o + ' own':>18}" for o in args.probes))
    for r in rows:
        print(f"{r['dim']:>4} {r['alpha']:>6g} "
              + "".join(f"{fmt(r['e2e'].get(o)):>18}{fmt(r['own'].get(o)):>18}" for o in args.probes))
    for o, err in summary["worst_log2_e2e"].items():
        if err is not None:
            print(f"end to end with {o}: worst miss x{2 ** err:.2f}: {'within x2' if err <= 1 else 'OFF'}")


def parse_settings(text: str) -> list[tuple[int, float]]:
    return [(int(d), float(a)) for d, a in (item.split(":") for item in text.split(","))]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", type=parse_settings, default=parse_settings("8:8,8:2,32:32,4:1,32:8"),
                   help="dim:alpha,...; the first is the reference")
    p.add_argument("--model", default="tiny", choices=("tiny", "tiny-pretrained", "tiny-sdxl"), help="built-in base model")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--grid-low", type=float, default=1e-3)
    p.add_argument("--grid-high", type=float, default=0.256)
    p.add_argument("--grid-points", type=int, default=9)  # x2 apart
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--probes", type=lambda s: [x for x in s.split(",") if x], default=["dadaptation", "prodigy"])
    p.add_argument("--networks", type=lambda s: [x for x in s.split(",") if x], default=["lora"],
                   help="types of lrfind.network.types to grid (lora first): e.g. lora,locon,loha,lokr")
    p.add_argument("--workers", type=int, default=1, help="processes, one (dim, alpha, seed, network) each")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    p.add_argument("--rule", default=None, help="the rescale rule the end-to-end check uses "
                                                "(default: lrfind.probe.derive.DEFAULT_RESCALE_RULE)")
    p.add_argument("--json", type=Path, help="also write the raw results and the summary here")
    p.add_argument("--from-json", type=Path, help="re-summarise a --json file's raw results with the current "
                                                  "lrfind.probe.derive (no training; the other options are ignored)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved_args, results = load_saved(args.from_json)
        saved = argparse.Namespace(**{"networks": ["lora"], **saved_args, "rule": args.rule})
        print_report(saved, summarise(saved, results), results[0]["device"])
        if len(saved.networks) > 1:
            print_network_factors(network_factors(saved, results))
        return 0
    results = run_all(args)
    if args.json:  # the raw results first: hours of compute survive a failing summary
        from lrfind.atomic import write_json

        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    summary = summarise(args, results)
    print_report(args, summary, results[0]["device"])
    if len(args.networks) > 1:
        summary["network_factors"] = network_factors(args, results)
        print_network_factors(summary["network_factors"])
    if args.json:
        from lrfind.atomic import write_json

        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                               "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
