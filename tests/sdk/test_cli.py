from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main
from facesdk.contract.manifest_io import sha256_file
from facesdk.faces import DETECTOR_FILENAME


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_analyze_image_and_video(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray, astronaut_video: Path
) -> None:
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), astronaut_bgr)
    out = tmp_path / "out.jsonl"
    argv = ["analyze", str(image), str(astronaut_video), "--model", str(tiny_export)]
    assert main([*argv, "--detector", str(yunet_path), "--json", str(out)]) == 0
    rows = _lines(out)
    assert len(rows) == 1 + 5
    assert rows[0]["source"] == str(image) and len(rows[0]["faces"]) == 1
    assert set(rows[0]["faces"][0]["attributes"]) == {"age", "gender", "emotion"}
    assert [r["index"] for r in rows[1:]] == list(range(5))
    assert all(r["faces"][0]["track_id"] == 1 for r in rows[1:])


def test_analyze_reports_missing_input(tmp_path: Path, tiny_export: Path, yunet_path: Path) -> None:
    argv = ["analyze", str(tmp_path / "nope.png"), "--model", str(tiny_export), "--detector", str(yunet_path)]
    assert main(argv) == 2


def test_demo_headless_saves_video(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, astronaut_video: Path
) -> None:
    saved = tmp_path / "demo.avi"
    argv = [
        "demo",
        "--source",
        str(astronaut_video),
        "--model",
        str(tiny_export),
        "--detector",
        str(yunet_path),
    ]
    assert main([*argv, "--no-window", "--save", str(saved)]) == 0
    cap = cv2.VideoCapture(str(saved))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 5


def test_demo_draws_labels(tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    from facesdk import Analyzer
    from facesdk.cli.demo import draw_results

    with Analyzer(tiny_export, detector=yunet_path) as analyzer:
        result = next(iter(analyzer.stream([astronaut_bgr])))
    drawn = draw_results(astronaut_bgr, result, fps=12.0)
    assert drawn.shape == astronaut_bgr.shape and (drawn != astronaut_bgr).any()


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("FACESDK_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_models_fetch_and_path(env: Path, capsys: pytest.CaptureFixture[str], yunet_path: Path) -> None:
    mirror = env / "mirror.onnx"
    mirror.write_bytes(yunet_path.read_bytes())
    from facesdk.faces.model_store import PACKAGED_DETECTOR

    assert main(["models", "path"]) == 0  # the copy inside the package
    assert capsys.readouterr().out.strip() == str(PACKAGED_DETECTOR)
    argv = ["models", "fetch", "--url", mirror.as_uri(), "--sha256", sha256_file(mirror)]
    assert main(argv) == 0
    installed = env / "cache" / "facesdk" / "models" / DETECTOR_FILENAME
    assert installed.read_bytes() == mirror.read_bytes()
    capsys.readouterr()
    assert main(["models", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(installed)


def test_models_path_reports_a_damaged_store_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store file that differs from the recorded sha256 is one line naming the fix, exit 2."""
    from facesdk.faces.model_store import default_fetch_dir

    store = default_fetch_dir() / DETECTOR_FILENAME
    store.parent.mkdir(parents=True)
    store.write_bytes(b"model" * 64)  # replaced or damaged in place (fetch itself refuses other digests)
    assert main(["models", "path"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "facesdk models fetch" in err and "sha256" in err


def test_models_fetch_refuses_wrong_hash(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mirror = env / "mirror.onnx"
    mirror.write_bytes(b"tampered")
    assert main(["models", "fetch", "--url", mirror.as_uri(), "--dir", str(env / "dest")]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not (env / "dest" / DETECTOR_FILENAME).exists()


def test_bench_zeroshot_reports_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``facesdk bench --zeroshot-clip``: text encoder at inference vs compiled into heads."""
    pytest.importorskip("open_clip", reason="--zeroshot-clip needs the [zeroshot] extra")
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("include_defaults: false\ntemplates: ['a photo of {}.']\n"
                       "tasks: {gender: {classes: {male: [a man], female: [a woman]}}}\n")  # fmt: skip
    out = tmp_path / "bench"
    argv = ["bench", "--zeroshot-clip", "PE-Core-T-16-384", "--zeroshot-prompts", str(prompts)]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())["zeroshot"]
    ref, ours = report["reference"], report["compiled"]
    assert report["prompts"] == 2 and report["tasks"] == {"gender": 2}
    assert ref["params"] > ref["vision_params"] and ref["text_gflops"] > 0
    assert ours["params"] == ref["vision_params"] + 2 * 512 + 2  # the heads: 2 classes x 512-d embeddings
    assert ours["gflops"] == pytest.approx(ref["vision_gflops"], rel=1e-3)
    assert ref["gflops"] == pytest.approx(ref["vision_gflops"] + ref["text_gflops"])
    text = capsys.readouterr().out
    assert "| text encoder at inference" in text and "| compiled into heads |" in text
    assert (out / "bench.md").read_text().strip() == text.strip()
