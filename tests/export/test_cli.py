"""``facesdk export build`` in-process: each bad input gives a non-zero exit and names its cause."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facesdk.cli import main
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.export import options as export_options


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(["export", "build", *args])
    except SystemExit as exc:  # argparse's usage errors (a count below 1, ...)
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_cli_builds(checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, err = _run(capsys, "--ckpt", str(checkpoints["dora"]), "--out", str(out), "--max-batch", "2")
    assert code == 0, err
    assert load_export_manifest(out).batch == (1, 2)


def _broken(checkpoints: dict[str, Path], tmp_path: Path, how: str) -> Path:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["lora"], ckpt)
    manifest = ckpt / "checkpoint.json"
    if how == "garbled":
        manifest.write_text("{ not json")
    elif how == "schema":
        data = json.loads(manifest.read_text())
        data["schema_version"] = 99
        manifest.write_text(json.dumps(data))
    elif how == "weights":
        weights = ckpt / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "missing_weights":
        (ckpt / "model.safetensors").unlink()
    return ckpt


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("garbled", "not valid JSON"),
        ("schema", "schema version 99"),
        ("weights", "sha256"),
        ("missing_weights", "is missing"),
    ],
)
def test_bad_checkpoint(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, cause: str
) -> None:
    ckpt = _broken(checkpoints, tmp_path, how)
    code, err = _run(capsys, "--ckpt", str(ckpt), "--out", str(tmp_path / "out"))
    assert code != 0 and cause in err, err
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "--ckpt", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert code != 0 and "does not exist" in err and "--ckpt" in err


@pytest.mark.parametrize(
    ("extra", "cause"),
    [
        (["--precision", "fp8"], "unknown precision"),
        (["--opset", "17"], "opset 17 is not supported"),
        (["--opset", "23"], "opset 23 is not supported"),
        (["--precision", "int8"], "--calib"),
        (["--max-batch", "0"], "--max-batch"),
    ],
)
def test_bad_options(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    cause: str,
) -> None:
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "out"), *extra)
    assert code != 0 and cause in err, err


def test_existing_out_needs_force(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "out"))
    assert code != 0 and "--force" in err


def test_engines_skipped_without_tensorrt(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--engines auto (default): the ONNX models are written and one log line says the engines were skipped."""
    monkeypatch.setattr(export_options, "tensorrt_unavailable_reason", lambda: "no CUDA device is visible")
    out = tmp_path / "o"
    with caplog.at_level("INFO", logger="facesdk.export"):
        code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(out), "--precision", "fp32,fp16",
                         "--max-batch", "2")  # fmt: skip
    assert code == 0, err
    assert set(load_export_manifest(out).models) == {"onnx-fp32", "onnx-fp16"}
    skipped = [r.getMessage() for r in caplog.records if "engines skipped" in r.getMessage()]
    assert len(skipped) == 1 and "TensorRT engines skipped (fp16)" in skipped[0] and "no CUDA" in skipped[0]


def test_engines_asked_for_without_tensorrt_is_an_error(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export_options, "tensorrt_unavailable_reason", lambda: "no CUDA device is visible")
    for precision in ("fp16", "fp32,fp16"):
        code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"),
                         "--precision", precision, "--engines", "tensorrt")  # fmt: skip
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "--engines tensorrt" in err and "no CUDA device" in err, err
    assert not (tmp_path / "o").exists()
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"),
                     "--precision", "fp16", "--engines", "tensorrt", "--onnx-only")  # fmt: skip
    assert code == 2 and "contradict" in err, err


def test_engine_needs_tensorrt_here(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if export_options.tensorrt_unavailable_reason() is None:
        pytest.skip("this machine can build TensorRT engines")
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"),
                     "--precision", "fp16", "--engines", "tensorrt")  # fmt: skip
    assert code == 2 and "--onnx-only" in err, err


def test_int8_without_quantizer(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export_options, "QUANTIZER", "facesdk.calibration.no_such_module")
    (tmp_path / "calib").mkdir()
    args = ["--precision", "int8", "--calib", str(tmp_path / "calib"), "--onnx-only"]
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"), *args)
    assert code != 0 and "quantize_export" in err, err


def test_int8_calib_dir_missing(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--precision", "int8", "--calib", str(tmp_path / "nope"), "--onnx-only"]
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"), *args)
    assert code != 0 and "calibration directory" in err, err


def test_python_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facesdk.export", "build", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "--ckpt" in result.stdout and "--precision" in result.stdout


def test_bad_int8_option(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(
        capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"), "--int8-option", "oops"
    )
    assert code != 0 and "KEY=VALUE" in err, err
