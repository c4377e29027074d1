"""Check: kohya's own networks.lora, loaded from lrfind's LoRA / LoCon files, computes what lrfind's does.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kohya_network_parity.py \
        --kohya-dir /tmp/kohya/sd-scripts --kohya-python /tmp/kohya/venv/bin/python

On the tiny model (seconds, little memory): lrfind attaches networks.lora (dim 8, alpha 2, text
encoder too), plain and with conv_dim=4 conv_alpha=2, sets random weights, records the UNet's and
the text encoder's outputs on fixed inputs and saves the file. In kohya's venv (kohya's set-up:
benchmarks/vs_kohya.py), the same base weights are loaded, kohya's `create_network_from_weights`
builds its network from the file, `load_state_dict(strict=True)` takes every key, and the outputs
are compared with lrfind's. Printed per network: modules kohya built, max |difference|, and how far
the network moves the output (so a zero difference is not a network that does nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402,F401  (sets the offline environment before any Hugging Face import)

NETWORKS = {"lora": {}, "locon": {"conv_dim": 4, "conv_alpha": 2}}
# Run by kohya's python in kohya's folder (transformers 4.54 wants the `text_model.` level).
KOHYA_SIDE = """
import json, sys, torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel
from networks import lora
folder, names = sys.argv[1], sys.argv[2].split(",")
inputs, te_config = torch.load(folder + "/inputs.pt"), json.load(open(folder + "/te_config.json"))

def fresh():
    text_encoder = CLIPTextModel(CLIPTextConfig(**te_config))
    text_encoder.load_state_dict(torch.load(folder + "/te.pt"), strict=True)
    return UNet2DConditionModel.from_pretrained(folder + "/unet").eval(), text_encoder.eval()

def outputs(unet, text_encoder):
    with torch.no_grad():
        return (unet(inputs["latents"], torch.tensor([300]), inputs["context"]).sample,
                text_encoder(inputs["ids"]).last_hidden_state)

result = {}
for name in names:
    unet, text_encoder = fresh()
    network, weights = lora.create_network_from_weights(1.0, f"{folder}/{name}.safetensors", None, text_encoder, unet)
    network.apply_to(text_encoder, unet)
    network.load_state_dict(weights, strict=True)
    network.eval()
    got, want = outputs(unet, text_encoder), torch.load(f"{folder}/{name}_outputs.pt")
    result[name] = {"modules": [len(network.unet_loras), len(network.text_encoder_loras)],
                    "max_diff": [float((g - w).abs().max()) for g, w in zip(got, want)]}
json.dump(result, open(folder + "/kohya.json", "w"))
"""


def lrfind_side(folder: Path) -> dict[str, list[float]]:
    """Base weights, inputs, files and outputs for kohya's side; returns how far each network moves."""
    import torch

    from lrfind.models.tiny import build_tiny
    from lrfind.network import NetworkSpec, attach_network, save_lora

    components = build_tiny(seed=0)
    components.unet.save_pretrained(folder / "unet")
    te_state = {k if k.startswith("text_model.") else "text_model." + k: v
                for k, v in components.text_encoder.state_dict().items()}
    torch.save(te_state, folder / "te.pt")
    te_keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
               "max_position_embeddings", "hidden_act", "projection_dim", "layer_norm_eps", "bos_token_id",
               "eos_token_id", "pad_token_id")
    te_config = components.text_encoder.config.to_dict()
    (folder / "te_config.json").write_text(json.dumps({k: te_config[k] for k in te_keys if k in te_config}))
    g = torch.Generator().manual_seed(0)
    inputs = {"latents": torch.randn(1, 4, 8, 8, generator=g), "context": torch.randn(1, 77, 32, generator=g),
              "ids": torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])}
    torch.save(inputs, folder / "inputs.pt")

    def outputs():
        with torch.no_grad():
            return (components.unet(inputs["latents"], torch.tensor([300]), inputs["context"]).sample,
                    components.text_encoder(inputs["ids"]).last_hidden_state)

    base, moved = outputs(), {}
    for name, network_args in NETWORKS.items():
        network = attach_network(components, NetworkSpec(8, 2.0, train_text_encoder=True, network_args=network_args),
                                 seed=0)
        weights = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in network.unet_parameters() + network.text_encoder_parameters():
                p.copy_(torch.randn(p.shape, generator=weights) * 0.2)
        live = outputs()
        torch.save(live, folder / f"{name}_outputs.pt")
        save_lora(folder / f"{name}.safetensors", network.kohya_state_dict(), {}, "fp32")
        network.detach()
        moved[name] = [float((a - b).abs().max()) for a, b in zip(live, base)]
    return moved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kohya-dir", required=True, help="a kohya sd-scripts checkout")
    parser.add_argument("--kohya-python", required=True, help="the python of kohya's venv")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lrfind-kohya-parity-") as scratch:
        folder = Path(scratch)
        moved = lrfind_side(folder)
        subprocess.run([args.kohya_python, "-c", KOHYA_SIDE, str(folder), ",".join(NETWORKS)], cwd=args.kohya_dir,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kohya = json.loads((folder / "kohya.json").read_text())
    print("| network (tiny model, dim 8, alpha 2, with TE) | kohya's modules (UNet + TE) | max abs diff UNet / TE "
          "| the network moves UNet / TE by |")
    print("|---|---|---|---|")
    for name, network_args in NETWORKS.items():
        unet, te = kohya[name]["modules"]
        diff = " / ".join(f"{d:.3g}" for d in kohya[name]["max_diff"])
        print(f"| {name} {json.dumps(network_args) if network_args else ''} | {unet} + {te} | {diff} | "
              f"{' / '.join(f'{m:.3g}' for m in moved[name])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
