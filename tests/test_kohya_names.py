"""kohya's flat names <-> TrainConfig's nested parts (lrfind.training.kohya_names): one table, both ways."""

from __future__ import annotations

import pytest

from lrfind.cli import main
from lrfind.config import StrictModel
from lrfind.errors import ConfigError
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import FLAT_NAMES, KOHYA_KEYS, kohya_fields, kohya_values, nest, train_config


def _leaf_paths(model, prefix=()) -> set[tuple[str, ...]]:
    paths = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, StrictModel):  # a shared part
            paths |= _leaf_paths(annotation, prefix + (name,))
        else:
            paths.add(prefix + (name,))
    return paths


def test_every_flat_key_sets_one_field_and_no_two_keys_the_same():
    assert len(set(KOHYA_KEYS.values())) == len(KOHYA_KEYS) == len(FLAT_NAMES)
    leaves = _leaf_paths(TrainConfig)
    assert set(KOHYA_KEYS.values()) <= leaves
    # nested fields kohya has no flag for keep their defaults: the model's tiny-init seed, bucket
    # step, strict image size (lrfind train never offered them)
    assert leaves - set(KOHYA_KEYS.values()) == {("model", "seed"), ("dataset", "bucket_reso_steps"),
                                                ("dataset", "strict_image_size")}
    assert kohya_fields()["network_dim"].default == 8 and kohya_fields()["train_data_dir"].is_required()


def test_nest_and_flatten_are_inverse(tmp_path):
    flat = {"train_data_dir": tmp_path, "network_dim": 16, "network_alpha": 4.0, "lr_scheduler": "cosine",
            "train_batch_size": 2, "pretrained_model_name_or_path": "tiny-sdxl", "max_train_epochs": 3,
            "optimizer_args": {"weight_decay": 0.1}}
    config = train_config(flat)
    assert (config.network.dim, config.network.alpha, config.scheduler.name, config.dataset.batch_size,
            config.model.model, config.optimizer.args) == (16, 4.0, "cosine", 2, "tiny-sdxl", {"weight_decay": 0.1})
    back = kohya_values(config)
    assert list(back) == list(KOHYA_KEYS) and {k: back[k] for k in flat} == flat
    assert train_config(back) == config


def test_an_unknown_or_bad_flat_key_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^f.toml: network_dimm: unknown option \(check the spelling; see --help\)$"):
        nest({"network_dimm": 8}, "f.toml")
    with pytest.raises(ConfigError, match=r"^network_dim: Input should be greater than or equal to 1$"):
        train_config({"train_data_dir": tmp_path, "max_train_steps": 1, "network_dim": 0})
    with pytest.raises(ConfigError, match="^dataset: unknown option"):  # a part's name is not a kohya key
        train_config({"train_data_dir": tmp_path, "max_train_steps": 1, "dataset": {}})


def test_train_takes_no_plan_data_as_an_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--validate-every-n-steps" in text and "--network_dim" in text and "--network-dim" in text
    assert "validate-at-steps" not in text and "validate_at_steps" not in text
