"""Nothing unverified runs: the detector store, lone ONNX digests, the per-process hash cache."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.contract.integrity import (
    ONNX_DIGEST_KEY,
    cached_sha256,
    check_onnx_digest,
    clear_cache,
    read_onnx_metadata,
    set_onnx_metadata,
    stamp_onnx_digest,
    verify_file,
)
from facesdk.contract.manifest_io import sha256_file
from facesdk.errors import IntegrityError, ManifestError
from facesdk.faces import DETECTOR_FILENAME, find_detector_model
from facesdk.faces.model_store import cache_dir
from facesdk.model_loader import resolve_model
from facesdk.testing import make_tiny_export


@pytest.fixture()
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, yunet_path: Path) -> Path:
    """An empty FACESDK_HOME and a cache holding a good copy of YuNet; returns the cached file."""
    monkeypatch.delenv("FACESDK_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = cache_dir() / DETECTOR_FILENAME
    path.parent.mkdir(parents=True)
    shutil.copyfile(yunet_path, path)
    return path


def _flip(path: Path, count: int = 16, at: float = 0.5) -> None:
    """Flip ``count`` bytes in the middle of a file, keeping its size."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_store_detector_is_verified_on_every_load(store: Path) -> None:
    assert find_detector_model() == store
    _flip(store)
    with pytest.raises(IntegrityError, match="facesdk models fetch") as info:
        find_detector_model()
    assert "\n" not in str(info.value)
    # an explicit path that points into the store is checked the same way
    with pytest.raises(IntegrityError, match="facesdk models fetch"):
        find_detector_model(store)


def test_flipped_store_detector_never_reaches_the_analyzer(store: Path, tiny_export: Path) -> None:
    _flip(store)
    with pytest.raises(IntegrityError):
        Analyzer(tiny_export, backend="onnxruntime")


def test_explicit_unknown_detector_is_used_with_a_warning(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mine = tmp_path / "mine.onnx"
    shutil.copyfile(store, mine)
    with caplog.at_level(logging.WARNING, logger="facesdk.faces.model_store"):
        assert find_detector_model(mine) == mine
    assert not caplog.records  # the known file: no warning
    _flip(mine)
    with caplog.at_level(logging.WARNING, logger="facesdk.faces.model_store"):
        assert find_detector_model(mine) == mine
    assert "using it as given" in caplog.text


def test_hash_cache_is_keyed_by_size_and_mtime(tmp_path: Path) -> None:
    """Within a process a file is hashed once; rewriting it (new mtime) is noticed."""
    clear_cache()
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 1000)
    old = path.stat().st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old, old))  # settled: older than the racy window
    digest = cached_sha256(path)
    with open(path, "r+b") as fh:  # same size, same inode, mtime put back: the cache answers
        fh.write(b"b")
    os.utime(path, ns=(old, old))
    assert cached_sha256(path) == digest != sha256_file(path)
    os.utime(path, ns=(old, old + 1_000_000))
    assert cached_sha256(path) == sha256_file(path)
    with pytest.raises(IntegrityError, match="what to do"):
        verify_file(path, digest, what="cache file", fix="what to do")


def test_a_file_modified_just_now_is_never_cached(tmp_path: Path) -> None:
    """A rewrite within the file system's timestamp granularity can keep the mtime: no cache then."""
    clear_cache()
    path = tmp_path / "g.bin"
    path.write_bytes(b"a" * 1000)
    digest = cached_sha256(path)
    stat = path.stat()
    with open(path, "r+b") as fh:
        fh.write(b"b")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cached_sha256(path) == sha256_file(path) != digest


def test_onnx_digest_roundtrip_and_runtime_sees_it(tmp_path: Path) -> None:
    make_tiny_export(tmp_path)
    model = tmp_path / "model.onnx"
    digest = check_onnx_digest(model)
    assert digest is not None and read_onnx_metadata(model)[ONNX_DIGEST_KEY] == digest
    from facesdk.backends.onnxruntime import create_session

    meta = create_session(model, providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map == read_onnx_metadata(model)
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(str(model))
    assert stamp_onnx_digest(model) == digest  # stamping again replaces, never duplicates
    assert [p.key for p in onnx.load(str(model)).metadata_props].count(ONNX_DIGEST_KEY) == 1


def test_set_onnx_metadata_replaces_adds_and_restamps(tmp_path: Path) -> None:
    """Metadata edits without the onnx package: one entry replaced, one added, the rest and the
    graph untouched, a new digest that verifies; the runtime reads what was written."""
    make_tiny_export(tmp_path)
    model = tmp_path / "model.onnx"
    before = read_onnx_metadata(model)
    changed = next(k for k in before if k != ONNX_DIGEST_KEY)
    digest = set_onnx_metadata(model, {changed: "new value", "extra.key": "é"})
    after = read_onnx_metadata(model)
    assert after[changed] == "new value" and after["extra.key"] == "é"
    assert {k: v for k, v in after.items() if k not in (changed, "extra.key", ONNX_DIGEST_KEY)} == {
        k: v for k, v in before.items() if k not in (changed, ONNX_DIGEST_KEY)
    }
    clear_cache()
    assert check_onnx_digest(model) == digest != before[ONNX_DIGEST_KEY]
    onnx = pytest.importorskip("onnx")
    loaded = onnx.load(str(model))
    assert [p.key for p in loaded.metadata_props].count(changed) == 1
    onnx.checker.check_model(loaded)


def _flip_weight(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    raw = weights["age_w"].tobytes()
    data = path.read_bytes()
    at = data.index(raw)
    path.write_bytes(data[:at] + bytes(b ^ 0x10 for b in raw[:8]) + data[at + 8 :])


def test_lone_onnx_with_flipped_weights_is_refused(tmp_path: Path) -> None:
    make_tiny_export(tmp_path)
    lone = tmp_path / "lone.onnx"
    shutil.copyfile(tmp_path / "model.onnx", lone)
    assert resolve_model(lone, backend="onnxruntime").path == lone
    _flip_weight(lone)
    with pytest.raises(IntegrityError, match="re-export") as info:
        resolve_model(lone, backend="onnxruntime")
    assert "\n" not in str(info.value)


def test_lone_onnx_without_digest_is_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    onnx = pytest.importorskip("onnx")
    make_tiny_export(tmp_path)
    model = onnx.load(str(tmp_path / "model.onnx"))
    kept = [p for p in model.metadata_props if p.key != ONNX_DIGEST_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    lone = tmp_path / "elsewhere.onnx"
    onnx.save(model, str(lone))
    with caplog.at_level(logging.WARNING, logger="facesdk.model_loader"):
        resolved = resolve_model(lone, backend="onnxruntime")
    assert resolved.manifest.tasks and "unverified" in caplog.text


def test_two_digests_or_a_malformed_one_are_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    make_tiny_export(tmp_path)
    model = onnx.load(str(tmp_path / "model.onnx"))
    model.metadata_props.add(key=ONNX_DIGEST_KEY, value="1" * 64)
    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(IntegrityError, match="2 'facesdk.sha256' digests"):
        check_onnx_digest(tmp_path / "two.onnx")
    del model.metadata_props[-1]
    next(p for p in model.metadata_props if p.key == ONNX_DIGEST_KEY).value = "short"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(IntegrityError, match="malformed"):
        check_onnx_digest(tmp_path / "bad.onnx")


def test_a_truncated_onnx_is_a_manifest_error(tmp_path: Path) -> None:
    make_tiny_export(tmp_path)
    data = (tmp_path / "model.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError, match="truncated or damaged"):
        resolve_model(cut, backend="onnxruntime")


def test_flipped_lone_model_changes_nothing_silently(tmp_path: Path, yunet_path: Path) -> None:
    """The issue's case end to end: Analyzer on a damaged lone .onnx refuses before any frame."""
    make_tiny_export(tmp_path)
    _flip_weight(tmp_path / "model.onnx")
    with pytest.raises(IntegrityError):
        Analyzer(tmp_path / "model.onnx", backend="onnxruntime", detector=yunet_path).analyze(
            np.zeros((64, 64, 3), np.uint8)
        )
