"""Smoke test of benchmarks/stream.py at tiny settings: it runs end to end and its numbers hang together."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from facesdk.faces.model_store import PACKAGED_DETECTOR

ROOT = Path(__file__).resolve().parents[2]
YUNET = PACKAGED_DETECTOR


@pytest.mark.slow
def test_stream_benchmark_tiny(tmp_path: Path) -> None:
    pytest.importorskip(
        "torch", reason="the benchmark builds its export with the [train] and [export] extras"
    )
    pytest.importorskip("skimage", reason="the benchmark's videos come from skimage.data")
    pytest.importorskip("matplotlib", reason="the benchmark plots with matplotlib")
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET.resolve()}")
    spec = importlib.util.spec_from_file_location("stream_bench", ROOT / "benchmarks" / "stream.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "doc" / "stream.md"
    argv = [
        "--size",
        "32",
        "--depth",
        "1",
        "--frames",
        "6",
        "--frames-unscheduled",
        "3",
        "--live-seconds",
        "0.3",
    ]
    argv += ["--detector-sizes", "640", "--detector-repeats", "1", "--detector", str(YUNET)]
    argv += ["--work", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    text = out.read_text()
    assert (
        "avx512_vnni" in text
        and "## Targets" in text
        and "one face, onnxruntime:" in text
        and "six faces, onnxruntime:" in text
    )
    rows = {(r["video"], r["schedule"], r["overlap"]): r for r in report["rows"]}
    assert len(rows) == 8
    for (video, schedule, _), row in rows.items():
        faces = 1 if video == "one" else 6
        assert row["faces_per_frame"] == faces, row
        if schedule:
            assert row["crops_per_frame"] <= 2 and row["estimate_age_s"]["max"] <= 1.0
        else:
            assert row["crops_per_frame"] == faces
        assert row["fps"] > 0 and row["latency_ms"]["p50"] is not None
    assert report["detector"][0]["faces"] == 6 and report["detector"][0]["smallest_face_px"] is not None
    for video in ("one", "six"):  # the outside-the-backbone share, from that row's own stage means
        row = rows[video, False, False]
        share = 1.0 - row["stage_ms"]["infer"] / row["threads_ms_per_frame"]["detect + backbone"]
        assert 0.0 < share < 1.0 and f"**{share:.1%} of the frame outside the backbone call**" in text
