"""A final run with held-out images (--validation-split): each epoch's drift from the base model is
measured and recorded, and the suggested epoch weighs it as a study's epoch sweep does; without
held-out images nothing is measured (the run costs what it did)."""

from __future__ import annotations

import json

from test_final_run import final_config


def test_a_run_with_held_out_images_records_drift_per_epoch_and_weighs_it(example_dataset, tiny, feature_store,
                                                                        tmp_path):
    from lrfind.final.run import train_lora
    from lrfind.final.xy_grid import suggest_epoch

    config = final_config(example_dataset, tmp_path / "held", validation_split=0.25, sample_every_n_epochs=None,
                          xy_grid=False)
    run = train_lora(config, components=tiny, store=feature_store)
    drifts = [row.drift for row in run.summary.epochs]
    assert all(d is not None and d > 0 for d in drifts) and drifts == sorted(drifts), drifts  # grows with training
    rows = json.loads((tmp_path / "held" / "cat_final.json").read_text())["epochs"]
    assert [r["drift"] for r in rows] == drifts
    assert (run.summary.suggested_epoch, run.summary.reason) == suggest_epoch(rows)
    assert "held-out loss" in run.summary.reason  # the drift-weighed rule's words
    # the report's final-run curves: each epoch's mean training loss, and the base model's held-out
    # loss before the first step (a fresh LoRA's validation loss), above what training reached
    assert all(row.train_loss is not None and row.train_loss > 0 for row in run.summary.epochs)
    base = run.summary.base_val_loss
    assert base is not None and base > min(row.val_loss for row in run.summary.epochs)
    assert json.loads((tmp_path / "held" / "cat_final.json").read_text())["base_val_loss"] == base

    plain = train_lora(final_config(example_dataset, tmp_path / "plain", sample_every_n_epochs=None, xy_grid=False),
                       components=tiny, store=feature_store)
    assert all(row.drift is None for row in plain.summary.epochs)
    assert plain.summary.base_val_loss is None  # no held-out images: no base pass (the run costs what it did)
    assert "validation loss" in plain.summary.reason
