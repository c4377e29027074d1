"""`lrfind export-kohya`: kohya sd-scripts' config and dataset TOMLs checked against kohya's own names.

The option tables below are DATA copied from kohya-ss/sd-scripts at commit
48d368fa557731ad0488c07304dfeba8c07910eb (2026-02-16, "Merge pull request #2268 from kohya-ss/sd3"):
- training options: the parser of train_network.py `setup_parser()` = library/train_util.py
  add_sd_models_arguments, add_dataset_arguments(parser, True, True, True), add_training_arguments,
  add_masked_loss_arguments, add_optimizer_arguments; library/utils.py add_logging_arguments;
  library/sai_model_spec.py add_model_spec_arguments; library/deepspeed_utils.py
  add_deepspeed_arguments; library/config_util.py add_config_arguments;
  library/custom_train_functions.py add_custom_train_arguments; and train_network.py's own.
  The value is the type the code expects: kohya's `read_config_from_file` puts TOML values into
  the argparse Namespace as they are (no `type=` conversion), so the TOML type must already be it.
- dataset config: library/config_util.py ConfigSanitizer's voluptuous schemas (DreamBooth style).
"""

from __future__ import annotations

import ast
import shlex
import tomllib

import pytest

from lrfind.artifacts.probe_report import ProbeSource
from lrfind.artifacts.recommendation import Recommendation
from lrfind.export.kohya_config import (accelerate_command, kohya_dataset_toml, kohya_optimizer_arg,
                                        kohya_training_toml)
from lrfind.export.toml_writer import Commented, dumps
from lrfind.study.stats import DatasetStats
from probe_reports import probe_with_lr

# option -> "bool" (store_true), "str", "int", "float", "int_or_float", "list[str]", "list[float]", "Path"
KOHYA_TRAIN_NETWORK_OPTIONS = {
    # library/train_util.py add_sd_models_arguments
    "v2": "bool", "v_parameterization": "bool", "pretrained_model_name_or_path": "str",
    "tokenizer_cache_dir": "str",
    # library/train_util.py add_optimizer_arguments
    "optimizer_type": "str", "use_8bit_adam": "bool", "use_lion_optimizer": "bool", "learning_rate": "float",
    "max_grad_norm": "float", "optimizer_args": "list[str]", "lr_scheduler_type": "str",
    "lr_scheduler_args": "list[str]", "lr_scheduler": "str", "lr_warmup_steps": "int_or_float",
    "lr_decay_steps": "int_or_float", "lr_scheduler_num_cycles": "int", "lr_scheduler_power": "float",
    "fused_backward_pass": "bool", "lr_scheduler_timescale": "int", "lr_scheduler_min_lr_ratio": "float",
    # library/train_util.py add_training_arguments
    "output_dir": "str", "output_name": "str", "huggingface_repo_id": "str", "huggingface_repo_type": "str",
    "huggingface_path_in_repo": "str", "huggingface_token": "str", "huggingface_repo_visibility": "str",
    "save_state_to_huggingface": "bool", "resume_from_huggingface": "bool", "async_upload": "bool",
    "save_precision": "str", "save_every_n_epochs": "int", "save_every_n_steps": "int",
    "save_n_epoch_ratio": "int", "save_last_n_epochs": "int", "save_last_n_epochs_state": "int",
    "save_last_n_steps": "int", "save_last_n_steps_state": "int", "save_state": "bool",
    "save_state_on_train_end": "bool", "resume": "str", "train_batch_size": "int", "max_token_length": "int",
    "mem_eff_attn": "bool", "torch_compile": "bool", "dynamo_backend": "str", "xformers": "bool",
    "sdpa": "bool", "vae": "str", "max_train_steps": "int", "max_train_epochs": "int",
    "max_data_loader_n_workers": "int", "persistent_data_loader_workers": "bool", "seed": "int",
    "gradient_checkpointing": "bool", "gradient_accumulation_steps": "int", "mixed_precision": "str",
    "full_fp16": "bool", "full_bf16": "bool", "fp8_base": "bool", "ddp_timeout": "int",
    "ddp_gradient_as_bucket_view": "bool", "ddp_static_graph": "bool", "clip_skip": "int",
    "logging_dir": "str", "log_with": "str", "log_prefix": "str", "log_tracker_name": "str",
    "wandb_run_name": "str", "log_tracker_config": "str", "wandb_api_key": "str", "log_config": "bool",
    "noise_offset": "float", "noise_offset_random_strength": "bool", "multires_noise_iterations": "int",
    "ip_noise_gamma": "float", "ip_noise_gamma_random_strength": "bool", "multires_noise_discount": "float",
    "adaptive_noise_scale": "float", "zero_terminal_snr": "bool", "min_timestep": "int",
    "max_timestep": "int", "loss_type": "str", "huber_schedule": "str", "huber_c": "float",
    "huber_scale": "float", "lowram": "bool", "highvram": "bool", "sample_every_n_steps": "int",
    "sample_at_first": "bool", "sample_every_n_epochs": "int", "sample_prompts": "str",
    "sample_sampler": "str", "config_file": "str", "output_config": "bool", "prior_loss_weight": "float",
    # library/train_util.py add_masked_loss_arguments
    "conditioning_data_dir": "str", "masked_loss": "bool",
    # library/train_util.py add_dataset_arguments
    "train_data_dir": "str", "cache_info": "bool", "shuffle_caption": "bool", "caption_separator": "str",
    "caption_extension": "str", "caption_extention": "str", "keep_tokens": "int",
    "keep_tokens_separator": "str", "secondary_separator": "str", "enable_wildcard": "bool",
    "caption_prefix": "str", "caption_suffix": "str", "color_aug": "bool", "flip_aug": "bool",
    "face_crop_aug_range": "str", "random_crop": "bool", "debug_dataset": "bool", "resolution": "str",
    "cache_latents": "bool", "vae_batch_size": "int", "cache_latents_to_disk": "bool",
    "skip_cache_check": "bool", "enable_bucket": "bool", "min_bucket_reso": "int", "max_bucket_reso": "int",
    "bucket_reso_steps": "int", "bucket_no_upscale": "bool", "resize_interpolation": "str",
    "token_warmup_min": "int", "token_warmup_step": "float", "alpha_mask": "bool", "dataset_class": "str",
    "caption_dropout_rate": "float", "caption_dropout_every_n_epochs": "int",
    "caption_tag_dropout_rate": "float", "reg_data_dir": "str", "in_json": "str", "dataset_repeats": "int",
    # library/utils.py add_logging_arguments
    "console_log_level": "str", "console_log_file": "str", "console_log_simple": "bool",
    # library/sai_model_spec.py add_model_spec_arguments
    "metadata_title": "str", "metadata_author": "str", "metadata_description": "str",
    "metadata_license": "str", "metadata_tags": "str", "metadata_usage_hint": "str",
    "metadata_thumbnail": "str", "metadata_merged_from": "str", "metadata_trigger_phrase": "str",
    "metadata_preprocessor": "str", "metadata_is_negative_embedding": "str",
    # library/deepspeed_utils.py add_deepspeed_arguments
    "deepspeed": "bool", "zero_stage": "int", "offload_optimizer_device": "str",
    "offload_optimizer_nvme_path": "str", "offload_param_device": "str", "offload_param_nvme_path": "str",
    "zero3_init_flag": "bool", "zero3_save_16bit_model": "bool", "fp16_master_weights_and_gradients": "bool",
    # library/config_util.py add_config_arguments
    "dataset_config": "Path",
    # library/custom_train_functions.py add_custom_train_arguments
    "min_snr_gamma": "float", "scale_v_pred_loss_like_noise_pred": "bool", "v_pred_like_loss": "float",
    "debiased_estimation_loss": "bool", "weighted_captions": "bool",
    # train_network.py setup_parser (text_encoder_lr: nargs="*", but train_network.py ~line 738 also
    # takes a plain float or int, "for backward compatibility")
    "cpu_offload_checkpointing": "bool", "no_metadata": "bool", "save_model_as": "str", "unet_lr": "float",
    "text_encoder_lr": "list[float]", "fp8_base_unet": "bool", "network_weights": "str",
    "network_module": "str", "network_dim": "int", "network_alpha": "float", "network_dropout": "float",
    "network_args": "list[str]", "network_train_unet_only": "bool",
    "network_train_text_encoder_only": "bool", "training_comment": "str", "dim_from_weights": "bool",
    "scale_weight_norms": "float", "base_weights": "list[str]", "base_weights_multiplier": "list[float]",
    "no_half_vae": "bool", "skip_until_initial_step": "bool", "initial_epoch": "int", "initial_step": "int",
    "validation_seed": "int", "validation_split": "float", "validate_every_n_steps": "int",
    "validate_every_n_epochs": "int", "max_validation_steps": "int",
}
KOHYA_CHOICES = {  # argparse choices= in library/train_util.py (save_model_as: train_network.py's own)
    "mixed_precision": {"no", "fp16", "bf16"},
    "save_precision": {None, "float", "fp16", "bf16"},
    "save_model_as": {None, "ckpt", "pt", "safetensors"},
    "max_token_length": {None, 150, 225},
    # --lr_scheduler's help text (and transformers' SchedulerType it is passed to)
    "lr_scheduler": {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                     "constant_with_warmup", "adafactor"},
}
# library/train_util.py get_optimizer: optimizer_type.lower() compared with these (or "module.Class")
KOHYA_OPTIMIZERS = {"adamw", "adamw8bit", "pagedadamw", "pagedadamw8bit", "pagedadamw32bit", "lion", "lion8bit",
                    "pagedlion8bit", "sgdnesterov", "sgdnesterov8bit", "dadaptation", "dadaptadampreprint",
                    "dadaptadagrad", "dadaptadam", "dadaptadan", "dadaptadanip", "dadaptlion", "dadaptsgd",
                    "prodigy", "adafactor", "radamschedulefree", "adamwschedulefree", "sgdschedulefree"}
# library/config_util.py ConfigSanitizer: DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DB_SUBSET_ASCENDABLE,
# DO_SUBSET_ASCENDABLE ([general] and [[datasets]]), DB_SUBSET_DISTINCT (subsets; image_dir Required)
_SUBSET_ASCENDABLE = {"color_aug": "bool", "face_crop_aug_range": "list[float]", "flip_aug": "bool",
                      "num_repeats": "int", "random_crop": "bool", "shuffle_caption": "bool", "keep_tokens": "int",
                      "keep_tokens_separator": "str", "secondary_separator": "str", "caption_separator": "str",
                      "enable_wildcard": "bool", "token_warmup_min": "int", "token_warmup_step": "int_or_float",
                      "caption_prefix": "str", "caption_suffix": "str", "custom_attributes": "dict",
                      "resize_interpolation": "str", "caption_dropout_every_n_epochs": "int",
                      "caption_dropout_rate": "int_or_float", "caption_tag_dropout_rate": "int_or_float",
                      "caption_extension": "str", "class_tokens": "str", "cache_info": "bool"}
KOHYA_DATASET_LEVEL = {**_SUBSET_ASCENDABLE, "batch_size": "int", "bucket_no_upscale": "bool",
                       "bucket_reso_steps": "int", "enable_bucket": "bool", "max_bucket_reso": "int",
                       "min_bucket_reso": "int", "validation_seed": "int", "validation_split": "float",
                       "resolution": "int_or_pair", "network_multiplier": "float"}
KOHYA_DB_SUBSET = {**_SUBSET_ASCENDABLE, "image_dir": "str", "is_reg": "bool", "alpha_mask": "bool"}


def has_kohya_type(value, kind: str) -> bool:
    number = (int, float)
    checks = {
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str), "Path": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, number) and not isinstance(v, bool),
        "int_or_float": lambda v: isinstance(v, number) and not isinstance(v, bool),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "list[float]": lambda v: isinstance(v, number) or (isinstance(v, list) and all(isinstance(x, number) for x in v)),
        "int_or_pair": lambda v: isinstance(v, int) or (isinstance(v, list) and len(v) == 2),
        "dict": lambda v: isinstance(v, dict),
    }
    return checks[kind](value)


def kohya_flatten(document: dict) -> dict:
    """What library/train_util.py read_config_from_file does with the sections."""
    flat = {}
    for key, value in document.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    return flat


def kohya_optimizer_kwargs(args: list[str]) -> dict:
    """library/train_util.py get_optimizer: `key, value = arg.split("=")`, `ast.literal_eval(value)`."""
    kwargs = {}
    for arg in args:
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    return kwargs


# --- a real recommendation from lrfind.study.recommend -----------------------------------------

SPACE_TOML = """
network_dim = [8, 16]
network_alpha_fraction = [0.5, 1.0]
epochs = { range = [4, 8] }
repeats = [5, 10]
lr_multiplier = { range = [0.5, 2.0] }
optimizer = ["AdamW", "Lion", "Prodigy"]
lr_scheduler = ["constant", "cosine"]

[fixed]
resolution = 512
train_batch_size = 1
network_train_unet_only = %s
min_snr_gamma = 5.0
lr_warmup_fraction = 0.05
"""
STATS = DatasetStats.from_dict({"name": "ds", "reg_images": [], "concepts": [
    {"folder": "10_mychar", "name": "mychar", "repeats": 10, "images_per_bucket": [[[512, 512], 6]]},
    {"folder": "5_cup", "name": "cup", "repeats": 5, "images_per_bucket": [[[512, 512], 2]]},
]})
PROBE = probe_with_lr(2e-4, 8, 1.0, status="converged")


def make_recommendation(tmp_path, optimizer="AdamW", scheduler="cosine", unet_only=False) -> Recommendation:
    from lrfind.study.recommend import TrialRecord, recommend
    from lrfind.study.space import load_space

    space_file = tmp_path / "space.toml"
    space_file.write_text(SPACE_TOML % ("true" if unet_only else "false"))
    space = load_space(space_file)
    params = {"network_dim": 16, "network_alpha_fraction": 0.5, "epochs": 6, "repeats": 5, "lr_multiplier": 1.5,
              "optimizer": optimizer, "lr_scheduler": scheduler}
    trials = [TrialRecord(0, "COMPLETE", 0.30, params),
              TrialRecord(1, "COMPLETE", 0.35, {**params, "network_dim": 8, "epochs": 4}),
              TrialRecord(2, "PRUNED", None, params)]
    return Recommendation.from_json(recommend(trials, space, PROBE, STATS).to_json())  # as recommendation.json holds it


def write_training(rec, tmp_path, **options) -> dict:
    text = kohya_training_toml(rec, model_path="/models/sd15.safetensors", dataset_dir=tmp_path / "data",
                               output_dir=tmp_path / "out", output_name="mychar", logging_dir=tmp_path / "logs",
                               dataset_config=tmp_path / "kohya_dataset.toml", **options)
    return tomllib.loads(text)


@pytest.mark.parametrize("optimizer,scheduler,unet_only", [("AdamW", "cosine", False), ("Lion", "constant", True),
                                                           ("Prodigy", "cosine", False)])
def test_every_training_key_is_a_kohya_option_of_the_type_kohya_expects(tmp_path, optimizer, scheduler, unet_only):
    rec = make_recommendation(tmp_path, optimizer, scheduler, unet_only)
    flat = kohya_flatten(write_training(rec, tmp_path))
    unknown = sorted(set(flat) - set(KOHYA_TRAIN_NETWORK_OPTIONS))
    assert not unknown, f"not kohya train_network.py options: {unknown}"
    wrong_type = {k: v for k, v in flat.items() if not has_kohya_type(v, KOHYA_TRAIN_NETWORK_OPTIONS[k])}
    assert not wrong_type
    for key, allowed in KOHYA_CHOICES.items():
        assert flat.get(key) in allowed | {None}, key
    assert flat["optimizer_type"].lower() in KOHYA_OPTIMIZERS
    assert flat["network_module"] == "networks.lora"
    assert flat["resolution"] == "512,512"
    assert flat["dataset_config"] == str(tmp_path / "kohya_dataset.toml")
    assert "train_data_dir" not in flat  # kohya ignores it next to a dataset config
    assert ("text_encoder_lr" in flat) == (not unet_only)
    assert flat["network_train_unet_only"] is unet_only


def test_training_values_are_the_recommendation(tmp_path):
    rec = make_recommendation(tmp_path, "AdamW", "cosine")
    flat = kohya_flatten(write_training(rec, tmp_path, mixed_precision="bf16", save_every_n_epochs=2, seed=7))
    expected_lr = PROBE.unet_lr * 1.5 * (1.0 / 8) ** 0.5  # x multiplier, sqrt_alpha rescale (probe alpha 1)
    assert flat["unet_lr"] == pytest.approx(expected_lr) == pytest.approx(flat["learning_rate"])
    assert flat["text_encoder_lr"] == pytest.approx(rec.text_encoder_lr)
    assert (flat["network_dim"], flat["network_alpha"]) == (16, 8.0)
    assert flat["max_train_epochs"] == 6 and "max_train_steps" not in flat
    assert flat["lr_scheduler"] == "cosine"
    assert flat["lr_warmup_steps"] == round(0.05 * rec.total_steps) > 0
    assert flat["min_snr_gamma"] == 5.0
    assert (flat["mixed_precision"], flat["save_every_n_epochs"], flat["seed"]) == ("bf16", 2, 7)
    assert kohya_optimizer_kwargs(flat["optimizer_args"]) == {"weight_decay": 0.01}


def test_prodigy_optimizer_args_parse_the_way_kohya_parses_them(tmp_path):
    rec = make_recommendation(tmp_path, "Prodigy")
    flat = kohya_flatten(write_training(rec, tmp_path))
    kwargs = kohya_optimizer_kwargs(flat["optimizer_args"])
    assert kwargs == {"d_coef": 1.5, "use_bias_correction": True, "safeguard_warmup": True,
                      "weight_decay": 0.01, "betas": (0.9, 0.99), "decouple": True}
    assert flat["learning_rate"] == flat["unet_lr"] == flat["text_encoder_lr"] == 1.0


def test_lrfind_reads_the_exported_optimizer_args_back(tmp_path):
    from lrfind.cli.options import read_toml_config
    from lrfind.training.kohya_names import kohya_fields, train_config

    rec = make_recommendation(tmp_path, "Prodigy")
    path = tmp_path / "kohya_config.toml"
    path.write_text(kohya_training_toml(rec, model_path="m", dataset_dir=None, output_dir="o", output_name="n",
                                        logging_dir=None))
    flat = read_toml_config(path, kohya_fields())
    assert flat["optimizer_args"] == rec.optimizer_args
    nested = train_config({"train_data_dir": tmp_path, "max_train_steps": 1, "optimizer_args": flat["optimizer_args"]})
    assert nested.optimizer.args == rec.optimizer_args


@pytest.mark.parametrize("key,value,text", [("weight_decay", 0.01, "weight_decay=0.01"),
                                            ("decouple", False, "decouple=False"),
                                            ("betas", [0.9, 0.999], "betas=0.9,0.999"),
                                            ("eps", [1e-8], "eps=(1e-08,)"),
                                            ("mode", "fast", "mode='fast'")])
def test_optimizer_arg_strings(key, value, text):
    assert kohya_optimizer_arg(key, value) == text
    parsed = kohya_optimizer_kwargs([text])[key]
    assert (list(parsed) if isinstance(value, list) else parsed) == value


def test_optimizer_arg_that_kohya_cannot_split_is_refused():
    with pytest.raises(ValueError, match="="):
        kohya_optimizer_arg("mode", "a=b")


def test_dataset_config_matches_kohya_schema_with_recommended_repeats(tmp_path):
    rec = make_recommendation(tmp_path)
    document = tomllib.loads(kohya_dataset_toml(rec, dataset_dir=tmp_path / "data", caption_extension=".txt"))
    assert set(document) == {"general", "datasets"}
    for key, value in document["general"].items():
        assert key in KOHYA_DATASET_LEVEL and has_kohya_type(value, KOHYA_DATASET_LEVEL[key]), key
    (dataset,) = document["datasets"]
    for key, value in dataset.items():
        if key != "subsets":
            assert key in KOHYA_DATASET_LEVEL and has_kohya_type(value, KOHYA_DATASET_LEVEL[key]), key
    for subset in dataset["subsets"]:
        for key, value in subset.items():
            assert key in KOHYA_DB_SUBSET and has_kohya_type(value, KOHYA_DB_SUBSET[key]), key
    subsets = {s["image_dir"]: (s["num_repeats"], s["class_tokens"]) for s in dataset["subsets"]}
    # searched repeats 5 for the most-repeated folder (10_mychar); 5_cup keeps its ratio: 5 * 5/10 -> 3
    assert subsets == {str(tmp_path / "data" / "10_mychar"): (5, "mychar"),
                       str(tmp_path / "data" / "5_cup"): (3, "cup")}
    assert (dataset["resolution"], dataset["batch_size"]) == (512, 1)
    assert document["general"]["caption_extension"] == ".txt"  # kohya's default would be .caption
    # kohya's step count from this file is the recommendation's (one bucket, batch 1)
    images = {"10_mychar": 6, "5_cup": 2}
    kohya_steps = sum(images[dir_.rsplit("/", 1)[1]] * r for dir_, (r, _) in subsets.items()) * rec.epochs
    assert kohya_steps == rec.total_steps == (6 * 5 + 2 * 3) * 6


def test_accelerate_command_is_one_shell_line():
    line = accelerate_command("/tmp/my study/kohya_config.toml", "/tmp/my study/kohya_dataset.toml")
    assert shlex.split(line) == ["accelerate", "launch", "--num_cpu_threads_per_process", "1", "train_network.py",
                                 "--config_file", "/tmp/my study/kohya_config.toml",
                                 "--dataset_config", "/tmp/my study/kohya_dataset.toml"]


def test_toml_writer_round_trips_awkward_strings():
    text = 'quote " backslash \\ newline \n tab \t unicode × 猫 \x01'
    document = {"a": text, "needs quotes": 1, "n": [1.5e-07, 2.0], "t": {"b": Commented(True, "why")},
                "arr": [{"x": 1}, {"x": 2}]}
    assert tomllib.loads(dumps(document, header="line one\nline two")) == {
        "a": text, "needs quotes": 1, "n": [1.5e-07, 2.0], "t": {"b": True}, "arr": [{"x": 1}, {"x": 2}]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1, 2}])
def test_toml_writer_refuses_values_kohya_cannot_read(bad):
    with pytest.raises((ValueError, TypeError)):
        dumps({"v": bad})


# --- the command ----------------------------------------------------------------------------------


def write_study(tmp_path, rec: Recommendation):
    """studies/mychar with rec as recommendation.json, a probe.json, and the dataset folders it names."""
    dataset = tmp_path / "data"
    for folder in ("10_mychar", "5_cup"):
        (dataset / folder).mkdir(parents=True)
    folder = tmp_path / "studies" / "mychar"
    folder.mkdir(parents=True)
    (folder / "recommendation.json").write_text(rec.to_json())
    probe = PROBE.model_copy(update={"source": ProbeSource(dataset=str(dataset), model="tiny")})
    (folder / "probe.json").write_text(probe.to_json())
    return folder


@pytest.fixture()
def study(tmp_path):
    return write_study(tmp_path, make_recommendation(tmp_path))


def run_cli(monkeypatch, argv):
    from lrfind import cli

    monkeypatch.setitem(cli.COMMANDS, "export-kohya", "lrfind.cli.export_cmd")
    return cli.main(argv)


def test_cli_writes_both_files_and_prints_the_command(study, tmp_path, monkeypatch, capsys):
    out = tmp_path / "export"
    model = tmp_path / "sd15.safetensors"
    model.write_bytes(b"stand-in")
    code = run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study), "--out", str(out),
                                 "--model", str(model), "--mixed-precision", "no"])
    printed = capsys.readouterr().out
    assert code == 0
    config = kohya_flatten(tomllib.loads((out / "kohya_config.toml").read_text()))
    dataset = tomllib.loads((out / "kohya_dataset.toml").read_text())
    assert config["pretrained_model_name_or_path"] == str(model)
    assert config["mixed_precision"] == "no" and config["output_name"] == "mychar"
    assert config["dataset_config"] == str(out / "kohya_dataset.toml")
    assert dataset["datasets"][0]["subsets"][0]["image_dir"] == str(tmp_path / "data" / "10_mychar")
    assert accelerate_command(out / "kohya_config.toml", out / "kohya_dataset.toml") in printed
    assert "warning" not in printed
    assert sorted(p.name for p in out.iterdir()) == ["kohya_config.toml", "kohya_dataset.toml"]  # no temp files


def test_cli_warns_when_the_model_is_the_tiny_test_model(study, tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study)])
    printed = capsys.readouterr().out
    assert code == 0 and "--model" in printed and "warning" in printed
    assert (study / "kohya_config.toml").is_file()  # default --out: the study folder


def test_cli_without_recommendation_says_to_run_the_study(tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, ["export-kohya", "nothing", "--study-dir", str(tmp_path / "studies" / "nothing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "recommendation.json" in err and "lrfind study" in err


def test_cli_with_a_wrong_dataset_keeps_earlier_exports(study, tmp_path, monkeypatch, capsys):
    (study / "kohya_config.toml").write_text("earlier = true\n")
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    code = run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study), "--dataset", str(wrong)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "10_mychar" in err and "--dataset" in err
    assert (study / "kohya_config.toml").read_text() == "earlier = true\n"


def test_cli_with_a_broken_recommendation_is_one_line(study, monkeypatch, capsys):
    (study / "recommendation.json").write_text("{not json")
    code = run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "recommendation.json" in err
