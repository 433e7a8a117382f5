"""Project-layout guards: one import namespace, and a runtime that never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("sdk", "training", "export", "calibration", "tests", "benchmarks")
FORBIDDEN_TOP_LEVEL = {"sdk", "export", "training", "calibration"}


def _python_files() -> list[Path]:
    return [p for folder in FOLDERS if (ROOT / folder).is_dir() for p in (ROOT / folder).rglob("*.py")]


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_imports_a_folder_as_a_top_level_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_top_level_imports(path) & FORBIDDEN_TOP_LEVEL)
        for path in _python_files()
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"import through the facesdk namespace instead: {offenders}"


def test_guard_detects_a_bad_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from training.model import MultiTaskModel\nimport export.cli\n")
    assert _top_level_imports(bad) & FORBIDDEN_TOP_LEVEL == {"training", "export"}


def test_pyproject_maps_folders_onto_the_namespace() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    assert mapping == {
        "facesdk": "sdk",
        "facesdk.training": "training",
        "facesdk.export": "export",
        "facesdk.calibration": "calibration",
    }
    assert config["project"]["scripts"] == {"facesdk": "facesdk.cli:main"}
    assert {"train", "export", "tensorrt", "dev"} <= set(config["project"]["optional-dependencies"])
    runtime = " ".join(config["project"]["dependencies"])
    assert "torch" not in runtime and "timm" not in runtime
    for package in config["tool"]["setuptools"]["packages"]:
        head, _, rest = package.partition(".")
        folder = mapping.get(package) or mapping.get(f"{head}.{rest.split('.')[0]}") or mapping[head]
        assert (ROOT / folder).is_dir(), package


def test_runtime_import_does_not_load_torch() -> None:
    code = (
        "import sys, facesdk, facesdk.cli, facesdk.results, facesdk.export_manifest, facesdk.checkpoint\n"
        "from facesdk import Analyzer\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'peft', 'tensorrt') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["facesdk", "facesdk.training", "facesdk.export", "facesdk.calibration"])
def test_each_stage_runs_as_a_module(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_console_script_lists_its_commands() -> None:
    from facesdk.cli import COMMANDS, main

    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
    assert {"train", "export", "analyze", "demo", "bench", "calibrate"} <= set(COMMANDS)
