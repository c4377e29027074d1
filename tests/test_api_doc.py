"""docs/api.md's example runs as it stands (probe -> study -> train -> report -> export), and the
public API is what the CLI and the demo call for those five operations."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what lrfind.api wraps: the CLI and the demo reach these only through it
BELOW_THE_API = {"lrfind.probe.probe": {"run_probe", "reuse_or_run_probe"}, "lrfind.study.runner": {"run_study"},
                 "lrfind.study.workers": {"run_workers"},
                 "lrfind.final.run": {"train_lora"}, "lrfind.export.files": {"export_kohya"},
                 "lrfind.report.html": {"write_report"}, "lrfind.report.info": {"gather_info"},
                 "lrfind.report.data": {"load_study_data"}}


def example_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/api.md should hold one python example"
    return blocks[0]


def test_the_example_in_docs_api_md_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(example_code(), str(ROOT / "docs" / "api.md"), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert re.search(r"probe: \w+, unet_lr [\d.e-]+", out) and "recommended: dim " in out
    for path in ("studies/example/probe.json", "studies/example/recommendation.json", "studies/example.db",
                 "studies/example/final/example.safetensors", "studies/example/final/example_final.json",
                 "reports/example.html", "studies/example/kohya_config.toml", "studies/example/kohya_dataset.toml"):
        assert (tmp_path / path).is_file(), path
    assert "accelerate launch" in out


def test_cli_and_demo_call_the_api_for_the_five_operations():
    reached = []
    for path in [*sorted((ROOT / "lrfind" / "cli").glob("*.py")), ROOT / "lrfind" / "demo.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in BELOW_THE_API:
                reached += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name in BELOW_THE_API[node.module]]
    assert not reached, "call lrfind.api instead of:\n" + "\n".join(reached)


def test_import_lrfind_stays_light_and_the_api_loads_on_use():
    code = ("import sys, lrfind; assert 'torch' not in sys.modules and 'lrfind.api' not in sys.modules; "
            "assert lrfind.train is lrfind.api.train and lrfind.FinalRun is lrfind.api.FinalRun; "
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr
