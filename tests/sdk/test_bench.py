"""facesdk.bench: the Wilson arithmetic against hand-computed values, comparisons with known
disagreements, the timing summary's per-round ratios, and ``facesdk bench`` on a tiny export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import facesdk.bench.cli as bench_cli
from facesdk.backends.onnxruntime import OnnxRuntimeBackend
from facesdk.bench import (
    compare_arrays,
    compare_outputs,
    cpu_info,
    machine_info,
    min_crops_for,
    summarise,
    wilson_lower_bound,
)
from facesdk.errors import ConfigError


@pytest.mark.parametrize(
    ("agree", "n", "expected"),
    [
        (64, 64, 0.943376),  # n / (n + z^2): 64 / 67.8415
        (45, 50, 0.786397),  # p=0.9: (0.938415 - 0.091601) / 1.076829
        (0, 10, 0.0),
        (5, 10, 0.236593),  # p=0.5: (0.692079 - 0.364583) / 1.384146
    ],
)
def test_wilson_lower_bound_matches_hand_computed_values(agree: int, n: int, expected: float) -> None:
    assert wilson_lower_bound(agree, n) == pytest.approx(expected, abs=2e-6)


def test_min_crops_for_is_the_smallest_reachable_count() -> None:
    n = min_crops_for(0.98)
    assert n == 189
    assert wilson_lower_bound(n, n) >= 0.98 > wilson_lower_bound(n - 1, n - 1)
    with pytest.raises(ConfigError):
        wilson_lower_bound(11, 10)


class _Logits:
    """A backend whose class is the sign pattern of the first pixel (reference), optionally flipped."""

    name = "fake"
    max_batch = 3

    def __init__(self, flip: np.ndarray | None = None) -> None:
        self.flip = flip

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        first = batch[:, 0, 0, 0]
        logits = np.stack([first, -first], axis=1).astype(np.float32)
        if self.flip is not None:
            hit = self.flip[np.round(batch[:, 0, 0, 1]).astype(int)]
            logits[hit] = logits[hit][:, ::-1]
        return {"gender": logits, "age": np.stack([first, first * 0], axis=1)}

    def close(self) -> None:
        pass


def _inputs(n: int) -> np.ndarray:
    x = np.zeros((n, 3, 2, 2), np.float32)
    x[:, 0, 0, 0] = np.where(np.arange(n) % 2, 1.5, -2.0)
    x[:, 0, 0, 1] = np.arange(n)  # the row index, so the candidate flips known rows
    return x


def test_compare_outputs_counts_known_disagreements() -> None:
    n = 200
    flip = np.zeros(n, bool)
    flip[[3, 50, 51, 120]] = True
    result = compare_outputs(_Logits(), _Logits(flip), _inputs(n), description="rows")
    gender, age = result.tasks["gender"], result.tasks["age"]
    assert (gender.agree, gender.crops) == (196, 200)
    assert gender.rate == pytest.approx(0.98)
    assert gender.lower_bound == pytest.approx(wilson_lower_bound(196, 200))
    assert gender.max_abs_diff == pytest.approx(4.0)  # a flipped row of (-2, 2) becomes (2, -2)
    assert (age.agree, age.max_abs_diff) == (200, 0.0)
    assert result.min_lower_bound == gender.lower_bound < 0.98 < wilson_lower_bound(200, 200)
    record = result.to_json()
    assert record["crops"] == 200 and record["inputs"] == "rows"
    assert record["tasks"]["gender"]["wilson_lower_95"] == pytest.approx(0.9497, abs=1e-4)


def test_compare_arrays_refuses_mismatched_outputs() -> None:
    with pytest.raises(ConfigError, match="gender"):
        compare_arrays({"gender": np.zeros((2, 2))}, {"gender": np.zeros((3, 2))})
    with pytest.raises(ConfigError, match="missing"):
        compare_arrays({"gender": np.zeros((2, 2))}, {})


def test_summarise_takes_ratios_within_each_round() -> None:
    results = [
        {"label": "ref", "batch": 1, "round": 0, "times_ms": [10.0, 10.0]},
        {"label": "fast", "batch": 1, "round": 0, "times_ms": [5.0, 5.0]},
        {"label": "ref", "batch": 1, "round": 1, "times_ms": [20.0]},  # the machine slowed down
        {"label": "fast", "batch": 1, "round": 1, "times_ms": [16.0]},
    ]
    rows = {r["label"]: r for r in summarise(results, reference="ref")}
    assert rows["fast"]["round_ratios"] == [0.5, 0.8]
    assert rows["fast"]["ratio"] == pytest.approx(0.65)
    assert rows["fast"]["p50_ms"] == 5.0 and rows["fast"]["samples"] == 3
    assert rows["ref"]["ratio"] == 1.0


def test_cpu_info_reads_the_flags_that_matter() -> None:
    text = "model name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_vnni sse4_2\n"
    info = cpu_info(text)
    assert info["model"] == "Test CPU 9000"
    assert info["flags"] == ["avx2", "avx512f", "avx512_vnni"]
    machine = machine_info(threads=2)
    assert machine["threads"]["per_runtime"] == 2 and "onnxruntime" in machine["versions"]


def test_bench_rows_run_the_sdk_backend(tiny_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row times the backend the Analyzer creates (ONNX Runtime with the SDK's session options)."""
    made = []
    real = bench_cli.create_backend

    def spy(kind: str, manifest: object, path: object, **opts: object) -> object:
        backend = real(kind, manifest, path, **opts)
        made.append(backend)
        return backend

    monkeypatch.setattr(bench_cli, "create_backend", spy)
    row = {"runtime": "onnxruntime", "model": str(tiny_export), "onnx": str(tiny_export / "model.onnx"),
           "batch": 2, "threads": 1, "repeats": 3, "label": "onnxruntime fp32"}  # fmt: skip
    result = bench_cli.measure_row(row)
    assert len(result["times_ms"]) == 3
    assert [type(b) for b in made] == [OnnxRuntimeBackend]
    assert result["peak_rss_mib"] >= 20  # this process's own peak: Python, numpy and ORT at least
    assert result["stream_batch"] == 1  # ONNX Runtime on a CPU: one crop per call in a stream


def test_openvino_rows_record_the_bucket_a_stream_sends(tiny_export: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'facesdk[openvino]')")
    row = {"runtime": "openvino", "model": str(tiny_export), "onnx": str(tiny_export / "model.onnx"),
           "batch": 1, "threads": 1, "repeats": 1, "label": "openvino fp32", "batch_buckets": [1, 4]}  # fmt: skip
    assert bench_cli.measure_row(row)["stream_batch"] == 4


def test_facesdk_bench_writes_its_report(tiny_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert bench_cli.main(["--model", str(tiny_export), "--out", str(out), "--batches", "1",
                           "--threads", "1", "--repeats", "2"]) == 0  # fmt: skip
    report = json.loads((out / "bench.json").read_text())
    rows = {r["label"]: r for r in report["latency"]}
    assert rows["onnxruntime fp32"]["samples"] == 2 and rows["onnxruntime fp32"]["error"] is None
    assert rows["onnxruntime fp32"]["vs_onnxruntime_fp32"] == 1.0
    assert report["machine"]["threads"]["per_runtime"] == 1
    assert "onnxruntime fp32" in (out / "bench.md").read_text()
    assert "| peak RSS MiB |" in (out / "bench.md").read_text()
    assert 20 <= rows["onnxruntime fp32"]["peak_rss_mib"] < 4096  # the row's child process, not this one


def test_summarise_reports_the_largest_peak_rss_of_a_row() -> None:
    results = [
        {"label": "a", "batch": 1, "round": 0, "times_ms": [1.0], "peak_rss_mib": 300.0},
        {"label": "a", "batch": 1, "round": 1, "times_ms": [1.0], "peak_rss_mib": 310.0},
        {"label": "b", "batch": 1, "round": 0, "times_ms": [1.0], "peak_rss_mib": 120.0},
    ]
    rows = {r["label"]: r for r in summarise(results)}
    assert rows["a"]["peak_rss_mib"] == 310.0 and rows["b"]["peak_rss_mib"] == 120.0
    carried = summarise([{"label": "a", "batch": 8, "round": 0, "times_ms": [1.0], "stream_batch": 4}])
    assert carried[0]["stream_batch"] == 4


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_a_row_peak_is_its_own_not_its_parents() -> None:
    """A child inherits its parent's ru_maxrss across exec: a row started by a process holding
    300 MiB must still report its own, smaller peak (auto compares paths by it)."""
    import subprocess
    import sys

    held = np.ones(300 << 17)  # 300 MiB, touched
    code = "from facesdk.bench.timing import peak_rss_mib; print(peak_rss_mib())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert held.sum() > 0
    assert 5 < float(out.stdout) < 200, out.stdout


def test_facesdk_bench_says_what_auto_chooses(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report names auto's choice and reason; the second run reads the choice from auto's cache."""
    from facesdk.auto.choice import candidate_paths, cpu_signature
    from facesdk.contract.export_manifest import load_export_manifest

    monkeypatch.setenv("FACESDK_HOME", str(tmp_path / "home"))
    args = ["--model", str(tiny_export), "--batches", "1", "--threads", "1", "--repeats", "2"]
    assert bench_cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    first = json.loads((tmp_path / "one" / "bench.json").read_text())["auto"]
    names = [p.name for p in candidate_paths(load_export_manifest(tiny_export), cpu_signature())]
    assert first["choice"] in names and not first["cached"]
    assert "paths checked against FP32" in first["reason"]
    assert f'`backend="auto"` runs **{first["choice"]}** here' in (tmp_path / "one" / "bench.md").read_text()
    assert list((tmp_path / "home" / "auto").iterdir())  # the choice the Analyzer will read
    assert bench_cli.main([*args, "--out", str(tmp_path / "two")]) == 0
    second = json.loads((tmp_path / "two" / "bench.json").read_text())["auto"]
    assert second["choice"] == first["choice"] and second["cached"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--batches", "0", "--batches must be batch sizes of at least 1"),
        ("--batches", "-4", "--batches must be batch sizes of at least 1"),
        ("--batches", ",", "--batches must be batch sizes of at least 1"),
        ("--threads", "0", "--threads: expected an integer of at least 1, got 0"),
        ("--repeats", "-1", "--repeats: expected an integer of at least 1, got -1"),
    ],
)
def test_bench_refuses_counts_below_one(
    tmp_path: Path, tiny_export: Path, flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any row runs: no report of failed rows, no --out folder."""
    from facesdk.cli import main

    out = tmp_path / "bench"
    try:
        code = main(["bench", "--model", str(tiny_export), "--out", str(out), f"{flag}={value}"])
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
