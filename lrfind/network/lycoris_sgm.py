"""kohya's SDXL U-Net layout over lrfind's diffusers U-Net, for lycoris to walk.

kohya's sdxl_train_network.py hands `lycoris.kohya.create_network` its own U-Net
(library/sdxl_original_unet.py, the SGM layout). lycoris selects layers by class name (a preset's
`unet_target_module`) and by module path (`unet_target_name`, `exclude_name`, the algo maps), and
names each `lora_unet_<SGM path>`. lrfind trains diffusers' U-Net, whose paths and some classes
differ: `down_blocks.1.attentions.0` is `input_blocks.4.1` there, diffusers' `Attention` is kohya's
`CrossAttention`, and the time embedding is a `TimestepEmbedding` in diffusers but a plain
`Sequential` (`time_embed`) in kohya's, so preset `full` adapts it on SD 1.x and not on SDXL.

So lycoris walks a view: a module tree with kohya's paths, class names and module order whose
layers are the diffusers U-Net's own Linear / Conv2d / norm objects (lrfind.network.naming gives
each layer's SGM path). lycoris then selects and names what it selects on kohya's U-Net, and its
modules wrap the layers lrfind's U-Net runs. The view owns no weights and is dropped after the build.
Layers without parameters (SiLU, Dropout, Identity) are left out: lycoris adapts none.
"""

from __future__ import annotations

from lrfind.network.naming import KohyaNaming, sgm_naming

# diffusers class -> kohya's class at the same SGM path (library/sdxl_original_unet.py, sd-scripts 48d368fa)
SGM_CLASSES = {"Transformer2DModel": "Transformer2DModel", "BasicTransformerBlock": "BasicTransformerBlock",
               "Attention": "CrossAttention", "FeedForward": "FeedForward", "GEGLU": "GEGLU",
               "ResnetBlock2D": "ResnetBlock2D", "Downsample2D": "Downsample2D", "Upsample2D": "Upsample2D"}
# kohya's containers with no diffusers counterpart: these are Sequentials, the others ModuleLists
SGM_SEQUENTIALS = ("time_embed", "label_emb", "in_layers", "emb_layers", "out_layers")
SGM_TOP_LEVEL = ("time_embed", "label_emb", "input_blocks", "middle_block", "output_blocks", "out")
# kohya's BasicTransformerBlock registers its children in another order than diffusers'
SGM_CHILD_ORDER = {"BasicTransformerBlock": ("attn1", "ff", "attn2", "norm1", "norm2", "norm3")}


def _sgm_class(path: str, classes: dict[str, str]) -> str:
    """kohya's class of a container diffusers has no module for (input_blocks.N holding conv_in or
    a Downsample2D alone is a Sequential there, holding a resnet and attention a ModuleList)."""
    parent, _, name = path.rpartition(".")
    alone = path == "input_blocks.0" or classes.get(path + ".0") == "Downsample2D"
    if name in SGM_SEQUENTIALS or parent == "label_emb" or (parent == "input_blocks" and alone):
        return "Sequential"
    return "ModuleList"


def sgm_entries(unet, naming: KohyaNaming) -> dict[str, object]:
    """SGM path -> the diffusers module kohya's U-Net has there: every layer with parameters of its
    own, and every module of a class kohya's U-Net has too (SGM_CLASSES)."""
    entries: dict[str, object] = {}
    for path, module in unet.named_modules():
        own_parameters = next(module.parameters(recurse=False), None) is not None
        if not path or not (own_parameters or type(module).__name__ in SGM_CLASSES):
            continue
        try:
            entries[naming.sgm_path(path)] = module
        except ValueError:
            if type(module).__name__ == "Downsample2D":  # its conv moves: downsamplers.0.conv -> N.0.op
                entries[naming.sgm_path(path + ".conv").rpartition(".")[0]] = module
            elif own_parameters:
                raise
    return entries


def _order_key(path: str, classes: dict[str, str], rank: dict[str, int]) -> tuple:
    """kohya's module order: its top-level order, blocks by number, children as diffusers registers
    them (first seen first) except where kohya's order differs (SGM_CHILD_ORDER)."""
    parts = path.split(".")
    key = []
    for depth, part in enumerate(parts):
        parent_class = classes.get(".".join(parts[:depth]), "")
        if depth == 0:
            key.append((0, SGM_TOP_LEVEL.index(part)))
        elif part.isdigit():
            key.append((0, int(part)))
        elif part in SGM_CHILD_ORDER.get(parent_class, ()):
            key.append((0, SGM_CHILD_ORDER[parent_class].index(part)))
        else:
            key.append((1, rank[part]))
    return tuple(key)


def sgm_view(unet):
    """A torch module whose named_modules() are kohya's SDXL U-Net's (paths, class names, order),
    holding the diffusers SDXL U-Net's own layers; for lycoris.kohya.create_network to walk."""
    import torch

    entries = sgm_entries(unet, sgm_naming(unet))
    classes = {path: SGM_CLASSES[type(module).__name__] for path, module in entries.items()
               if type(module).__name__ in SGM_CLASSES}
    rank: dict[str, int] = {}
    for path in entries:
        for part in path.split("."):
            rank.setdefault(part, len(rank))
    node_types: dict[str, type] = {}

    def node(name: str) -> torch.nn.Module:
        if name not in node_types:
            node_types[name] = type(name, (torch.nn.Module,), {"__module__": __name__})
        return node_types[name]()

    root = node("SdxlUNet2DConditionModel")
    for path in sorted(entries, key=lambda p: _order_key(p, classes, rank)):
        parent = root
        parts = path.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if parts[depth - 1] not in parent._modules:
                parent.add_module(parts[depth - 1], node(classes.get(prefix) or _sgm_class(prefix, classes)))
            parent = parent._modules[parts[depth - 1]]
        if path in classes:  # a block: a view node of kohya's class; its layers are entries of their own
            if parts[-1] not in parent._modules:
                parent.add_module(parts[-1], node(classes[path]))
        else:
            parent.add_module(parts[-1], entries[path])
    return root
