"""Integrity checks for every file that decides what runs: cached sha256, ONNX embedded digests.

Three tools, all without the ``onnx`` package (the lean runtime does not have it):

* :func:`cached_sha256` / :func:`verify_file`: the sha256 of a file, computed once per process
  for a given (real path, device, inode, size, mtime). A stream that opens the same detector or
  model again does not hash it again; a file replaced or rewritten is hashed anew, and a file
  modified in the last two seconds is never cached (a rewrite within the file system's
  timestamp granularity could keep its mtime).
* :func:`stamp_onnx_digest` / :func:`check_onnx_digest`: a digest of a whole ONNX file stored
  inside the file, in its ``metadata_props`` under :data:`ONNX_DIGEST_KEY`. The digest is the
  sha256 of the file's bytes with the 64 hex characters of the digest value replaced by
  :data:`DIGEST_PLACEHOLDER`, so the file can carry its own hash. Every byte of the file
  (graph, weights, other metadata) is covered.
* :func:`read_onnx_metadata`: the ``metadata_props`` as ONNX Runtime's
  ``custom_metadata_map`` would show them, read before any runtime parses the graph.

Why a placeholder rather than a digest of the initializers: ``metadata_props`` is field 14 of
the ``ModelProto`` message, a repeated ``{key (1), value (2)}`` string pair. Protobuf writes it
as ``0x72 <length> 0x0a <klen> key 0x12 <vlen> value``; with a fixed-width value, writing the
digest changes no length anywhere, so the bytes hashed at export and the bytes checked at load
differ only in those 64 characters. A digest over initializers would need a parser for the graph
(``GraphProto``, ``TensorProto``, external data) and would leave the graph's nodes and constants
unchecked. Reading the top level of a ``ModelProto`` needs only tags and lengths: the graph
itself is skipped, not parsed.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import IntegrityError, ManifestError, MissingFileError
from .fileio import atomic_write_bytes, sha256_file

__all__ = [
    "DIGEST_PLACEHOLDER",
    "ONNX_DIGEST_KEY",
    "cached_sha256",
    "check_onnx_digest",
    "clear_cache",
    "read_onnx_metadata",
    "set_onnx_metadata",
    "stamp_onnx_digest",
    "verify_file",
]

logger = logging.getLogger(__name__)

ONNX_DIGEST_KEY = "facesdk.sha256"
"""The ``metadata_props`` key of an ONNX file's own digest."""

DIGEST_PLACEHOLDER = b"0" * 64
"""What the digest's 64 hex characters are replaced with while the file is hashed."""

_METADATA_FIELD = 14  # ModelProto.metadata_props
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_LOCK = threading.Lock()
_SHA_CACHE: dict[tuple[str, int, int, int, int], str] = {}
_ONNX_CACHE: dict[tuple[str, int, int, int, int], str | None] = {}


_RACY_NS = 2_000_000_000
"""Files modified less than this long ago are not cached: a rewrite within the file system's
timestamp granularity could keep the same mtime (the "racy git" problem)."""


def _key(path: str | os.PathLike[str]) -> tuple[str, int, int, int, int]:
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _cacheable(key: tuple[str, int, int, int, int]) -> bool:
    return time.time_ns() - key[4] >= _RACY_NS


def clear_cache() -> None:
    """Forget every cached hash (tests; a process that wants to re-hash everything)."""
    with _LOCK:
        _SHA_CACHE.clear()
        _ONNX_CACHE.clear()


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, hashed once per process for a given path, inode, size and mtime."""
    key = _key(path)
    with _LOCK:
        found = _SHA_CACHE.get(key)
    if found is not None:
        return found
    value = sha256_file(key[0])
    if _cacheable(key):
        with _LOCK:
            _SHA_CACHE[key] = value
    return value


def verify_file(path: str | os.PathLike[str], sha256: str, *, what: str = "file", fix: str = "") -> Path:
    """Check a file against a recorded sha256 (cached per process); return its path.

    This is the one check for anything on disk that decides what runs (the detector in the
    model store, caches under ``FACESDK_HOME``): record the sha256 when the file is written,
    call this before the file is used.

    Args:
        path: The file.
        sha256: The hex digest recorded for it.
        what: What the file is, for the message (``"face detector"``).
        fix: What to do about a mismatch, appended to the message (one sentence).

    Raises:
        MissingFileError: The file does not exist.
        IntegrityError: Its sha256 differs from ``sha256``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist. {fix}".strip())
    found = cached_sha256(path)
    if found != sha256.lower():
        raise IntegrityError(
            f"{what} {path} has sha256 {found[:16]}… but {sha256[:16]}… is recorded for it: the file is "
            f"damaged or was replaced. {fix}".strip()
        )
    return path


# --- a minimal reader of the top level of a serialized ONNX ModelProto -------------------------


def _varint(buf: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf: bytes | mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield ``(field, wire_type, field_start, value_start, value_end)`` of one message's fields."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(buf, pos, end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _, value_end = _varint(buf, pos, end)
        elif wire == 1:
            value_end = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value_end = pos + length
        elif wire == 5:
            value_end = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if value_end > end:
            raise ValueError("field runs past the end")
        yield field, wire, field_start, pos, value_end
        pos = value_end


def _metadata_entries(buf: bytes | mmap.mmap) -> list[tuple[str, str, int, int, int, int]]:
    """``(key, value, entry_start, entry_end, value_start, value_end)`` of every metadata_props entry."""
    entries = []
    for field, wire, field_start, start, end in _fields(buf, 0, len(buf)):
        if field != _METADATA_FIELD or wire != 2:
            continue
        key, value, span = "", "", (end, end)
        for sub, sub_wire, _, s, e in _fields(buf, start, end):
            if sub_wire != 2:
                continue
            if sub == 1:
                key = bytes(buf[s:e]).decode("utf-8", "replace")
            elif sub == 2:
                value, span = bytes(buf[s:e]).decode("utf-8", "replace"), (s, e)
        entries.append((key, value, field_start, end, *span))
    return entries


def _parse(path: Path, buf: bytes | mmap.mmap) -> list[tuple[str, str, int, int, int, int]]:
    try:
        return _metadata_entries(buf)
    except ValueError as exc:
        raise ManifestError(
            f"{path} is not a readable ONNX file ({exc}); it is truncated or damaged"
        ) from exc


def _open_map(path: Path) -> tuple[object, mmap.mmap | bytes]:
    fh = open(path, "rb")  # noqa: SIM115 - closed by the caller
    size = os.fstat(fh.fileno()).st_size
    return fh, (mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b"")


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ONNX file's ``metadata_props`` as a dict, without parsing its graph.

    Raises:
        ManifestError: The file is not a readable ONNX model, or a ``facesdk.`` key appears twice.
    """
    path = Path(path)
    fh, buf = _open_map(path)
    try:
        entries = _parse(path, buf)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()
        fh.close()  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for key, value, *_ in entries:
        if key in out and key.startswith("facesdk."):
            raise ManifestError(f"{path} has the metadata key {key!r} twice; the file was tampered with")
        out[key] = value
    return out


def _digest_with_placeholder(buf: bytes | mmap.mmap, start: int, end: int) -> str:
    view = memoryview(buf)
    digest = hashlib.sha256()
    digest.update(view[:start])
    digest.update(DIGEST_PLACEHOLDER)
    digest.update(view[end:])
    view.release()
    return digest.hexdigest()


def _compute(path: Path) -> str | None:
    fh, buf = _open_map(path)
    try:
        found = [e for e in _parse(path, buf) if e[0] == ONNX_DIGEST_KEY]
        if not found:
            return None
        if len(found) > 1:
            raise IntegrityError(f"{path} carries {len(found)} '{ONNX_DIGEST_KEY}' digests; expected one")
        _, recorded, _, _, start, end = found[0]
        if end - start != len(DIGEST_PLACEHOLDER) or not _HEX64.fullmatch(bytes(buf[start:end])):
            raise IntegrityError(
                f"{path} carries a malformed '{ONNX_DIGEST_KEY}' digest {recorded[:20]!r}: the file was altered"
            )
        computed = _digest_with_placeholder(buf, start, end)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()
        fh.close()  # type: ignore[attr-defined]
    if computed != recorded:
        raise IntegrityError(
            f"{path} records digest {recorded[:16]}… but its bytes hash to {computed[:16]}…: the model was "
            "damaged or altered after export; re-export it, or use the export directory it came from"
        )
    return computed


def check_onnx_digest(path: str | os.PathLike[str]) -> str | None:
    """Verify an ONNX file against the digest it carries (cached per process).

    Returns:
        The verified digest, or ``None`` when the file carries none (a model from elsewhere;
        the caller decides whether that is acceptable).

    Raises:
        IntegrityError: The recorded digest differs from the file's bytes, or is malformed.
        ManifestError: The file is not a readable ONNX model.
    """
    key = _key(path)
    with _LOCK:
        if key in _ONNX_CACHE:
            return _ONNX_CACHE[key]
    value = _compute(Path(key[0]))
    if _cacheable(key):
        with _LOCK:
            _ONNX_CACHE[key] = value
    return value


def _entry(key: str, value: bytes) -> bytes:
    """One ``metadata_props`` entry (a ``StringStringEntryProto`` field of the ModelProto)."""
    raw = key.encode()
    body = b"\x0a" + _encode_varint(len(raw)) + raw + b"\x12" + _encode_varint(len(value)) + value
    return bytes([(_METADATA_FIELD << 3) | 2]) + _encode_varint(len(body)) + body


def set_onnx_metadata(path: str | os.PathLike[str], values: Mapping[str, str]) -> str:
    """Replace (or add) ``metadata_props`` entries of an ONNX file and stamp its digest, atomically.

    Works on the serialized file without the ``onnx`` package, so the stages that only change
    facesdk's metadata (e.g. the temperatures of a calibrated copy) need no ONNX dependency.
    Returns the new digest (:data:`ONNX_DIGEST_KEY`).
    """
    path = Path(path)
    data = path.read_bytes()
    drop = {ONNX_DIGEST_KEY, *values}
    stale = [(s, e) for key, _, s, e, _, _ in _parse(path, data) if key in drop]
    kept = bytearray()
    pos = 0
    for start, end in stale:
        kept += data[pos:start]
        pos = end
    kept += data[pos:]
    for key, value in values.items():
        kept += _entry(key, value.encode())
    kept += _entry(ONNX_DIGEST_KEY, DIGEST_PLACEHOLDER)
    digest = hashlib.sha256(kept).hexdigest()
    kept[-64:] = digest.encode()
    atomic_write_bytes(path, bytes(kept))
    return digest


def stamp_onnx_digest(path: str | os.PathLike[str]) -> str:
    """Write the file's digest into its ``metadata_props`` (replacing any old one), atomically.

    Call it after the last write of an ONNX file: anything that re-serializes the model
    afterwards (``onnx.save``) must stamp again. Returns the digest.
    """
    return set_onnx_metadata(path, {})
