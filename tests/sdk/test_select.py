"""``backend="auto"`` on a CPU: only checked paths, the fastest of them, cached and verified."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.backends import select
from facesdk.backends.select import CpuPath, candidate_paths, choose_cpu_path
from facesdk.export_manifest import ModelEntry, load_export_manifest
from facesdk.model_loader import resolve_model

CPU = {
    "model": "Test CPU",
    "flags": ["avx2", "avx512_bf16"],
    "runtimes": {"onnxruntime": "1", "openvino": "2"},
}
N = 50


def _logits(flipped: int = 0) -> dict[str, np.ndarray]:
    """Fixed logits per task; ``flipped`` rows get another top-1 on every task."""
    rng = np.random.default_rng(0)
    out = {}
    for task, classes in (("age", 9), ("gender", 2), ("emotion", 7)):
        x = rng.standard_normal((N, classes)).astype(np.float32)
        for i in range(flipped):
            x[i] = np.roll(x[i], 1)
            if x[i].argmax() == np.roll(x[i], -1).argmax():
                x[i, (x[i].argmax() + 1) % classes] = x[i].max() + 1
        out[task] = x
    return out


class FakeBackend:
    name = "fake"
    max_batch = 64

    def __init__(self, logits: dict[str, np.ndarray]) -> None:
        self.logits = logits

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[: len(batch)] for k, v in self.logits.items()}

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _fakes(flips: dict[str, int], ms: dict[str, float]) -> tuple[Any, Any, list[str]]:
    """A backend maker whose paths disagree with FP32 on ``flips[name]`` rows, and a timer."""
    timed: list[str] = []

    def make(path: CpuPath) -> FakeBackend:
        return FakeBackend(_logits(flips.get(path.name, 0)))

    def timer(path: CpuPath, backend: object, manifest: object) -> dict[str, float]:
        timed.append(path.name)
        return {"1": ms[path.name], "8": 8 * ms[path.name]}

    return make, timer, timed


MS = {"onnxruntime fp32": 10.0, "openvino fp32": 8.0, "openvino bf16": 2.0}
CROPS = np.zeros((N, 3, 32, 32), np.float32)


def _choose(export: Path, tmp_path: Path, make: Any, timer: Any, **kw: Any) -> select.Choice:
    manifest = kw.pop("manifest", None) or load_export_manifest(export)
    kw.setdefault("cpu", CPU)
    return choose_cpu_path(export, manifest, cache_dir=tmp_path, make=make, timer=timer, crops=CROPS, **kw)


def test_candidates_follow_runtimes_cpu_and_models(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    names = [p.name for p in candidate_paths(manifest, CPU)]
    assert names == ["onnxruntime fp32", "openvino fp32", "openvino bf16"]
    no_bf16 = {**CPU, "flags": ["avx2"]}
    assert [p.name for p in candidate_paths(manifest, no_bf16)] == ["onnxruntime fp32", "openvino fp32"]
    no_ov = {**CPU, "runtimes": {"onnxruntime": "1", "openvino": None}}
    assert [p.name for p in candidate_paths(manifest, no_ov)] == ["onnxruntime fp32"]


def test_picks_the_fastest_path_that_passed_the_agreement_check(tiny_export: Path, tmp_path: Path) -> None:
    make, timer, timed = _fakes({"openvino bf16": 0}, MS)
    choice = _choose(tiny_export, tmp_path, make, timer)
    assert choice.path.name == "openvino bf16" and not choice.cached
    assert choice.options["precision_hint"] == "bf16" and choice.options["batch_buckets"] == (1, 2, 4, 8)
    assert "0.20x of onnxruntime fp32" in choice.reason
    assert sorted(timed) == sorted(MS)


def test_never_picks_a_path_that_failed_the_check(tiny_export: Path, tmp_path: Path) -> None:
    make, timer, timed = _fakes({"openvino bf16": 2}, MS)  # 48/50 = 0.96 < 0.98
    choice = _choose(tiny_export, tmp_path, make, timer)
    assert choice.path.name == "openvino fp32"
    assert "openvino bf16" not in timed
    assert "openvino bf16: agreement" in choice.reason
    make, timer, _ = _fakes({"openvino bf16": 1}, MS)  # 49/50 = 0.98 passes
    assert _choose(tiny_export, tmp_path / "other", make, timer).path.name == "openvino bf16"


def test_int8_follows_the_gate_recorded_in_the_export(tiny_export: Path, tmp_path: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    fp32 = manifest.models["onnx-fp32"]
    ms = {**MS, "onnxruntime int8": 1.0, "openvino int8": 9.0, "openvino int8+bf16": 9.0}
    for passed, agreement, expected in ((False, 0.95, "openvino bf16"), (True, 0.99, "onnxruntime int8")):
        gate = {"passed": passed, "agreement": {"age": agreement, "gender": 1.0, "emotion": 1.0}}
        int8 = ModelEntry(fp32.file, "onnx", "int8", extra={"calibration": gate})
        with_int8 = replace(manifest, models={**manifest.models, "onnx-int8": int8})
        make, timer, timed = _fakes({}, ms)
        choice = _choose(tiny_export, tmp_path / str(passed), make, timer, manifest=with_int8)
        assert choice.path.name == expected
        assert ("onnxruntime int8" in timed) is passed


def test_export_record_of_bf16_is_used_without_measuring(tiny_export: Path, tmp_path: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    fp32 = manifest.models["onnx-fp32"]
    record = {"agreement": {"age": 0.9, "gender": 1.0, "emotion": 1.0}, "samples": 64}
    marked = replace(manifest, models={"onnx-fp32": replace(fp32, extra={"openvino_bf16": record})})
    make, timer, _ = _fakes({"openvino bf16": 0}, MS)  # would pass if it were measured here
    choice = _choose(tiny_export, tmp_path, make, timer, manifest=marked)
    assert choice.path.name == "openvino fp32"
    assert "export.json openvino_bf16" in choice.reason


def test_cached_choice_is_reused_and_invalidated(tiny_export: Path, tmp_path: Path) -> None:
    make, timer, timed = _fakes({}, MS)
    first = _choose(tiny_export, tmp_path, make, timer)
    assert not first.cached and len(list(tmp_path.glob("*.json"))) == 1
    timed.clear()
    again = _choose(tiny_export, tmp_path, make, timer)
    assert again.cached and again.path == first.path and timed == []
    other_cpu = {**CPU, "model": "Another CPU"}
    assert not _choose(tiny_export, tmp_path, make, timer, cpu=other_cpu).cached
    manifest = load_export_manifest(tiny_export)
    fp32 = manifest.models["onnx-fp32"]
    rehashed = replace(
        manifest, models={"onnx-fp32": replace(fp32, file=replace(fp32.file, sha256="0" * 64))}
    )
    assert not _choose(tiny_export, tmp_path, make, timer, manifest=rehashed).cached
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_damaged_or_foreign_cache_is_ignored_with_a_warning(
    tiny_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make, timer, _ = _fakes({"openvino bf16": 2}, MS)
    _choose(tiny_export, tmp_path, make, timer)
    (cache,) = tmp_path.glob("*.json")
    data = json.loads(cache.read_text())
    # a hand-edited choice of a path that failed: the digest no longer matches
    cache.write_text(json.dumps({**data, "choice": "openvino bf16"}))
    with caplog.at_level(logging.WARNING, logger="facesdk"):
        choice = _choose(tiny_export, tmp_path, make, timer)
    assert choice.path.name == "openvino fp32" and not choice.cached
    assert "digest does not match" in caplog.text
    # the same edit with a recomputed digest: still only paths approved here can be chosen
    body = {k: v for k, v in json.loads(cache.read_text()).items() if k != "digest"}
    body["choice"] = "openvino bf16"
    cache.write_text(json.dumps({**body, "digest": select._digest(body)}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facesdk"):
        assert _choose(tiny_export, tmp_path, make, timer).path.name == "openvino fp32"
    assert "not approved here" in caplog.text
    cache.write_text("{ truncated")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facesdk"):
        assert not _choose(tiny_export, tmp_path, make, timer).cached
    assert "cannot be read" in caplog.text


def test_explicit_backend_precision_or_options_win(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("auto selection ran although the user chose")

    monkeypatch.setattr(select, "choose_cpu_path", refuse)
    assert resolve_model(tiny_export, "onnxruntime").backend == "onnxruntime"
    assert resolve_model(tiny_export, "openvino").options == {}
    assert resolve_model(tiny_export, "auto", precision="fp32").backend == "onnxruntime"
    assert resolve_model(tiny_export, "auto", auto_select=False).backend == "onnxruntime"
    from facesdk import Analyzer

    with Analyzer(tiny_export, detector=object.__new__(type("D", (), {"detect": None})),
                  intra_op_threads=1) as analyzer:  # fmt: skip
        assert analyzer.backend.name == "onnxruntime"


def test_auto_measures_for_real_and_caches_under_facesdk_home(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESDK_HOME", str(tmp_path))
    resolved = resolve_model(tiny_export, "auto")
    assert resolved.backend in ("onnxruntime", "openvino") and resolved.reason
    assert len(list((tmp_path / "auto").glob("*.json"))) == 1
    again = resolve_model(tiny_export, "auto")
    assert again.reason.startswith("cached choice") and again.backend == resolved.backend


def test_a_path_that_cannot_run_is_left_out(tiny_export: Path, tmp_path: Path) -> None:
    from facesdk.errors import BackendError

    make, timer, _ = _fakes({}, MS)

    def broken(path: CpuPath) -> FakeBackend:
        if path.name == "openvino bf16":
            raise BackendError("no bf16 here")
        return make(path)

    choice = _choose(tiny_export, tmp_path, broken, timer)
    assert choice.path.name == "openvino fp32"
    assert "openvino bf16: could not run: no bf16 here" in choice.reason
