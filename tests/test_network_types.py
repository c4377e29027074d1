"""The network-type registry (lrfind.network.types): one module per type holds all lrfind knows of it.

Two kinds of test, as for the optimizers: what every consumer read from its own table before the
registry (written out below from lrfind at 89919a1: network/kinds.py, probe/derive.py,
study/space.py, export/kohya_config.py) is still what it reads; and a type defined in one place,
registered through `register_network_type`, shows up everywhere.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest

from lrfind.errors import ConfigError
from lrfind.network.kinds import network_label, network_values, type_label
from lrfind.network.types import (NetworkTypeEntry, SpaceArg, check_network_args, conv_type_names,
                                  network_modules, network_type, network_type_names, network_types,
                                  register_network_type, type_of)
from lrfind.network.types import registry
from lrfind.network.types.entry import A1111, COMFYUI, DIFFUSERS
from lrfind.probe.derive import network_lr_factor

REPO = Path(__file__).resolve().parents[1]

# --- the tables before the registry (lrfind at 89919a1), value for value ------------------------

OLD_NETWORK_KINDS = ("lora", "locon", "lycoris_locon", "loha", "lokr")
OLD_CONV_KINDS = ("locon", "lycoris_locon", "loha", "lokr")
OLD_LABELS = {"lora": "LoRA", "locon": "LoCon (kohya)", "lycoris_locon": "LoCon (LyCORIS)", "loha": "LoHa",
              "lokr": "LoKr"}
OLD_NETWORK_LR_FACTORS = {"lora": 1.0, "locon": 1.0, "lycoris_locon": 0.87, "loha": 1.3, "lokr": 2.0}
OLD_KOHYA_NOTES = {"networks.lora": "kohya's LoRA",
                   "lycoris.kohya": "LyCORIS: pip install lycoris-lora in kohya's environment"}
# network_values(kind, 16, 8.0, conv_dim_fraction, lokr_factor) -> network_args (module: LoRA's or LyCORIS')
OLD_VALUES = {
    ("lora", None, None): {}, ("lora", 0.25, 4): {},
    ("locon", None, None): {"conv_dim": 16, "conv_alpha": 8.0},
    ("locon", 0.25, 4): {"conv_dim": 4, "conv_alpha": 2.0},
    ("lycoris_locon", None, 4): {"algo": "locon"},
    ("lycoris_locon", 0.25, None): {"algo": "locon", "conv_dim": 4, "conv_alpha": 2.0},
    ("loha", None, None): {"algo": "loha"},
    ("loha", 0.25, 4): {"algo": "loha", "conv_dim": 4, "conv_alpha": 2.0},
    ("lokr", None, None): {"algo": "lokr"},
    ("lokr", None, 4): {"algo": "lokr", "factor": 4},
    ("lokr", 0.25, 4): {"algo": "lokr", "conv_dim": 4, "conv_alpha": 2.0, "factor": 4},
}
# network_kind / network_label of TrainConfig spellings
OLD_KINDS_OF = [
    ("lycoris.kohya", {}, "lycoris_locon"), ("lycoris.kohya", {"algo": "LoRA"}, "lycoris_locon"),
    ("lycoris.kohya", {"algo": "LOKR"}, "lokr"), ("lycoris.kohya", {"algo": "LoHa", "conv_dim": 4}, "loha"),
    ("networks.lora", {"conv_dim": "4"}, "locon"), ("networks.lora", {"rank_dropout": 0.1}, "lora"),
]


def test_names_labels_convs_and_modules_are_the_old_tables():
    assert network_type_names() == list(OLD_NETWORK_KINDS)
    assert conv_type_names() == list(OLD_CONV_KINDS)
    assert {e.name: e.label for e in network_types()} == OLD_LABELS
    assert {e.name: type_label(e.name) for e in network_types()} == OLD_LABELS
    assert type_label("dora") == "dora"  # the recommendation's text for a name no type has, as before
    assert network_modules() == ["networks.lora", "lycoris.kohya"]  # TrainConfig's Literal, in its order
    assert {e.name: e.kohya_note for e in network_types()} == {
        e.name: OLD_KOHYA_NOTES[e.network_module] for e in network_types()}


def test_lr_factors_are_what_derive_used():
    assert {e.name: e.lr_factor for e in network_types()} == OLD_NETWORK_LR_FACTORS
    assert {name: network_lr_factor(name) for name in OLD_NETWORK_KINDS} == OLD_NETWORK_LR_FACTORS


@pytest.mark.parametrize(("kind", "fraction", "factor"), list(OLD_VALUES))
def test_network_values_are_the_old_ones(kind, fraction, factor):
    module = "networks.lora" if kind in ("lora", "locon") else "lycoris.kohya"
    assert network_values(kind, 16, 8.0, fraction, lokr_factor=factor) == {
        "network_module": module, "network_args": OLD_VALUES[(kind, fraction, factor)]}


@pytest.mark.parametrize(("module", "args", "kind"), OLD_KINDS_OF)
def test_type_of_and_labels_read_kohya_spellings_as_before(module, args, kind):
    assert type_of(module, args).name == kind
    assert network_label(module, args) == OLD_LABELS[kind]


@pytest.mark.parametrize("entry", network_types(), ids=lambda e: e.name)
def test_every_registered_type_round_trips_values_to_type_of(entry):
    factors = {arg.dimension: arg.minimum for arg in entry.space_args}
    for fraction in (None, 0.5):
        values = network_values(entry.name, 8, 4.0, fraction, **factors)
        check_network_args(values["network_module"], values["network_args"])  # its module accepts them
        assert type_of(values["network_module"], values["network_args"]) is entry
        assert network_label(values["network_module"], values["network_args"]) == entry.label
        assert ("conv_dim" in values["network_args"]) == (
            entry.adapts_convs and (fraction is not None or entry.convs_by_default))
        for arg in entry.space_args:
            assert values["network_args"][arg.network_arg] == arg.minimum
    assert entry.build().__name__ in ("attach_lora", "attach_lycoris")  # the dotted builder resolves
    assert entry.clients and set(entry.clients) <= {A1111, COMFYUI, DIFFUSERS}


def test_unknown_names_give_the_old_errors():
    known = "lora, locon, lycoris_locon, loha, lokr"
    with pytest.raises(ConfigError, match=re.escape(f"network kind 'dora': use one of {known}")):
        network_type("dora")
    with pytest.raises(ConfigError, match=re.escape(f"network kind 'dora': use one of {known}")):
        network_values("dora", 8, 8.0)
    with pytest.raises(ConfigError, match=re.escape(f"network kind 'dora' has no measured lr factor; use one of {known}")):
        network_lr_factor("dora")
    not_available = "--network-module networks.dylora: not available; use one of lycoris.kohya, networks.lora"
    with pytest.raises(ConfigError, match=re.escape(not_available)):
        check_network_args("networks.dylora", {})
    with pytest.raises(ConfigError, match=re.escape(not_available)):
        type_of("networks.dylora", {})
    with pytest.raises(ConfigError, match="'lokr_facter' is no network type's space dimension; use one of lokr_factor"):
        network_values("lokr", 8, 8.0, lokr_facter=4)


def test_a_module_no_type_is_has_a_label_of_its_own_name():
    assert network_label("networks.dylora", {}) == "networks.dylora"
    with pytest.raises(ConfigError, match="lycoris.kohya --network-args algo=ia3: no network type of lrfind's"):
        type_of("lycoris.kohya", {"algo": "ia3"})


def test_the_clients_are_the_docs_table():
    # docs/networks.md, "Sampling and where files load": client rows, LoRA | LoCon | LoHa | LoKr columns
    text = (REPO / "docs" / "networks.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:6]]
            for line in text.splitlines() if line.startswith("| ") and line.count("|") == 6}
    columns = {"lora": 0, "locon": 1, "lycoris_locon": 1, "loha": 2, "lokr": 3}
    prefixes = {A1111: "A1111 WebUI ≥ 1.5", COMFYUI: "ComfyUI", DIFFUSERS: "diffusers"}
    for client, prefix in prefixes.items():
        row = next(cells for name, cells in rows.items() if name.startswith(prefix))
        for entry in network_types():
            assert row[columns[entry.name]].startswith("yes") == (client in entry.clients), (client, entry.name)


def test_registry_modules_import_no_torch_even_lazily():
    import lrfind.network.types as package

    names = ("entry", "registry", "lora", "locon", "lycoris_locon", "loha", "lokr")
    for module in [package, *(__import__(f"lrfind.network.types.{n}", fromlist=["x"]) for n in names)]:
        source = inspect.getsource(module)
        assert not re.search(r"^\s*(import|from) (torch|lycoris|diffusers)", source, re.M), module.__name__


# --- one new type, in one place -----------------------------------------------------------------

TOY = NetworkTypeEntry(
    name="toy_locon", label="ToyLoCon", network_module="toy.lora", is_type=lambda args: True, lr_factor=3.0,
    builder="lrfind.network.lora:attach_lora", args_checker="lrfind.network.lora_args:parse_lora_args",
    kohya_note="toy: not a kohya module", fixed_args={"module_dropout": "0.1"}, adapts_convs=True,
    clients=(COMFYUI,),
)


@pytest.fixture
def toy_type(monkeypatch):
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))  # the test's additions go away after
    register_network_type(TOY)


def space_params(space, params, network_type):
    from lrfind.study.trial_params import TrialParams

    return TrialParams.from_params({**params, "network_type": network_type}, space)


def test_a_new_type_goes_from_the_space_to_the_trial_values_and_the_export(toy_type, tmp_path):
    from lrfind.export.kohya_config import kohya_training_toml
    from lrfind.study.recommend import TrialRecord, recommend
    from lrfind.study.space import load_space
    from lrfind.study.stats import DatasetStats
    from lrfind.study.trial_values import plan_trial
    from probe_reports import probe_with_lr

    space_file = tmp_path / "space.toml"
    space_file.write_text("network_dim = 8\nnetwork_alpha_fraction = 1.0\nepochs = 2\n"
                          "network_type = ['lora', 'TOY_LOCON']\nconv_dim_fraction = 0.5\n")
    space = load_space(space_file)
    assert space.network_type.choices == ["lora", "toy_locon"]  # validated and spelled as registered
    stats = {"name": "ds", "reg_images": [], "concepts": [
        {"folder": "10_me", "name": "me", "repeats": 10, "images_per_bucket": [[[512, 512], 4]]}]}
    probe = probe_with_lr(2e-4, 8, 8.0, status="converged")
    stats = DatasetStats.from_dict(stats)
    params = {"network_dim": 8, "network_alpha_fraction": 1.0, "epochs": 2, "lr_multiplier": 1.0,
              "optimizer": "AdamW", "lr_scheduler": "constant", "network_type": "toy_locon",
              "conv_dim_fraction": 0.5}
    rec = recommend([TrialRecord(0, "COMPLETE", 0.3, params)], space, probe, stats)
    assert rec.unet_lr == pytest.approx(2e-4 * 3.0)  # the probe's LoRA lr x the toy's factor
    assert rec.network_module == "toy.lora"
    assert rec.network_args == {"module_dropout": "0.1", "conv_dim": 4, "conv_alpha": 4.0}
    assert "ToyLoCon (toy.lora module_dropout=0.1 conv_dim=4 conv_alpha=4.0)" in rec.summary
    from_toy = plan_trial(space_params(space, params, "lora"), probe.model_copy(update={"network_module": "toy.lora"}),
                          space, stats)
    assert from_toy.train_values["unet_lr"] == pytest.approx(2e-4 / 3.0)  # a toy probe: LoRA at 1/3 of it
    toml = kohya_training_toml(rec, model_path="/m.safetensors", dataset_dir=tmp_path,
                               output_dir=tmp_path / "out", output_name="me", logging_dir=None)
    assert tomllib.loads(toml)["additional_network_arguments"]["network_module"] == "toy.lora"
    assert "toy: not a kohya module" in toml


def test_a_new_type_is_checked_by_its_modules_checker_and_offered_for_convs(toy_type, tmp_path):
    from lrfind.study.space import load_space

    with pytest.raises(ConfigError, match="--network-args algo: not an argument of networks.lora"):
        check_network_args("toy.lora", {"algo": "loha"})
    assert conv_type_names()[-1] == "toy_locon"
    space_file = tmp_path / "space.toml"
    space_file.write_text("network_dim = 8\nnetwork_alpha_fraction = 1.0\nepochs = 2\n"
                          "network_type = ['lora']\nconv_dim_fraction = 0.5\n")
    with pytest.raises(ConfigError, match="add one of locon, lycoris_locon, loha, lokr, toy_locon"):
        load_space(space_file)


def test_a_clashing_type_is_refused(toy_type):
    with pytest.raises(ConfigError, match="network type toy_locon: the name is taken"):
        register_network_type(TOY)
    other_builder = NetworkTypeEntry(
        name="toy_loha", label="ToyLoHa", network_module="lycoris.kohya", is_type=lambda args: False,
        lr_factor=1.0, builder="lrfind.network.lora:attach_lora",
        args_checker="lrfind.network.lycoris_args:check_lycoris_args", kohya_note="",
    )
    with pytest.raises(ConfigError, match="lycoris.kohya is built by lrfind.network.lycoris_net:attach_lycoris"):
        register_network_type(other_builder)


def test_a_space_arg_is_validated_by_its_types_rule(tmp_path):
    from lrfind.study.space import load_space

    assert network_type("lokr").space_arg("lokr_factor") == SpaceArg(
        "lokr_factor", "factor", 2, "LoKr factors are whole numbers >= 2 (leave lokr_factor out for lycoris' -1)")
    for body, message in [("network_type = ['lokr']\nlokr_factor = 1\n",
                           "LoKr factors are whole numbers >= 2 (leave lokr_factor out for lycoris' -1), got 1"),
                          ("network_type = ['loha']\nlokr_factor = 4\n",
                           "lokr_factor: network_type does not include lokr; add it or drop lokr_factor")]:
        space_file = tmp_path / "space.toml"
        space_file.write_text("network_dim = 8\nnetwork_alpha_fraction = 1.0\nepochs = 2\n" + body)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_space(space_file)
