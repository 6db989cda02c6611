"""The layering in pyproject.toml's [tool.importlinter], checked with import-linter.

The repository keeps a flat layout (coding/, flows/ ... beside jtbd/) that pyproject maps into
one `jtbd` package; import-linter reads a package from its folder, so the test lays the
package out as it is installed (a copy of the .py files) and lints that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import ROOT


def _installed_layout(into: Path) -> Path:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        target = into.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            shutil.copy(source, target / source.name)
    return into


def _lint(tmp_path: Path, layout: Path) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), str(tmp_path / "pyproject.toml")], cwd=tmp_path, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(layout)}, text=True, timeout=300)


def test_every_layer_imports_only_the_layers_below_it(tmp_path):
    run = _lint(tmp_path, _installed_layout(tmp_path / "site"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check can fail: the coding layer importing the flow is reported."""
    layout = _installed_layout(tmp_path / "site")
    merge = layout / "jtbd" / "coding" / "merge.py"
    merge.write_text("import jtbd.flows.code_batch  # noqa: F401\n" + merge.read_text(encoding="utf-8"))
    run = _lint(tmp_path, layout)
    assert run.returncode != 0 and "jtbd.coding.merge -> jtbd.flows.code_batch" in run.stdout
