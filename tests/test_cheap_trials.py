"""Cheap trials (issue 21): the study-level validation cache, the stored baseline, fewer passes.

Every speed-up here must leave the numbers as they were: the validation loss is compared with a
per-(image, timestep) reference written the way it was computed before (batches of 16 under
no_grad, one UNet call per batch, the caption embeddings looked up per batch).
"""

from __future__ import annotations

import math

import pytest

from lrfind.study.pruning import used_validation_steps
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config
from lrfind.training.plan import ValidationPlan


def make_config(dataset, tmp_path, **overrides) -> TrainConfig:
    values = dict(train_data_dir=dataset, resolution=64, train_batch_size=2, max_train_steps=6,
                  network_dim=4, network_alpha=2.0, learning_rate=3e-3, network_train_unet_only=True,
                  output_dir=tmp_path / "out", output_name="t", progress=False, seed=1)
    values.update(overrides)
    return train_config(values)


@pytest.fixture(scope="module")
def scanned(example_dataset):
    from lrfind.data.kohya import scan_dataset

    return lambda cfg: scan_dataset(cfg.dataset)


def reference_loss(parts, records, config) -> float:
    """The validation loss as it was defined before: each (image, timestep) on its own."""
    import torch

    from lrfind.training.losses import training_target
    from lrfind.training.validation import split_validation

    _, val_records = split_validation(records, config.validation_split, config.validation_seed)
    total, count = 0.0, 0
    parts.unet.eval()
    with torch.no_grad():
        for i, record in enumerate(val_records):
            latent = parts.latents[(record.path, False)].float()[None]
            emb = parts.conditioner.encode([record.caption], as_written=True, device=parts.device).hidden_states
            for t in config.validation_timesteps:
                gen = torch.Generator().manual_seed(config.validation_seed * 1_000_003 + i * 1009 + int(t))
                noise = torch.randn(latent.shape[1:], generator=gen, dtype=torch.float32)[None]
                ts = torch.tensor([int(t)])
                noisy = parts.noise_scheduler.add_noise(latent, noise, ts)
                target = training_target(parts.noise_scheduler, latent, noise, ts, parts.prediction_type)
                pred = parts.unet(noisy, ts, emb).sample.float()
                total += float(((pred - target) ** 2).mean().double())
                count += 1
    parts.unet.train()
    return total / count


def test_validation_loss_equals_the_per_sample_reference(tiny, example_dataset, feature_store, scanned, tmp_path):
    from lrfind.training.setup import lora_run

    config = make_config(example_dataset, tmp_path)
    dataset = scanned(config)
    with lora_run(config, tiny, dataset, feature_store) as parts:
        with_lora_zero = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
        for group in parts.validation.groups:  # one call holds every image of a bucket at this size
            assert parts.validation.chunk_size(group) >= len(group.captions)
        parts.validation.batch_size = 3  # uneven chunks: the same number
        chunked = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
        reference = reference_loss(parts, dataset.train_images, config)
    assert with_lora_zero == pytest.approx(reference, rel=1e-5)
    assert chunked == pytest.approx(reference, rel=1e-5)


def test_a_study_builds_one_validation_set_for_all_its_trials(tiny, example_dataset, feature_store, scanned,
                                                              tmp_path):
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    config = make_config(example_dataset, tmp_path, validate_every_n_steps=2)
    memo: dict = {}
    histories, sets = [], []
    for shared in (memo, memo, None):
        with lora_run(config, tiny, scanned(config), feature_store, shared) as parts:
            histories.append(run_loop(parts).val_history)  # validation mid-run, then training goes on
            sets.append(parts.validation)
    assert sets[0] is sets[1] and sets[2] is not sets[0] and len(memo) == 1
    assert [s for s, _ in histories[0]] == [2, 4, 6]
    assert histories[0] == histories[1] == histories[2]  # shared or not: bit-identical


def test_caption_embeddings_of_the_validation_set_are_encoded_once(tiny, example_dataset, feature_store, scanned,
                                                                   tmp_path):
    from lrfind.training.setup import lora_run

    config = make_config(example_dataset, tmp_path)
    with lora_run(config, tiny, scanned(config), feature_store) as parts:
        calls = []
        encode = parts.conditioner.encode
        parts.conditioner.encode = lambda captions, **k: calls.append(len(captions)) or encode(captions, **k)
        first = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
        second = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
    assert first == second and math.isfinite(first)
    assert len(calls) == len(parts.validation.groups)  # the first pass only, one call per bucket


def test_the_baseline_is_computed_once_and_read_back_by_another_worker(tiny, example_dataset, feature_store,
                                                                       tmp_path, monkeypatch):
    import optuna

    from lrfind.study import runner
    from lrfind.study.config import StudyConfig
    from lrfind.study.space import load_space

    cfg = StudyConfig(dataset={"train_dir": example_dataset}, name="b", space="tiny", out=tmp_path / "studies" / "b",
                      progress=False)
    cfg.out_dir().mkdir(parents=True)
    space = load_space("tiny")
    study = optuna.create_study(study_name="b", storage=cfg.storage_url())
    forwards = []
    hook = tiny.unet.register_forward_pre_hook(lambda module, args: forwards.append(1))
    try:
        memo: dict = {}
        value = runner.ensure_baseline(study, (cfg, space, tiny, _scan(cfg, space), feature_store), memo)
        computed = len(forwards)
        other = optuna.load_study(study_name="b", storage=cfg.storage_url())  # a resumed run or another worker
        monkeypatch.setattr("lrfind.study.runner.lora_run", _refuse)  # the one ensure_baseline calls
        again = runner.ensure_baseline(other, (cfg, space, tiny, _scan(cfg, space), feature_store), {})
    finally:
        hook.remove()
    assert computed >= 1 and len(forwards) == computed  # the second read made no UNet call
    assert again == value and other.user_attrs["baseline_val_loss"] == value and len(memo) == 1


def _scan(cfg, space):
    from lrfind.data.kohya import scan_dataset

    return scan_dataset(cfg.dataset.model_copy(update={"resolution": space.fixed.resolution,
                                                       "batch_size": space.fixed.train_batch_size}))


def _refuse(*args, **kwargs):
    raise AssertionError("the stored baseline must be read, not recomputed")


def every(n: int, total: int) -> tuple:
    return ValidationPlan(n), total


@pytest.mark.parametrize("values, boundaries, pruner, prunes, expected", [
    (every(5, 50), {}, "hyperband", True, [5, 15, 45, 50]),  # the rung steps 5 * 3**k and the end
    (every(5, 50), {}, "median", True, list(range(5, 51, 5))),  # the median pruner reads every report
    (every(5, 50), {}, "none", True, [50]),
    (every(5, 50), {}, "hyperband", False, [50]),  # --pareto: nothing is pruned
    (every(20, 20), {}, "hyperband", True, [20]),
    ((ValidationPlan.at([5, 10, 20, 40]), 40), {1: 20, 2: 40}, "hyperband", True, [5, 10, 20, 40]),  # swept: its lowest-so-far needs every early report
    ((ValidationPlan.at([5, 10, 20, 40]), 40), {1: 20, 2: 40}, "none", True, [20, 40]),
])
def test_validation_runs_only_where_its_loss_is_used(values, boundaries, pruner, prunes, expected):
    planned, total = values
    used = used_validation_steps(planned, total, boundaries, pruner=pruner, prunes=prunes, eval_every_steps=5)
    assert used == ValidationPlan(None, frozenset(expected))


def test_hyperband_prunes_the_same_with_fewer_passes():
    """The reports at rung steps give Hyperband the same decisions as reports every eval step."""
    import optuna

    def run(steps_of) -> list:
        pruner = optuna.pruners.HyperbandPruner(min_resource=5, max_resource=45, reduction_factor=3)
        # one study name: Hyperband puts a trial in a bracket by a hash of study name and number
        study = optuna.create_study(study_name="h", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
        outcome = []
        for number in range(12):
            trial = study.ask()
            for step in steps_of:
                trial.report(1.0 + ((number * 7919 + step * 31) % 97) / 97, step)
                if trial.should_prune():
                    outcome.append(step)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                outcome.append(None)
                study.tell(trial, 1.0)
        return outcome

    kept = used_validation_steps(*every(5, 45), {}, pruner="hyperband", prunes=True, eval_every_steps=5)
    full = run(range(5, 46, 5))
    assert [p for p in full if p] and full == run(sorted(kept.at_steps))


def test_adamw_is_fused_unless_the_optimizer_args_choose_and_trains_the_same():
    import torch

    from lrfind.training.optimizers import build_optimizer

    def train(extra) -> tuple:
        torch.manual_seed(0)
        layer = torch.nn.Linear(16, 8)
        optimizer = build_optimizer("AdamW", [{"params": list(layer.parameters()), "lr": 1e-2, "name": "unet"}],
                                    extra=extra)
        for step in range(20):
            x = torch.randn(4, 16, generator=torch.Generator().manual_seed(step))
            layer(x).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        return optimizer.param_groups[0], layer.weight.detach()

    fused_group, fused = train({})
    loop_group, loop = train({"foreach": False})
    assert fused_group["fused"] is True and not loop_group["fused"] and loop_group["foreach"] is False
    assert torch.allclose(fused, loop, rtol=1e-5, atol=1e-7) and not torch.equal(fused, torch.zeros_like(fused))


def test_torch_compile_wraps_the_shared_unet_and_is_off_by_default(tiny, example_dataset, feature_store, scanned,
                                                                   tmp_path):
    """Wiring only: compiling even the tiny UNet takes minutes on a CPU (benchmarks/RESULTS.md)."""
    from lrfind.training.setup import lora_run

    config = make_config(example_dataset, tmp_path)
    with lora_run(config, tiny, scanned(config), feature_store) as parts:
        assert parts.unet is tiny.unet
    compiled = config.model_copy(update={"torch_compile": True})
    with lora_run(compiled, tiny, scanned(compiled), feature_store) as parts:
        assert parts.unet is not tiny.unet and parts.unet._orig_mod is tiny.unet
