"""Project-layout guards: one import namespace, and a runtime that never imports torch."""

from __future__ import annotations

import ast
import re
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
        "import sys, facesdk, facesdk.cli, facesdk.results, facesdk.contract.export_manifest, facesdk.contract.checkpoint\n"
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


def test_stage_commands_are_registered_entry_points() -> None:
    """The runtime names no stage module: each stage command comes from the ``facesdk.commands``
    entry points that pyproject.toml declares, and each resolves to its stage's ``main``."""
    from importlib.metadata import entry_points

    from facesdk.cli import COMMAND_GROUP, COMMANDS

    stage_commands = {name for name, (module, *_) in COMMANDS.items() if module is None}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][COMMAND_GROUP]
    assert set(declared) == stage_commands
    installed = {ep.name: ep.value for ep in entry_points(group=COMMAND_GROUP)}
    assert installed == declared, "reinstall the package (pip install -e .) after changing pyproject.toml"
    stages = ("facesdk.training.", "facesdk.export.", "facesdk.calibration.")
    for name, target in declared.items():
        module, _, attr = target.partition(":")
        assert module.startswith(stages) and attr == "main", (name, target)
        parts = module.split(".")  # facesdk.<stage folder>.<path>
        source = ROOT.joinpath(parts[1], *parts[2:]).with_suffix(".py")
        assert "\ndef main(" in source.read_text(), f"{name}: {source} has no main()"


# --- import layers -------------------------------------------------------------------------
# The runtime (sdk/) imports no stage; calibration does not import training; training does not
# import export. Checked on every import in a file (module level or inside a function, absolute
# or relative) and every string naming a stage module (importlib.import_module("facesdk.training"),
# require("facesdk.export.merge"), "facesdk.training.x:attr" registry entries).

LAYER_PACKAGES = {"sdk": "facesdk", "training": "facesdk.training", "export": "facesdk.export",
                  "calibration": "facesdk.calibration"}  # fmt: skip
STAGES = ("facesdk.training", "facesdk.export", "facesdk.calibration")
FORBIDDEN = {
    "sdk": STAGES,
    "calibration": ("facesdk.training",),
    "training": ("facesdk.export",),
    "export": (),
}
MODULE_STRING = re.compile(r"^facesdk(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_][A-Za-z0-9_.]*)?$")


def _package_of(path: Path, root: Path) -> list[str]:
    rel = path.relative_to(root)
    base = LAYER_PACKAGES[rel.parts[0]].split(".")
    return base + list(rel.parts[1:-1])


def _names_a_module(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and bool(MODULE_STRING.match(node.value))
    )


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, lazily or not, or names as a ``facesdk.*`` module string."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path, root)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                head = package[: len(package) - node.level + 1]
                module = ".".join(head + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif _names_a_module(node):
            found.add(node.value.split(":")[0])
    return found


def layer_violations(root: Path = ROOT) -> dict[str, list[str]]:
    """``{file: [forbidden modules]}`` over the four layers."""
    bad: dict[str, list[str]] = {}
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((root / folder).rglob("*.py")):
            hits = sorted(
                m
                for m in imported_modules(path, root)
                if any(m == f or m.startswith(f + ".") for f in forbidden)
            )
            if hits:
                bad[path.relative_to(root).as_posix()] = hits
    return bad


def test_layers_import_only_downwards() -> None:
    assert layer_violations() == {}, "sdk imports no stage; calibration not training; training not export"


def test_layer_guard_sees_lazy_relative_and_by_name_imports(tmp_path: Path) -> None:
    for folder in LAYER_PACKAGES:
        (tmp_path / folder).mkdir()
    (tmp_path / "sdk" / "sub").mkdir()
    (tmp_path / "sdk" / "cli").mkdir()
    (tmp_path / "sdk" / "ok.py").write_text("from .export_manifest import ExportManifest\nimport numpy\n")
    (tmp_path / "sdk" / "lazy.py").write_text("def f():\n    from facesdk.training import build_model\n")
    (tmp_path / "sdk" / "sub" / "rel.py").write_text("def f():\n    from ..export import merge\n")
    (tmp_path / "sdk" / "byname.py").write_text(
        "import importlib\nm = importlib.import_module('facesdk.calibration.quantize')\n"
        "T = {'torch': 'facesdk.training.torch_backend:TorchBackend'}\n"
    )
    (tmp_path / "sdk" / "cli" / "__init__.py").write_text(
        "COMMANDS = {'train': ('facesdk.training.cli', ())}\n"
    )
    (tmp_path / "calibration" / "q.py").write_text("from facesdk import training\n")
    (tmp_path / "training" / "t.py").write_text("def f():\n    import facesdk.export.merge\n")
    (tmp_path / "export" / "e.py").write_text("from facesdk.training import merging\n")
    assert layer_violations(tmp_path) == {
        "sdk/lazy.py": ["facesdk.training", "facesdk.training.build_model"],
        "sdk/sub/rel.py": ["facesdk.export", "facesdk.export.merge"],
        "sdk/byname.py": ["facesdk.calibration.quantize", "facesdk.training.torch_backend"],
        "sdk/cli/__init__.py": ["facesdk.training.cli"],  # a dispatch table naming a stage: no exception
        "calibration/q.py": ["facesdk.training"],
        "training/t.py": ["facesdk.export.merge"],
    }


def _session_makers(path: Path) -> list[int]:
    """Lines of ``path`` that call ``InferenceSession(...)`` (any receiver: ``ort.``, ``onnxruntime.``, bare)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "InferenceSession":
                lines.append(node.lineno)
    return lines


def test_only_sdk_backends_creates_onnx_runtime_sessions() -> None:
    """Every session comes from facesdk.backends, so every number times what the Analyzer runs."""
    home = ROOT / "sdk" / "backends"
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in _python_files()
        if home not in path.parents and (lines := _session_makers(path))
    }
    assert offenders == {}, (
        "create sessions with facesdk.backends.onnxruntime.create_session / OnnxFileBackend"
    )


def test_session_guard_sees_a_session(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import onnxruntime as ort\ndef f(p):\n    return ort.InferenceSession(p)\n")
    assert _session_makers(bad) == [3]


def test_an_unregistered_stage_command_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source tree used without pip install has no entry points: one error line, exit 2."""
    import facesdk.cli as cli

    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert cli.main(["export", "--help"]) == 2
    err = capsys.readouterr().err
    assert "'facesdk export' is not registered" in err and "pip install 'facesdk[export]'" in err


def test_the_wheel_ships_the_detector_and_the_dashboard_page_without_setuptools_warnings(
    tmp_path: Path,
) -> None:
    """A data-only folder inside a package must be a package of its own in pyproject.toml: setuptools
    warns that it will stop shipping one that is not (it still does today, so the file list alone
    would not show it)."""
    import zipfile

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "absent from the `packages` configuration" not in done.stdout + done.stderr
    [wheel] = tmp_path.glob("facesdk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "facesdk/faces/models/face_detection_yunet_2026may.onnx",
        "facesdk/faces/models/LICENSE",
        *(
            f"facesdk/audience/dashboard/static/{p.name}"
            for p in (ROOT / "sdk/audience/dashboard/static").iterdir()
        ),
    }
    assert shipped <= names, sorted(shipped - names)
