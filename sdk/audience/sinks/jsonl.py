"""Rotating JSON Lines files: one record a line, each file moved into place when complete.

The file being filled lives under a hidden temporary name beside its final name (the project's
rule for every output, as :func:`facesdk.contract.manifest_io.atomic_write_bytes`): readers of the folder
see only complete files. A file is complete after ``max_records`` window records or
``max_bytes`` bytes, and at :meth:`JsonLinesSink.close`. A temporary file left by a killed run
is completed by the next sink opened on the folder (its whole lines kept, a cut last line dropped).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ...contract.manifest_io import atomic_write_bytes
from ...errors import ConfigError

__all__ = ["JsonLinesSink"]

log = logging.getLogger(__name__)

_TMP_SUFFIX = ".tmp"


class JsonLinesSink:
    """Audience records as JSON Lines files in a folder, rotated by window count or size.

    Args:
        folder: Where the files go (created if needed).
        prefix: File names are ``<prefix>-<UTC time of the first record>.jsonl``.
        max_records: Complete a file after this many ``window`` records (default 60: an hour of
            one-minute windows); content and visit records ride along.
        max_bytes: Also complete a file once it holds this many bytes (``None``: no limit).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        prefix: str = "audience",
        max_records: int = 60,
        max_bytes: int | None = None,
    ) -> None:
        if max_records < 1 or (max_bytes is not None and max_bytes < 1):
            raise ConfigError(
                f"JsonLinesSink: max_records and max_bytes must be >= 1, got {max_records}, {max_bytes}"
            )
        if not prefix or any(c in prefix for c in "/\\\x00"):
            raise ConfigError(f"JsonLinesSink: prefix {prefix!r} must be a plain file name part")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_records, self.max_bytes = prefix, max_records, max_bytes
        self.written: list[Path] = []
        self._fh: IO[bytes] | None = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._windows = 0
        self._bytes = 0
        self._recover()

    def publish(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line; complete the file when it is full."""
        line = (json.dumps(dict(record), separators=(",", ":"), allow_nan=False) + "\n").encode()
        if self._fh is None:
            self._open()
        assert self._fh is not None
        self._fh.write(line)
        self._fh.flush()
        self._bytes += len(line)
        self._windows += record.get("kind") == "window"
        if self._windows >= self.max_records or (
            self.max_bytes is not None and self._bytes >= self.max_bytes
        ):
            self._complete()

    def close(self) -> None:
        """Complete the current file."""
        if self._fh is not None:
            self._complete()

    def _name(self) -> Path:
        stamp = datetime.now(tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
        final = self.folder / f"{self.prefix}-{stamp}.jsonl"
        number = 1
        while final.exists() or any(final == p for p in self.written):
            number += 1
            final = self.folder / f"{self.prefix}-{stamp}-{number}.jsonl"
        return final

    def _open(self) -> None:
        self._final = self._name()
        fd, tmp = tempfile.mkstemp(prefix=f".{self._final.name}.", suffix=_TMP_SUFFIX, dir=self.folder)
        self._fh, self._tmp = os.fdopen(fd, "wb"), Path(tmp)
        self._windows = self._bytes = 0

    def _complete(self) -> None:
        assert self._fh is not None and self._tmp is not None and self._final is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        final = self._final if not self._final.exists() else self._name()
        os.replace(self._tmp, final)
        self.written.append(final)
        self._fh = self._tmp = self._final = None

    def _recover(self) -> None:
        """Complete the temporary files a killed run left here (only this sink's own names)."""
        for tmp in sorted(self.folder.glob(f".{self.prefix}-*.jsonl.*{_TMP_SUFFIX}")):
            data = tmp.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            final = self.folder / tmp.name[1:].split(".jsonl.", 1)[0]
            final = final.with_name(final.name + ".jsonl")
            if final.exists():
                final = final.with_name(f"{final.stem}-recovered.jsonl")
            if whole:
                atomic_write_bytes(final, whole)
                log.info("completed %s, left by an interrupted run, as %s", tmp.name, final.name)
            tmp.unlink()
