"""The import contract: lrfind's layers point one way, packages form no circle, pure numerics
import no torch. Every import counts, module-level and inside functions alike (a lazy import
still ties the two modules together; it only hides the tie).

Layers, lowest first (a module may import its own layer's or a lower layer's modules):
  0 base:     lrfind's root modules (errors, atomic, jsonfiles, secrets, outputs, config),
              data, models, cache, network, optimizers, artifacts (the typed JSON files)
  1 training: the one loop, its setup and callbacks
  2 scoring:  samples, CLIP, prompts (used by study and final run alike)
  3 probe, study, final (peers: study may use probe; no circle between them)
  4 report, export
  5 api: lrfind.api, and the root package's __init__, which re-exports it lazily (PEP 562)
  6 cli, demo, __main__
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "lrfind"

LAYERS: dict[str, int] = {
    "lrfind": 0,  # the root modules; a subpackage not named below is an error (see test_every_package_has_a_layer)
    "lrfind.data": 0,
    "lrfind.models": 0,
    "lrfind.cache": 0,
    "lrfind.network": 0,
    "lrfind.optimizers": 0,  # one module per optimizer (data only: no torch); outputs.py reads its state sizes
    "lrfind.artifacts": 0,  # the typed, versioned JSON files (pydantic and the stdlib only)
    "lrfind.training": 1,
    "lrfind.scoring": 2,
    "lrfind.probe": 3,
    "lrfind.study": 3,
    "lrfind.final": 3,
    "lrfind.report": 4,
    "lrfind.export": 4,
    "lrfind.api": 5,
    # lrfind/__init__.py: `import lrfind` runs only __version__; lrfind.probe & co. load lrfind.api on
    # first use. Held to the api layer's rule, as its own unit (importing a root module such as
    # lrfind.errors does not run the facade's lazy import).
    "lrfind.__init__": 5,
    "lrfind.cli": 6,
    "lrfind.demo": 6,
    "lrfind.__main__": 6,
}

# Curve analysis, step math, search spaces and score arithmetic: plain Python (numpy at most),
# tested with tables of numbers. They must not import torch, even lazily, even through another
# lrfind module (a pure function that pulls torch in costs seconds and a GiB to unit-test).
PURE_NUMERICS = (
    "lrfind.jsonfiles",           # finite(): NaN/inf -> None for JSON, and JSON reading
    "lrfind.data.buckets",        # aspect-ratio bucket arithmetic
    "lrfind.data.steps",          # steps per epoch and in total (kohya's formula)
    "lrfind.models.size_conditioning",  # SDXL time ids: kohya's crop offsets per image
    "lrfind.data.limits",         # bounds on repeats and steps
    "lrfind.data.holdout",        # the held-out split per concept
    "lrfind.network.types",       # the network-type registry: names, args, lr factors (builders are paths)
    "lrfind.network.kinds",       # a network type's TrainConfig values and label
    "lrfind.probe.plateau",       # where d*lr stabilises, and its confidence
    "lrfind.probe.derive",        # AdamW / Lion / text-encoder settings from the plateau
    "lrfind.probe.lr_range",      # the LR range test's suggestion from (lr, loss) points
    "lrfind.study.space",         # the search space
    "lrfind.study.dimensions",    # the search space's dimensions
    "lrfind.study.trial_params",  # one point of the space and how Optuna is asked for it
    "lrfind.study.epoch_sweep",   # epoch counts one trial scores
    "lrfind.study.stats",         # dataset statistics for the recommendation
    "lrfind.study.trial_values",  # a trial's training values from its sampled parameters
    "lrfind.study.scoring",       # the objective from validation loss and CLIP scores
    "lrfind.study.pruning",       # the pruner's intermediate values
    "lrfind.study.recommend",     # the recommendation from finished trials
    "lrfind.study.diagnosis",     # underfits / fits / overfits / burned from a run's curves
)

HEAVY = ("torch", "diffusers", "transformers", "peft", "safetensors", "accelerate", "lycoris", "open_clip",
         "torchvision", "bitsandbytes", "dadaptation", "prodigyopt", "lion_pytorch")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the imported module (for `from a import b`: a.b when that is a module, else a)
    lazy: bool = False  # written inside a function: runs when the function is called, not on import

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package folder `root`."""
    result = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 2:  # the root's __init__ keeps its name: its own layer
            parts.pop()
        result[".".join(parts)] = path
    return result


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST):
    """(node, inside a function) for every node except the bodies of `if TYPE_CHECKING:` (never run)."""
    todo = [(tree, False)]
    while todo:
        node, lazy = todo.pop()
        yield node, lazy
        children = node.orelse if _is_type_checking(node) else list(ast.iter_child_nodes(node))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        todo += [(child, inner) for child in children]


def scan_imports(root: Path) -> list[Import]:
    """Every import statement of every module under `root`, wherever it is written, run-time ones only."""
    files = module_files(root)
    imports = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        package = module.removesuffix(".__init__")  # relative imports resolve from the package itself
        for node, lazy in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                imports += [Import(module, node.lineno, alias.name, lazy) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(package, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    imports.append(Import(module, node.lineno, sub if sub in files else base, lazy))
    return imports


def owner(module: str, layers: dict[str, int]) -> str:
    """The longest key of `layers` that is `module` or a package above it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in layers:
            return key
    raise KeyError(module)


def unit(module: str, root_name: str) -> str:
    """The package a module belongs to for the cycle check: root.sub for subpackages and root modules."""
    return ".".join(module.split(".")[:2]) if module != root_name else root_name


def own_imports(imports: list[Import], root_name: str) -> list[Import]:
    return [i for i in imports if i.target == root_name or i.target.startswith(root_name + ".")]


def upward_imports(imports: list[Import], layers: dict[str, int], root_name: str) -> list[Import]:
    return [i for i in own_imports(imports, root_name)
            if layers[owner(i.target, layers)] > layers[owner(i.module, layers)]]


def package_cycles(imports: list[Import], root_name: str) -> list[list[str]]:
    """Circles of packages (strongly connected components of more than one), each sorted."""
    graph: dict[str, set[str]] = {}
    for i in own_imports(imports, root_name):
        a, b = unit(i.module, root_name), unit(i.target, root_name)
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's algorithm (a few dozen nodes: recursion is fine)
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def cycle_edges(imports: list[Import], cycle: list[str], root_name: str) -> list[Import]:
    members = set(cycle)
    return [i for i in own_imports(imports, root_name)
            if unit(i.module, root_name) in members and unit(i.target, root_name) in members
            and unit(i.module, root_name) != unit(i.target, root_name)]


def heavy_paths(start: str, imports: list[Import], heavy: tuple[str, ...], root_name: str,
                pure: tuple[str, ...] = ()) -> list[str]:
    """Shortest chains from `start` to an import of a `heavy` library, one per lrfind module that
    holds such an import.

    Followed: every import of `start` and of the other `pure` modules it reaches, inside functions
    too (they are held to the rule whole); for any other lrfind module reached, the imports that
    loading it runs (module level, and the package __init__s above it). A function of such a
    module that imports torch when called is that module's business: a pure module that calls it
    is caught by review, not here (a file-level graph cannot tell which functions are called).
    """
    by_module: dict[str, list[Import]] = {}
    for i in imports:  # the root's __init__ runs when the root package is imported
        by_module.setdefault(i.module.removesuffix(".__init__"), []).append(i)
    whole = {start, *pure}

    def runs(module: str) -> list[str]:  # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c
        parts = module.split(".")
        return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]

    found, seen = [], set(runs(start))
    todo = deque((m, []) for m in runs(start))
    while todo:  # breadth first: the first chain to a module is a shortest one
        module, chain = todo.popleft()
        followed = [i for i in by_module.get(module, []) if module in whole or not i.lazy]
        for i in followed:
            if i.target.split(".")[0] in heavy:
                found.append(" -> ".join(chain + [str(i)]))
                break
        for i in followed:
            if i.target == root_name or i.target.startswith(root_name + "."):
                for m in runs(i.target):
                    if m not in seen:
                        seen.add(m)
                        todo.append((m, chain + [str(i)]))
    return found


# --- the contract on lrfind itself ---

IMPORTS = scan_imports(PACKAGE_ROOT)


def test_every_package_has_a_layer():
    packages = {m for m in module_files(PACKAGE_ROOT) if m.count(".") == 1 and (PACKAGE_ROOT / m.split(".")[1]).is_dir()}
    missing = sorted(p for p in packages if p not in LAYERS)
    assert not missing, f"packages with no layer in tests/test_import_layers.py LAYERS: {missing}"


def _layer_names() -> str:
    by_layer: dict[int, list[str]] = {}
    for name, layer in LAYERS.items():
        by_layer.setdefault(layer, []).append(name.removeprefix("lrfind.") if name != "lrfind" else "root modules")
    return " -> ".join("/".join(names) for _, names in sorted(by_layer.items()))


def test_no_upward_import():
    bad = sorted(set(upward_imports(IMPORTS, LAYERS, "lrfind")), key=str)
    assert not bad, f"imports that point up the layers ({_layer_names()}; lower never imports higher):\n" + "\n".join(
        f"  {i}  [{owner(i.module, LAYERS)} is layer {LAYERS[owner(i.module, LAYERS)]}, "
        f"{owner(i.target, LAYERS)} is layer {LAYERS[owner(i.target, LAYERS)]}]" for i in bad)


def test_no_package_cycle():
    cycles = package_cycles(IMPORTS, "lrfind")
    assert not cycles, "packages that import each other:\n" + "\n".join(
        f"  {' <-> '.join(c)}:\n" + "\n".join(f"    {i}" for i in sorted(set(cycle_edges(IMPORTS, c, "lrfind")), key=str))
        for c in cycles)


@pytest.mark.parametrize("module", PURE_NUMERICS)
def test_pure_numerics_import_no_torch(module):
    assert module in module_files(PACKAGE_ROOT), f"{module}: listed as pure numerics but not found"
    chains = heavy_paths(module, IMPORTS, HEAVY, "lrfind", PURE_NUMERICS)
    assert not chains, f"{module} is pure numerics but imports a torch library:\n" + "\n".join(
        f"  {c}" for c in chains)


# --- the checker on a synthetic package, so the contract cannot pass vacuously ---

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


SYNTHETIC_LAYERS = {"pkg": 0, "pkg.low": 0, "pkg.high": 1, "pkg.peer": 1}


def test_checker_finds_an_upward_import_inside_a_function(tmp_path):
    root = _package(tmp_path, {
        "low/__init__.py": "",
        "low/engine.py": "def run():\n    from pkg.high.orchestrate import go\n    return go\n",
        "high/__init__.py": "",
        "high/orchestrate.py": "from pkg.low import engine\n\ndef go():\n    return engine\n",
    })
    bad = upward_imports(scan_imports(root), SYNTHETIC_LAYERS, "pkg")
    assert [str(i) for i in bad] == ["pkg.low.engine (line 2) imports pkg.high.orchestrate"]


def test_checker_finds_a_cycle_between_peer_packages(tmp_path):
    root = _package(tmp_path, {
        "high/__init__.py": "",
        "high/a.py": "from ..peer import b\n",
        "peer/__init__.py": "",
        "peer/b.py": "def f():\n    import pkg.high.a\n",
    })
    imports = scan_imports(root)
    assert not upward_imports(imports, SYNTHETIC_LAYERS, "pkg")
    assert package_cycles(imports, "pkg") == [["pkg.high", "pkg.peer"]]
    assert {str(i) for i in cycle_edges(imports, ["pkg.high", "pkg.peer"], "pkg")} == {
        "pkg.high.a (line 1) imports pkg.peer.b", "pkg.peer.b (line 2) imports pkg.high.a"}


def test_checker_finds_torch_through_a_lazy_import_and_a_package_init(tmp_path):
    root = _package(tmp_path, {
        "low/__init__.py": "from pkg.low.tensors import as_tensor\n",
        "low/tensors.py": "import torch\n\ndef as_tensor(x):\n    return torch.tensor(x)\n",
        "low/plain.py": "import math\n",
        "lazy.py": "def as_tensor(x):\n    import torch\n    return torch.tensor(x)\n",
        "high/__init__.py": "",
        "high/curve.py": "def slope(x):\n    from pkg.low import plain\n    return plain\n",
        "high/other.py": "from pkg import lazy\n",
    })
    imports = scan_imports(root)
    assert heavy_paths("pkg.high.curve", imports, ("torch",), "pkg") == [
        "pkg.high.curve (line 2) imports pkg.low.plain -> pkg.low (line 1) imports pkg.low.tensors "
        "-> pkg.low.tensors (line 1) imports torch"]
    assert heavy_paths("pkg.high", imports, ("torch",), "pkg") == []
    # pkg.lazy imports torch only when its function runs: followed only when pkg.lazy is pure too
    assert heavy_paths("pkg.high.other", imports, ("torch",), "pkg") == []
    assert heavy_paths("pkg.high.other", imports, ("torch",), "pkg", pure=("pkg.lazy",)) == [
        "pkg.high.other (line 1) imports pkg.lazy -> pkg.lazy (line 2) imports torch"]


def test_checker_skips_type_checking_imports(tmp_path):
    root = _package(tmp_path, {"typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                           "    import torch\nelse:\n    import math\n"})
    assert sorted(i.target for i in scan_imports(root)) == ["math", "typing"]


if __name__ == "__main__":  # a quick look at the graph: python tests/test_import_layers.py
    for i in upward_imports(IMPORTS, LAYERS, "lrfind"):
        print("UP", i)
    for c in package_cycles(IMPORTS, "lrfind"):
        print("CYCLE", c)
    for m in PURE_NUMERICS:
        for c in heavy_paths(m, IMPORTS, HEAVY, "lrfind", PURE_NUMERICS):
            print("HEAVY", c)
    sys.exit(0)
