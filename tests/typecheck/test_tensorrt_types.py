"""TensorRT code checked without a GPU.

TensorRT 10: mypy type-checks the modules that call TensorRT against ``tensorrt-stubs``
(10.13, the newest stubs), installed beside the environment by ``.ci/run``
(``pip install --no-deps --target .ci/tensorrt-stubs tensorrt-stubs==10.13.0.35.1``; ``--no-deps``
because the stubs depend on the real ``tensorrt``, which needs NVIDIA's index and a GPU).
TensorRT 11: every ``trt.X`` / ``trt.X.Y`` name those modules use must be defined by the real
``tensorrt-cu13-bindings`` 11.4 module, listed in ``tensorrt11_names.json`` by
``make_tensorrt11_names.py`` (which imports the wheel against stand-in libraries).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
TENSORRT_MODULES = (
    "export/tensorrt_build.py",
    "export/tensorrt_check.py",
    "sdk/backends/tensorrt.py",
    "calibration/tensorrt_calibrator.py",
)
STUBS_VERSION = "10.13.0.35.1"
TENSORRT10_ONLY = {
    "BuilderFlag.FP16": "weak typing (--trt-typing weak), removed in 11; probed with hasattr first",
    "BuilderFlag.INT8": "weak typing (--trt-typing weak), removed in 11; probed with hasattr first",
    "IInt8EntropyCalibrator2": "implicit INT8 calibration (the TensorRT 10 calibrator), removed in 11",
}
"""Names the code may use although TensorRT 11 lacks them, each on a path only TensorRT 10 takes."""

# The stubs' own syntax errors (parameters named after the keyword ``in``, a required argument
# after defaults); fixed in a copy before mypy reads it. Each must still apply.
STUB_FIXES = (
    (r"([(,] *)in: ", r"\1in_: "),
    (r"power: Weights = None, channel_axis: int\)", "power: Weights = None, channel_axis: int = ...)"),
    # the stubs' docstring says Dims "behave like Python tuples", but the class declares no iteration
    (r"class Dims:\n", "class Dims:\n    def __iter__(self) -> typing.Iterator[int]: ...\n"),
)


def _stubs_dir() -> Path | None:
    found = Path(os.environ.get("FACESDK_TENSORRT_STUBS", ROOT / ".ci" / "tensorrt-stubs"))
    return found if (found / "tensorrt_bindings" / "tensorrt.pyi").is_file() else None


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tensorrt-stubs with its syntax errors fixed."""
    pytest.importorskip("mypy", reason="mypy is in the [dev] extra")
    source = _stubs_dir()
    if source is None:
        pytest.skip(
            "tensorrt-stubs not found: pip install --no-deps --target .ci/tensorrt-stubs "
            f"tensorrt-stubs=={STUBS_VERSION} (what .ci/run does), or set FACESDK_TENSORRT_STUBS"
        )
    out = tmp_path_factory.mktemp("trt-stubs")
    for name in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(source / name, out / name)
    pyi = out / "tensorrt_bindings" / "tensorrt.pyi"
    text = pyi.read_text()
    for pattern, repl in STUB_FIXES:
        text, count = re.subn(pattern, repl, text)
        assert count, f"stub fix {pattern!r} no longer applies: is tensorrt-stubs still {STUBS_VERSION}?"
    pyi.write_text(text)
    return out


def _mypy(stubs: Path, *files: str | Path) -> list[str]:
    """Run mypy with the TensorRT stubs; return its error lines."""
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(HERE / "mypy-tensorrt.ini")]
    cmd += ["--cache-dir", str(ROOT / ".mypy_cache"), *map(str, files)]
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "MYPYPATH": str(stubs)}, capture_output=True, text=True
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if ": error:" in line]


def test_tensorrt_10_paths_type_check_against_the_stubs(stubs: Path) -> None:
    errors = _mypy(stubs, *TENSORRT_MODULES)
    assert not errors, "\n".join(errors)


def test_the_type_check_fails_on_a_misspelt_or_removed_name(stubs: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt attribute, a removed API and a wrong call are reported."""
    source = (ROOT / "export/tensorrt_build.py").read_text()
    bad = tmp_path / "tensorrt_build_misspelt.py"
    bad.write_text(source.replace("trt.MemoryPoolType.WORKSPACE", "trt.MemoryPoolType.WORKSPCE"))
    snippet = tmp_path / "removed_api.py"
    snippet.write_text(
        "import tensorrt as trt\n"
        "def build(builder: trt.Builder) -> None:\n"
        "    builder.build_engine(None, None)\n"  # removed in TensorRT 10
        "    builder.create_network(0, 1)\n"  # one argument too many
    )
    errors = _mypy(stubs, bad, snippet)
    assert any("WORKSPCE" in e and "attr-defined" in e for e in errors), errors
    assert any("build_engine" in e for e in errors), errors
    assert any("create_network" in e and "call-arg" in e for e in errors), errors


# ------------------------------------------------------------------------------------- TensorRT 11
def _trt_names(path: Path) -> dict[str, int]:
    """``X`` and ``X.Y`` of every ``trt.X`` / ``trt.X.Y`` in a module, with a line number.

    ``trt`` is any name bound by ``import tensorrt as trt`` (or ``import tensorrt``).
    """
    tree = ast.parse(path.read_text())
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "tensorrt"
    }
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, inner = [node.attr], node.value
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id in aliases:
            chain.reverse()
            found.setdefault(".".join(chain[:2]), node.lineno)
    return found


def _missing_in_11(names: dict[str, int], defined: dict) -> list[str]:
    module, classes = set(defined["module"]), defined["classes"]
    missing = []
    for name in names:
        head, _, member = name.partition(".")
        if head.startswith("__"):
            continue  # __version__
        if head not in module or (member and head in classes and member not in classes[head]):
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def tensorrt11() -> dict:
    return json.loads((HERE / "tensorrt11_names.json").read_text())


def test_the_name_list_is_tensorrt_11(tensorrt11: dict) -> None:
    assert tensorrt11["version"].startswith("11.4.")
    assert {"Builder", "Runtime", "OnnxParser", "Logger"} <= set(tensorrt11["module"])
    assert "STRONGLY_TYPED" in tensorrt11["classes"]["NetworkDefinitionCreationFlag"]


@pytest.mark.parametrize("module", TENSORRT_MODULES)
def test_every_tensorrt_name_exists_in_tensorrt_11(module: str, tensorrt11: dict) -> None:
    names = _trt_names(ROOT / module)
    allowed = set(TENSORRT10_ONLY)
    missing = [n for n in _missing_in_11(names, tensorrt11) if not {n, n.partition(".")[0]} & allowed]
    assert not missing, f"{module}: not in TensorRT {tensorrt11['version']}: " + ", ".join(
        f"trt.{n} (line {names[n]})" for n in missing
    )


def test_tensorrt_10_only_names_are_really_gone_in_11(tensorrt11: dict) -> None:
    """The allowance list cannot rot: each name is used, and absent from TensorRT 11."""
    used = {n for m in TENSORRT_MODULES for n in _trt_names(ROOT / m)}
    assert set(TENSORRT10_ONLY) <= used
    assert sorted(_missing_in_11(dict.fromkeys(TENSORRT10_ONLY, 0), tensorrt11)) == sorted(TENSORRT10_ONLY)


def test_the_name_check_fails_on_a_misspelt_name(tmp_path: Path, tensorrt11: dict) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import tensorrt as trt\n"
        "def f():\n"
        "    return trt.Logger(trt.Logger.WARNNG), trt.TensorIOMode.INPUT, trt.Buildr\n"
    )
    assert sorted(_missing_in_11(_trt_names(bad), tensorrt11)) == ["Buildr", "Logger.WARNNG"]
