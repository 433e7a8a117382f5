"""``backend="auto"`` on a CPU: only checked paths, the fastest of them, cached and verified."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.auto import choice as auto_choice
from facesdk.auto.choice import CpuPath, approve_paths, candidate_paths, choose_cpu_path
from facesdk.contract.export_manifest import ModelEntry, load_export_manifest
from facesdk.errors import ConfigError
from facesdk.model_loader import resolve_model

CPU = {
    "model": "Test CPU",
    "flags": ["avx2", "avx512_bf16"],
    "runtimes": {"onnxruntime": "1", "openvino": "2"},
}


def _record(agree: int, n: int = 400) -> dict[str, Any]:
    """An export-style agreement record: ``agree`` of ``n`` crops on every task."""
    from facesdk.bench import wilson_lower_bound

    tasks = ("age", "gender", "emotion")
    bound = wilson_lower_bound(agree, n)
    return {"agreement": dict.fromkeys(tasks, agree / n), "agreement_lower_bound": dict.fromkeys(tasks, bound),
            "samples": n, "passed": bound >= 0.98}  # fmt: skip


def _with_records(manifest: Any, **records: dict[str, Any]) -> Any:
    """``manifest`` with ``extra.openvino_agreement`` records of onnx-fp32 (``bf16=...``)."""
    fp32 = manifest.models["onnx-fp32"]
    return replace(manifest, models={"onnx-fp32": replace(fp32, extra={"openvino_agreement": records})})


def _fakes(ms: dict[str, float]) -> tuple[Any, list[str]]:
    """A timer with fixed ms per face (batch 1 and 8) per path, and the names it timed."""
    timed: list[str] = []

    def timer(directory: Path, manifest: object, paths: list[CpuPath], threads: object) -> dict[str, Any]:
        timed.extend(p.name for p in paths)
        return {p.name: {"1": ms[p.name], "8": 8 * ms[p.name]} for p in paths}

    return timer, timed


MS = {"onnxruntime fp32": 10.0, "openvino fp32": 9.5, "openvino bf16": 2.0}


def _choose(export: Path, tmp_path: Path, timer: Any, **kw: Any) -> auto_choice.Choice:
    manifest = kw.pop("manifest", None) or _with_records(load_export_manifest(export), bf16=_record(400))
    kw.setdefault("cpu", CPU)
    return choose_cpu_path(export, manifest, cache_dir=tmp_path, timer=timer, **kw)


def test_candidates_follow_runtimes_cpu_and_models(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    names = [p.name for p in candidate_paths(manifest, CPU)]
    assert names == ["onnxruntime fp32", "openvino fp32", "openvino bf16"]
    no_bf16 = {**CPU, "flags": ["avx2"]}
    assert [p.name for p in candidate_paths(manifest, no_bf16)] == ["onnxruntime fp32", "openvino fp32"]
    no_ov = {**CPU, "runtimes": {"onnxruntime": "1", "openvino": None}}
    assert [p.name for p in candidate_paths(manifest, no_ov)] == ["onnxruntime fp32"]


def test_picks_the_fastest_approved_path(tiny_export: Path, tmp_path: Path) -> None:
    timer, timed = _fakes(MS)
    choice = _choose(tiny_export, tmp_path, timer)
    assert choice.path.name == "openvino bf16" and not choice.cached
    assert choice.options["precision_hint"] == "bf16" and choice.options["batch_buckets"] == (1, 4)
    assert "0.20x of onnxruntime fp32" in choice.reason
    assert sorted(timed) == sorted(MS)


def test_a_path_must_win_by_the_margin(tiny_export: Path, tmp_path: Path) -> None:
    """A 5% win is noise: ONNX Runtime FP32 stays (OpenVINO FP32 at 0.95x, BF16 at 0.93x of it)."""
    assert auto_choice.MARGIN == 0.10
    timer, _ = _fakes({"onnxruntime fp32": 10.0, "openvino fp32": 9.5, "openvino bf16": 9.3})
    assert _choose(tiny_export, tmp_path / "a", timer).path.name == "onnxruntime fp32"
    # OpenVINO FP32 12% faster replaces ORT; BF16 then has to beat OpenVINO FP32 by 10%, not ORT
    timer, _ = _fakes({"onnxruntime fp32": 10.0, "openvino fp32": 8.8, "openvino bf16": 8.5})
    assert _choose(tiny_export, tmp_path / "b", timer).path.name == "openvino fp32"
    timer, _ = _fakes({"onnxruntime fp32": 10.0, "openvino fp32": 9.9, "openvino bf16": 8.9})
    assert _choose(tiny_export, tmp_path / "c", timer).path.name == "openvino bf16"


def test_memory_raises_the_margin(tiny_export: Path, tmp_path: Path) -> None:
    """A path holding 85 MiB more than the one it replaces needs 27% of speed, not 10%: OpenVINO FP32
    at 0.85x stays out (as on the AVX2 EPYC), BF16 at 0.30x comes in; with equal memory 0.85x is kept;
    a slower path that holds less memory is still not chosen."""
    assert auto_choice.MEMORY_MARGIN_PER_100_MIB == 0.20

    def timer_with(ms: dict[str, float], peaks: dict[str, float]) -> Any:
        def timer(directory: Path, manifest: object, paths: list[CpuPath], threads: object) -> dict[str, Any]:
            return {p.name: {"1": ms[p.name], "8": 8 * ms[p.name], "peak_mib": peaks[p.name]} for p in paths}

        return timer

    peaks = {"onnxruntime fp32": 130.0, "openvino fp32": 215.0, "openvino bf16": 215.0}
    ms = {"onnxruntime fp32": 10.0, "openvino fp32": 8.5, "openvino bf16": 9.0}

    def chosen(sub: str, times: dict[str, float], held: dict[str, float]) -> str:
        return _choose(tiny_export, tmp_path / sub, timer_with(times, held)).path.name

    choice = _choose(tiny_export, tmp_path / "a", timer_with(ms, peaks))
    assert choice.path.name == "onnxruntime fp32"
    assert "20% more per 100 MiB more memory" in choice.reason and "peak 130 MiB while timed" in choice.reason
    assert "openvino fp32 0.85x, peak 215 MiB while timed" in choice.reason
    assert chosen("b", {**ms, "openvino bf16": 3.0}, peaks) == "openvino bf16"
    assert chosen("c", ms, dict.fromkeys(peaks, 130.0)) == "openvino fp32"
    # +85 MiB needs 0.73x: 0.74x stays out, 0.72x comes in
    assert chosen("d", {**ms, "openvino fp32": 7.4}, peaks) == "onnxruntime fp32"
    assert chosen("e", {**ms, "openvino fp32": 7.2}, peaks) == "openvino fp32"
    assert chosen("f", {**ms, "openvino fp32": 10.5}, {**peaks, "openvino fp32": 100.0}) == "onnxruntime fp32"


def test_memory_is_weighed_at_the_batch_a_stream_sends() -> None:
    """ONNX Runtime (one crop per call) at its batch-1 row, OpenVINO (bucket 4) at its batch-8 row,
    which compiles bucket 4; the largest row where the batch is unknown or above every row."""
    assert auto_choice.peak_in_use({1: 130.0, 8: 250.0}, 1) == 130.0
    assert auto_choice.peak_in_use({1: 216.0, 8: 313.0}, 4) == 313.0
    assert auto_choice.peak_in_use({1: 130.0, 8: 250.0}, None) == 250.0
    assert auto_choice.peak_in_use({1: 130.0}, 4) == 130.0


def test_time_paths_weighs_each_path_where_it_runs(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real timer's bookkeeping, the child processes replaced by rows with known peaks."""
    from facesdk.bench import timing

    peaks = {("onnxruntime fp32", 1): 130.0, ("onnxruntime fp32", 8): 250.0,
             ("openvino fp32", 1): 216.0, ("openvino fp32", 8): 313.0}  # fmt: skip
    streams = {"onnxruntime fp32": 1, "openvino fp32": 4}

    def rounds(rows: list[dict[str, Any]], run: Any, n: int) -> list[dict[str, Any]]:
        return [{**r, "round": i, "times_ms": [float(r["batch"])], "peak_rss_mib": peaks[(r["label"], r["batch"])],
                 "stream_batch": streams[r["label"]]} for i in range(n) for r in rows]  # fmt: skip

    monkeypatch.setattr(timing, "alternate_rounds", rounds)
    manifest = load_export_manifest(tiny_export)
    paths = [CpuPath("onnxruntime", "onnx-fp32"), CpuPath("openvino", "onnx-fp32", "f32")]
    got = auto_choice.time_paths(tiny_export, manifest, paths, 1)
    assert got["onnxruntime fp32"]["peak_mib"] == 130.0 and got["openvino fp32"]["peak_mib"] == 313.0
    assert got["openvino fp32"]["stream_batch"] == 4 and got["onnxruntime fp32"]["1"] == 1.0


def test_required_ratio() -> None:
    assert auto_choice.required_ratio({}, {}) == pytest.approx(0.90)
    assert auto_choice.required_ratio({"peak_mib": 300.0}, {"peak_mib": 200.0}) == pytest.approx(0.70)
    assert auto_choice.required_ratio({"peak_mib": 100.0}, {"peak_mib": 200.0}) == pytest.approx(0.90)
    assert auto_choice.required_ratio({"peak_mib": 300.0}, {}) == pytest.approx(0.90)


def test_approval_needs_a_wilson_bound_of_098(tiny_export: Path, tmp_path: Path) -> None:
    """390 of 400 agree (0.975) or 198 of 200 (0.99 point, bound 0.964): not approved; 399 of 400 is."""
    manifest = load_export_manifest(tiny_export)
    timer, timed = _fakes(MS)
    unflagged = {k: v for k, v in _record(198, 200).items() if k != "passed"}  # the bound alone decides
    for i, record in enumerate((_record(390), unflagged)):
        choice = _choose(tiny_export, tmp_path / str(i), timer, manifest=_with_records(manifest, bf16=record))
        assert choice.path.name == "onnxruntime fp32" and "openvino bf16" not in timed
        assert (
            "openvino bf16: export.json openvino_agreement of onnx-fp32: Wilson lower bound" in choice.reason
        )
    point_only = {"agreement": {"age": 1.0, "gender": 1.0, "emotion": 1.0}, "samples": 100, "passed": True}
    choice = _choose(tiny_export, tmp_path / "p", timer, manifest=_with_records(manifest, bf16=point_only))
    assert choice.path.name == "onnxruntime fp32" and "no Wilson lower bound" in choice.reason
    fp32 = manifest.models["onnx-fp32"]
    legacy = replace(manifest, models={"onnx-fp32": replace(fp32, extra={"openvino_bf16": point_only})})
    assert _choose(tiny_export, tmp_path / "l", timer, manifest=legacy).path.name == "onnxruntime fp32"
    good = _with_records(manifest, bf16=_record(399))
    assert _choose(tiny_export, tmp_path / "g", timer, manifest=good).path.name == "openvino bf16"


def test_int8_follows_the_gate_recorded_in_the_export(tiny_export: Path, tmp_path: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    fp32 = manifest.models["onnx-fp32"]
    ms = {**MS, "openvino bf16": 20.0, "onnxruntime int8": 1.0}
    for passed, bound, expected in ((False, 0.957, "onnxruntime fp32"), (True, 0.985, "onnxruntime int8")):
        gate = {"passed": passed, "agreement": dict.fromkeys(("age", "gender", "emotion"), 0.995),
                "agreement_lower_bound": {"age": bound, "gender": 0.99, "emotion": 0.99}}  # fmt: skip
        int8 = ModelEntry(replace(fp32.file, sha256="1" * 64), "onnx", "int8", extra={"calibration": gate})
        with_int8 = replace(manifest, models={**manifest.models, "onnx-int8": int8})
        timer, timed = _fakes(ms)
        choice = _choose(tiny_export, tmp_path / str(passed), timer, manifest=with_int8,
                         cpu={**CPU, "runtimes": {"onnxruntime": "1", "openvino": None}})  # fmt: skip
        assert choice.path.name == expected
        assert ("onnxruntime int8" in timed) is passed


def test_cache_key_covers_every_file_the_cpu_cores_and_threads(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another INT8 file, another affinity, other thread settings: measured again, never reused."""
    manifest = load_export_manifest(tiny_export)
    fp32 = manifest.models["onnx-fp32"]

    def with_int8(sha: str) -> Any:
        gate = {"passed": True, "agreement_lower_bound": dict.fromkeys(("age", "gender", "emotion"), 0.99)}
        int8 = ModelEntry(replace(fp32.file, sha256=sha), "onnx", "int8", extra={"calibration": gate})
        return replace(manifest, models={**manifest.models, "onnx-int8": int8})

    timer, _ = _fakes({**MS, "onnxruntime int8": 1.0})
    cpu = {**CPU, "runtimes": {"onnxruntime": "1", "openvino": None}}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert not _choose(tiny_export, tmp_path, timer, manifest=with_int8("1" * 64), cpu=cpu).cached
    assert _choose(tiny_export, tmp_path, timer, manifest=with_int8("1" * 64), cpu=cpu).cached
    assert not _choose(tiny_export, tmp_path, timer, manifest=with_int8("2" * 64), cpu=cpu).cached
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert not _choose(tiny_export, tmp_path, timer, manifest=with_int8("1" * 64), cpu=cpu).cached
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert not _choose(tiny_export, tmp_path, timer, manifest=with_int8("1" * 64), cpu=cpu).cached
    assert not _choose(tiny_export, tmp_path, timer, manifest=with_int8("1" * 64), cpu=cpu, threads=1).cached
    assert _choose(tiny_export, tmp_path, timer, manifest=with_int8("1" * 64), cpu=cpu, threads=1).cached


def test_concurrent_first_runs_time_once(tiny_export: Path, tmp_path: Path) -> None:
    """Two first runs started together: one times, the other waits for its lock and reads its choice."""
    entered = threading.Semaphore(0)
    timed: list[str] = []

    def slow_timer(
        directory: Path, manifest: object, paths: list[CpuPath], threads: object
    ) -> dict[str, Any]:
        timed.append(threading.current_thread().name)
        entered.release()
        entered.acquire(timeout=2.0)  # without the lock the other run arrives here meanwhile
        return {p.name: {"1": MS[p.name], "8": 8 * MS[p.name]} for p in paths}

    start = threading.Barrier(2)
    results: dict[str, auto_choice.Choice] = {}

    def run(name: str) -> None:
        start.wait(timeout=10)
        results[name] = _choose(tiny_export, tmp_path, slow_timer)

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(timed) == 1
    assert sorted(c.cached for c in results.values()) == [False, True]
    assert {c.path.name for c in results.values()} == {"openvino bf16"}


def test_a_lean_install_selects_the_same_approved_paths(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without scikit-image the choice rests on the same records (nothing is measured on lfw)."""
    timer, _ = _fakes(MS)
    full = _choose(tiny_export, tmp_path / "full", timer)
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    lean = _choose(tiny_export, tmp_path / "lean", timer)
    assert lean.path == full.path and lean.path.name == "openvino bf16"


def _crop_folder(root: Path, count: int) -> Path:
    import cv2

    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(root / f"{i:04d}.png"), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
    return root


def test_approve_records_a_path_the_export_could_not_check(tiny_export: Path, tmp_path: Path) -> None:
    """BF16 without an export record: not chosen until approve checks it on >= 378 crops."""
    from facesdk.auto.approval import FaceCrops
    from facesdk.backends.onnxruntime import OnnxRuntimeBackend

    manifest = load_export_manifest(tiny_export)
    timer, _ = _fakes(MS)
    before = _choose(tiny_export, tmp_path / "cache", timer, manifest=manifest)
    assert before.path.name == "onnxruntime fp32" and "openvino bf16: no agreement record" in before.reason
    few = FaceCrops(_crop_folder(tmp_path / "few", 100), manifest)
    with pytest.raises(ConfigError, match="at least 378 face crops"):
        approve_paths(tiny_export, manifest, few, cache_dir=tmp_path / "cache", cpu=CPU)
    crops = FaceCrops(_crop_folder(tmp_path / "crops", 378), manifest)
    made: list[str] = []

    def make(path: CpuPath) -> OnnxRuntimeBackend:  # stands in for OpenVINO: the same arithmetic
        made.append(path.name)
        return OnnxRuntimeBackend(manifest, tiny_export / "model.onnx")

    records, failed = approve_paths(
        tiny_export, manifest, crops, cache_dir=tmp_path / "cache", cpu=CPU, make=make
    )
    assert made == ["onnxruntime fp32", "openvino bf16"] and not failed
    assert records["openvino bf16"]["samples"] == 378 and records["openvino bf16"]["passed"]
    after = _choose(tiny_export, tmp_path / "cache", timer, manifest=manifest)
    assert after.path.name == "openvino bf16" and not after.cached


def test_select_cli_says_what_is_wrong_in_one_line(
    tiny_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_export, damaged)
    with open(damaged / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")
    cases = {
        "missing": ([str(tmp_path / "nowhere")], "does not exist"),
        "lone onnx": ([str(tiny_export / "model.onnx")], "is a file"),
        "damaged": ([str(damaged)], "sha256"),
        "approve missing crops": (["approve", "--model", str(tiny_export), "--crops", str(tmp_path / "no")],
                                  "is not a folder"),
    }  # fmt: skip
    for name, (argv, words) in cases.items():
        assert auto_choice.main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("python -m facesdk.auto: error: ") and words in err and "\n" not in err, (
            name,
            err,
        )


def test_damaged_or_foreign_cache_is_ignored_with_a_warning(
    tiny_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timer, _ = _fakes(MS)
    manifest = _with_records(load_export_manifest(tiny_export), bf16=_record(390))  # fails: bound < 0.98
    _choose(tiny_export, tmp_path, timer, manifest=manifest)
    (cache,) = tmp_path.glob("*.json")
    data = json.loads(cache.read_text())
    # a hand-edited choice of a path that failed: the digest no longer matches
    cache.write_text(json.dumps({**data, "choice": "openvino bf16"}))
    with caplog.at_level(logging.WARNING, logger="facesdk"):
        choice = _choose(tiny_export, tmp_path, timer, manifest=manifest)
    assert choice.path.name == "onnxruntime fp32" and not choice.cached
    assert "digest does not match" in caplog.text
    # the same edit with a recomputed digest: still only paths approved here can be chosen
    body = {k: v for k, v in json.loads(cache.read_text()).items() if k != "digest"}
    body["choice"] = "openvino bf16"
    cache.write_text(json.dumps({**body, "digest": auto_choice.digest(body)}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facesdk"):
        assert _choose(tiny_export, tmp_path, timer, manifest=manifest).path.name == "onnxruntime fp32"
    assert "not approved here" in caplog.text
    cache.write_text("{ truncated")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facesdk"):
        assert not _choose(tiny_export, tmp_path, timer, manifest=manifest).cached
    assert "cannot be read" in caplog.text


def test_explicit_backend_precision_or_options_win(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("auto selection ran although the user chose")

    monkeypatch.setattr(auto_choice, "choose_cpu_path", refuse)
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
    """The real timer: facesdk.bench's worker in child processes, two alternating rounds."""
    from facesdk.bench import timing

    calls: list[dict[str, Any]] = []
    real = timing.run_in_child

    def spy(module: str, row: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        calls.append(row)
        return real(module, row, timeout_s)

    monkeypatch.setattr(timing, "run_in_child", spy)
    monkeypatch.setenv("FACESDK_HOME", str(tmp_path))
    resolved = resolve_model(tiny_export, "auto")
    assert resolved.backend in ("onnxruntime", "openvino") and resolved.reason
    assert len(list((tmp_path / "auto").glob("*.json"))) == 1
    orders = [[r["label"] for r in calls[i : i + len(calls) // 2]] for i in (0, len(calls) // 2)]
    assert orders[1] == orders[0][::-1] and {r["batch"] for r in calls} == {1, 8}
    assert all(r["batch_buckets"] == [1, 4] for r in calls if r["runtime"] == "openvino")
    again = resolve_model(tiny_export, "auto")
    assert again.reason.startswith("cached choice") and again.backend == resolved.backend
    assert len(calls) == 2 * len(orders[0])


def test_a_path_that_cannot_run_is_left_out(tiny_export: Path, tmp_path: Path) -> None:
    timer, _ = _fakes(MS)

    def broken(directory: Path, manifest: object, paths: list[CpuPath], threads: object) -> dict[str, Any]:
        out = timer(directory, manifest, paths, threads)
        out["openvino bf16"] = {"error": "no bf16 here"}
        return out

    choice = _choose(tiny_export, tmp_path, broken)
    assert choice.path.name == "onnxruntime fp32"
    assert "openvino bf16: could not run: no bf16 here" in choice.reason


def test_reading_the_cpu_signature_does_not_import_openvino() -> None:
    """Importing OpenVINO costs ~20 MiB resident, paid even where auto then runs ONNX Runtime."""
    code = (
        "import sys; from facesdk.auto.choice import cpu_signature; sig = cpu_signature(); "
        "print(sig['runtimes']['openvino'] is not None, 'openvino' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1] == "False"


def test_approve_reads_the_exports_calibration_set(tiny_export: Path, tmp_path: Path) -> None:
    """A calibration set's shards are read in chunks, hash-verified; another preprocessing is refused."""
    from facesdk.auto.approval import FaceCrops
    from facesdk.contract.manifest_io import FileEntry
    from facesdk.errors import IntegrityError, ManifestError

    manifest = load_export_manifest(tiny_export)
    h, w = manifest.preprocess.input_size
    calib = tmp_path / "calib"
    calib.mkdir()
    crops = np.random.default_rng(0).standard_normal((400, 3, h, w)).astype(np.float32)
    np.save(calib / "crops-00000.npy", crops)
    shard = {"crops": FileEntry.of(calib, "crops-00000.npy").to_json(), "count": 400}
    spec = manifest.preprocess.to_json()
    (calib / "calib.json").write_text(json.dumps({"preprocess": spec, "shards": [shard]}))
    read = FaceCrops(calib, manifest)
    assert read.count == 400 and "calibration set calib" in read.description
    np.testing.assert_array_equal(np.concatenate(list(read.batches())), crops)
    other = {**spec, "mean": [0.0, 0.0, 0.0]}
    (calib / "calib.json").write_text(json.dumps({"preprocess": other, "shards": [shard]}))
    with pytest.raises(ManifestError, match="another preprocessing"):
        FaceCrops(calib, manifest)
    (calib / "calib.json").write_text(json.dumps({"preprocess": spec, "shards": [shard]}))
    np.save(calib / "crops-00000.npy", crops[::-1])  # same size, other bytes
    with pytest.raises(IntegrityError):
        FaceCrops(calib, manifest)
