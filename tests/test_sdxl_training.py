"""`lrfind train` on tiny-sdxl end to end: kohya's SDXL LoRA file and metadata, validation loss,
samples and the X/Y grid through the SDXL pipeline, resume, and --network-weights of the other family."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config
from test_final_run import StopAt
from test_model_loading import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def tiny_sdxl():
    from lrfind.models.builtin import build_builtin

    return build_builtin("tiny-sdxl", 0)


@pytest.fixture(scope="module")
def small_dataset(example_dataset, tmp_path_factory):
    """Two images of the example's cat (a 3:2 one and a square one: two buckets), 1 repeat."""
    root = tmp_path_factory.mktemp("sdxl-data") / "data"
    folder = root / "1_lrfcat cat"
    folder.mkdir(parents=True)
    source = next(example_dataset.glob("*_lrfcat*"))
    for name in ("01", "02"):
        shutil.copy(source / f"{name}.jpg", folder / f"{name}.jpg")
        shutil.copy(source / f"{name}.txt", folder / f"{name}.txt")
    return root


def sdxl_config(dataset, out, **overrides) -> TrainConfig:
    values = dict(pretrained_model_name_or_path="tiny-sdxl", train_data_dir=dataset, resolution=64, max_train_epochs=3, train_batch_size=1,
                  network_dim=4, network_alpha=2, learning_rate=2e-3, save_every_n_epochs=1,
                  sample_every_n_epochs=2, sample_steps=2, output_dir=out, output_name="fox",
                  save_precision="float", progress=False, seed=7)
    values.update(overrides)
    return train_config(values)


@pytest.fixture(scope="module")
def uninterrupted(small_dataset, tiny_sdxl, tmp_path_factory):
    from lrfind.cache import TensorStore
    from lrfind.final.run import train_lora

    out = tmp_path_factory.mktemp("sdxl-whole")
    store = TensorStore(tmp_path_factory.mktemp("sdxl-features"))
    return train_lora(sdxl_config(small_dataset, out), components=tiny_sdxl, store=store), out, store


def test_trains_a_kohya_sdxl_lora_with_samples_and_grid(uninterrupted):
    result, out, _ = uninterrupted
    assert result.state.step == 3 * result.state.steps_per_epoch == 6  # two buckets of one image
    state_dict = load_file(out / "fox.safetensors")
    prefixes = {key.split("_")[1] for key in state_dict}
    assert prefixes == {"unet", "te1", "te2"}  # the text encoders train by default, both as kohya does
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in state_dict
    assert any(v.abs().max() > 0 for k, v in state_dict.items() if k.startswith("lora_te2_") and "lora_up" in k)
    from safetensors import safe_open

    with safe_open(str(out / "fox.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    final = json.loads((out / "fox_final.json").read_text())
    assert [row["epoch"] for row in final["epochs"]] == [1, 2, 3]
    assert all(row["val_loss"] > 0 for row in final["epochs"])
    names = sorted(p.name for p in (out / "sample").glob("*.png"))
    assert names and all(name.startswith(("fox_e000002_", "fox_e000003_")) for name in names)
    from PIL import Image

    assert Image.open(out / final["xy_grid"]).width > 4 * 64


def test_interrupted_then_resumed_sdxl_run_ends_with_the_same_weights(uninterrupted, small_dataset, tiny_sdxl,
                                                                      tmp_path):
    from lrfind.final.run import train_lora

    whole, whole_out, store = uninterrupted
    config = sdxl_config(small_dataset, tmp_path, sample_every_n_epochs=None)
    with pytest.raises(KeyboardInterrupt):
        train_lora(config, components=tiny_sdxl, store=store, callbacks=[StopAt(2 * 2 + 1)])
    resumed = train_lora(config.model_copy(update={"resume": "last"}), components=tiny_sdxl, store=store)
    assert resumed.resumed_from.name == "fox-000002-state"
    assert resumed.state.val_history == whole.state.val_history
    a, b = load_file(whole_out / "fox.safetensors"), load_file(tmp_path / "fox.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_cached_text_equals_live_encoding(uninterrupted, tiny_sdxl):
    """A U-Net-only run reads both encoders' states and the pooled output from the text cache."""
    from lrfind.cache import TextEmbeddingCache
    from lrfind.training.conditioning import TextConditioner

    _, _, store = uninterrupted
    captions = ["lrfcat cat, sitting", "lrfcat cat"]
    cache = TextEmbeddingCache(tiny_sdxl, store)
    cached = cache.get_embeddings(captions)
    again = TextEmbeddingCache(tiny_sdxl, store).get_embeddings(captions)
    assert all(torch.equal(x.pooled, y.pooled) and torch.equal(x.hidden_states, y.hidden_states)
               for x, y in zip(cached, again))
    ids = [(300, 451, 0, 0, 64, 64)] * 2
    memo = dict(zip(captions, cached))
    from_cache = TextConditioner(tiny_sdxl, memo, clip_skip=1, max_token_length=75, trains_text_encoder=False)
    live = TextConditioner(tiny_sdxl, {}, clip_skip=1, max_token_length=75, trains_text_encoder=False)
    a = from_cache.encode(captions, as_written=True, device="cpu", time_ids=ids)
    b = live.encode(captions, as_written=True, device="cpu", time_ids=ids)
    torch.testing.assert_close(a.hidden_states, b.hidden_states, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.text_embeds, b.text_embeds, rtol=0, atol=1e-6)
    assert torch.equal(a.time_ids, b.time_ids)


def test_network_weights_of_the_other_family_exit_2_with_one_line(uninterrupted, small_dataset, tiny, tmp_path,
                                                                  capsys):
    from lrfind.network import NetworkSpec, attach_network, save_lora

    _, whole_out, _ = uninterrupted
    sdxl_lora = whole_out / "fox.safetensors"
    network = attach_network(tiny, NetworkSpec(4, 2.0), seed=0)
    sd1_lora = save_lora(tmp_path / "sd1.safetensors", network.kohya_state_dict(), {}, "fp32")
    network.detach()
    for model, lora, says in (("tiny", sdxl_lora, "an SDXL LoRA, and --model is an SD 1.x model"),
                              ("tiny-sdxl", sd1_lora, "an SD 1.x LoRA, and --model is an SDXL model")):
        out = tmp_path / f"out-{model}"
        code, _, err = run_cli(capsys, "train", str(small_dataset), "--model", model, "--resolution", "64",
                               "--max-train-steps", "1", "--network-dim", "4", "--network-alpha", "2",
                               "--network-weights", str(lora), "--output-dir", str(out))
        assert_one_line_error(code, err, str(lora), says)
        assert not list(out.glob("*.safetensors"))
