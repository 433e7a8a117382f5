"""Output paths that cannot eat inputs: one set of rules for every command that writes.

Every command that writes a folder or a file checks its output here first:

* paths are resolved (``~``, ``..`` and symlinks) before they are compared;
* an output folder may not equal, contain or sit inside any input of the command;
* an existing output folder is replaced only with ``force``, and only when it is empty or
  holds this tool's own manifest (``export.json``, ``checkpoint.json``, ``calib.json``, ...);
* a single-file output never replaces an input, a tool manifest or a file that a manifest
  beside it lists (an export's ``model.onnx``), and replaces anything else only with ``force``.

Folders are written through :class:`StagedDir`: a hidden staging folder beside the output,
renamed into place at the end. Single files are written through :class:`StagedFile`: a hidden
partial file beside the output, moved into place when the run ends well (and, for outputs
that grow while a live source runs, also on SIGINT or SIGTERM once they hold a result).
Staging is removed on an exception, SIGINT or SIGTERM, so a run that fails leaves nothing
and leaves an existing output as it was; staging left by a killed run (SIGKILL, power loss)
is removed by the next run that stages beside it, recognised by this module's name pattern
(and a marker file inside a folder) and an owner process that is gone (or an age above
:data:`STALE_AFTER_S`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import ConfigError

__all__ = [
    "TOOL_MANIFESTS",
    "STALE_AFTER_S",
    "StagedDir",
    "StagedFile",
    "resolve_path",
    "check_no_overlap",
    "check_output_dir",
    "check_output_file",
    "clean_stale_staging",
    "created_dir",
    "merge_into",
]

log = logging.getLogger(__name__)

TOOL_MANIFESTS = (
    "export.json",
    "checkpoint.json",
    "calib.json",
    "prepare.json",
    "bench.json",
    "metrics.json",
    "config.yaml",
)
"""Files whose presence marks a folder as written by facesdk (what ``--force`` may replace)."""

STALE_AFTER_S = 24 * 3600.0
"""A staging folder older than this is stale even if a process with its owner's id runs."""

_STAGING_RE = re.compile(r"^\..+\.facesdk-(?:staging|old)-(\d+)-[0-9a-f]{8}$")
_PARTIAL_RE = re.compile(r"^\..+\.facesdk-partial-(\d+)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")
_MARKER = ".facesdk-staging"


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path with ``~``, ``..`` and symlinks resolved (the file need not exist)."""
    return Path(path).expanduser().resolve()


def _overlap(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is"
    if out in inp.parents:
        return "contains"
    if inp in out.parents:
        return "sits inside"
    return None


def check_no_overlap(
    out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], flag: str = "--out"
) -> Path:
    """Refuse an output that equals, contains or sits inside an input; return it resolved."""
    out = resolve_path(out)
    for raw in inputs:
        if raw is None:
            continue
        inp = resolve_path(raw)
        relation = _overlap(out, inp)
        if relation is not None:
            raise ConfigError(
                f"{flag} {out} {relation} the input {inp}; writing there could destroy it. "
                f"Choose a {flag} outside every input"
            )
    return out


def _is_own(folder: Path, manifests: Iterable[str]) -> bool:
    return any((folder / name).is_file() for name in manifests)


def check_output_dir(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    force: bool = False,
    manifests: Iterable[str] = TOOL_MANIFESTS,
    reuse: bool = False,
    flag: str = "--out",
) -> Path:
    """Check an output folder before any work starts; return it resolved.

    Args:
        out: The folder the command writes.
        inputs: Files and folders the command reads (``None`` entries are skipped).
        force: The user asked to replace an existing folder.
        manifests: File names that mark a folder as this command's own output.
        reuse: The command continues or refreshes its own output in place (``train --resume``,
            ``calibrate collect``, reports): an existing folder is accepted when it is empty or
            holds one of ``manifests``.
        flag: The option name used in messages.

    Raises:
        ConfigError: ``out`` overlaps an input, is a file, or exists and may not be replaced.
    """
    manifests = tuple(manifests)
    resolved = resolve_path(out)
    check_no_overlap(resolved, inputs, flag)
    if resolved.exists() and not resolved.is_dir():
        raise ConfigError(f"{flag} {out} is a file, not a folder; name a new or empty folder")
    if not resolved.is_dir():
        return resolved
    if not force and not reuse:
        raise ConfigError(f"{flag} {out} already exists; pass --force to replace it, or choose a new {flag}")
    if not any(resolved.iterdir()):
        return resolved
    if not _is_own(resolved, manifests):
        hint = "--force replaces" if force else "this command reuses"
        raise ConfigError(
            f"{flag} {out} is a folder that facesdk did not write (no {' or '.join(manifests)} inside); "
            f"{hint} only an empty folder or its own output. Choose a new {flag}"
        )
    return resolved


def _listed_files(folder: Path) -> set[Path]:
    """Every file a facesdk manifest in ``folder`` names, and the manifests themselves."""
    found: set[Path] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("path", "file") and isinstance(item, str) and "/" not in item:
                    found.add((folder / item).resolve())
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for name in TOOL_MANIFESTS:
        path = folder / name
        if not path.is_file():
            continue
        found.add(path.resolve())
        if path.suffix == ".json":
            with contextlib.suppress(OSError, ValueError):
                walk(json.loads(path.read_text(encoding="utf-8")))
    return found


def check_output_file(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    force: bool = False,
    flag: str = "--out",
) -> Path:
    """Check a single-file output before any work starts; return it resolved.

    Raises:
        ConfigError: ``out`` is a folder, an input, a facesdk manifest or a file listed in one
            (even with ``force``), or exists and ``force`` is not given.
    """
    resolved = resolve_path(out)
    for raw in inputs:
        if raw is not None and resolve_path(raw) == resolved:
            raise ConfigError(f"{flag} {out} is an input of this command; write the output to another file")
    if resolved.is_dir():
        raise ConfigError(f"{flag} {out} is a folder; name a file to write")
    if resolved in _listed_files(resolved.parent):
        raise ConfigError(
            f"{flag} {out} belongs to the facesdk export or set in {resolved.parent} (its manifest lists it); "
            "replacing it would break that folder. Write to another file name (e.g. model.int8.onnx "
            "elsewhere, or a new export with 'facesdk export build --precision int8')"
        )
    if resolved.exists() and not force:
        raise ConfigError(f"{flag} {out} already exists; pass --force to replace it, or choose another file")
    return resolved


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(parent: str | os.PathLike[str], max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove staging folders of killed runs in ``parent``; return those removed.

    Only folders matching this module's name pattern that hold its marker file are touched,
    and only when their owner process is gone or they are older than ``max_age_s``.
    """
    removed: list[Path] = []
    parent = Path(parent)
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if entry.is_symlink():
            continue
        match = _STAGING_RE.match(entry.name)
        if match and entry.is_dir() and (entry / _MARKER).is_file():
            stamp = entry / _MARKER
        else:
            match = _PARTIAL_RE.match(entry.name)
            if not match or not entry.is_file():
                continue
            stamp = entry
        try:
            age = now - stamp.stat().st_mtime
        except OSError:
            continue
        if _pid_alive(int(match.group(1))) and age < max_age_s:
            continue
        _remove(entry)
        log.info("removed %s, left by an interrupted facesdk run", entry)
        removed.append(entry)
    return removed


_LIVE: dict[Path, bool] = {}  # staging path -> remove it in the signal handler
_LOCK = threading.Lock()
_PREVIOUS: dict[int, Any] = {}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    with _LOCK:
        doomed = [path for path, remove in _LIVE.items() if remove]
    for path in doomed:
        _remove(path)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _register(path: Path, remove_on_signal: bool = True) -> None:
    """Track ``path`` until :func:`_unregister`; SIGINT/SIGTERM then raise (and remove it unless told not to)."""
    with _LOCK:
        first = not _LIVE
        _LIVE[path] = remove_on_signal
    if first and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if previous in (signal.SIG_DFL, signal.default_int_handler):
                _PREVIOUS[sig] = previous
                signal.signal(sig, _on_signal)


def _unregister(path: Path) -> None:
    with _LOCK:
        _LIVE.pop(path, None)
        last = not _LIVE
    if last and threading.current_thread() is threading.main_thread():
        for sig, previous in list(_PREVIOUS.items()):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous)
            del _PREVIOUS[sig]


def _publish_modes(folder: Path) -> None:
    """Give a staged tree the modes the umask allows (mkdtemp/mkstemp make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


class StagedDir:
    """A hidden staging folder beside ``out``, renamed onto it by :meth:`commit`.

    Use it as a context manager: leaving the block without :meth:`commit` (an exception,
    SIGINT, SIGTERM) removes the staging folder. Check ``out`` with :func:`check_output_dir`
    first; :meth:`commit` replaces an existing ``out`` only when ``force`` is true.
    """

    def __init__(self, out: str | os.PathLike[str], force: bool = False) -> None:
        self.out = resolve_path(out)
        self.force = force
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(self.out.parent)
        name = f".{self.out.name}.facesdk-staging-{os.getpid()}-{secrets.token_hex(4)}"
        path = self.out.parent / name
        path.mkdir(mode=0o700)
        (path / _MARKER).write_text(f"{os.getpid()}\n")
        self.path = path
        _register(path)
        return path

    def commit(self, swap: Callable[[Path, Path], None] | None = None) -> Path:
        """Move the staged folder onto ``out`` (replacing an old one only with ``force``).

        Args:
            swap: ``swap(staged, out)`` does the move instead (for callers with their own
                recovery of a swap cut short, such as the training state).
        """
        assert self.path is not None, "commit() outside the with block"
        (self.path / _MARKER).unlink(missing_ok=True)
        _publish_modes(self.path)
        if swap is not None:
            if self.out.exists() and not self.force:
                raise ConfigError(f"{self.out} appeared while this command ran; pass --force to replace it")
            swap(self.path, self.out)
            _unregister(self.path)
            self.path = None
            return self.out
        old = None
        if self.out.exists():
            if not self.force:
                raise ConfigError(f"{self.out} appeared while this command ran; pass --force to replace it")
            old = self.out.parent / f".{self.out.name}.facesdk-old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(self.out, old)
            (old / _MARKER).write_text(f"{os.getpid()}\n")
        os.replace(self.path, self.out)
        _unregister(self.path)
        self.path = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            _unregister(self.path)
            self.path = None


class StagedFile:
    """A hidden partial file beside ``out``, moved onto it when the ``with`` block ends well.

    The block receives the partial file's path (not yet created; it keeps ``out``'s suffix, so
    writers that choose a format by suffix work) and writes it. Leaving the block normally
    moves it onto ``out``; an exception, SIGINT or SIGTERM removes it, so a failed run leaves
    nothing and an existing ``out`` as it was. With ``keep_partial`` (outputs that grow while
    a live source runs: a camera's JSON lines, the demo's video) SIGINT and SIGTERM move what
    was written onto ``out`` instead, once it holds something, after the block's own cleanup
    (closing the writer) has run. Check ``out`` with :func:`check_output_file` first.
    """

    def __init__(self, out: str | os.PathLike[str], force: bool = False, keep_partial: bool = False) -> None:
        self.out = resolve_path(out)
        self.force = force
        self.keep_partial = keep_partial
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(self.out.parent)
        name = f".{self.out.name}.facesdk-partial-{os.getpid()}-{secrets.token_hex(4)}{self.out.suffix}"
        self.path = self.out.parent / name
        _register(self.path, remove_on_signal=not self.keep_partial)
        return self.path

    def commit(self) -> Path | None:
        """Move the partial file onto ``out`` (replacing an existing one only with ``force``).

        Returns:
            ``out``, or ``None`` when the block never created the file (``out`` is left as it was).
        """
        assert self.path is not None, "commit() outside the with block"
        path, self.path = self.path, None
        try:
            if not path.is_file():
                log.info("nothing was written for %s; left as it was", self.out)
                return None
            if self.out.exists() and not self.force:
                raise ConfigError(f"{self.out} appeared while this command ran; pass --force to replace it")
            os.replace(path, self.out)
        finally:
            path.unlink(missing_ok=True)
            _unregister(path)
        return self.out

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.path is None:
            return
        interrupted = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        written = self.path.is_file() and self.path.stat().st_size > 0
        if exc_type is None or (self.keep_partial and interrupted and written):
            self.commit()
            return
        _remove(self.path)
        _unregister(self.path)
        self.path = None


def merge_into(staged: Path, out: Path) -> None:
    """A ``swap`` for :meth:`StagedDir.commit` of commands that refresh their own folder in place
    (``eval``, ``bench``): each entry of ``staged`` replaces the entry of that name in ``out``;
    anything else in ``out`` (a user's notes beside the report) stays.

    Each entry moves by one rename; the entries it replaces wait in a marked ``-old-`` folder
    until the last has moved, so a killed merge leaves nothing that the next run does not clean.
    """
    if not out.exists():
        os.replace(staged, out)
        return
    old = out.parent / f".{out.name}.facesdk-old-{os.getpid()}-{secrets.token_hex(4)}"
    old.mkdir(mode=0o700)
    (old / _MARKER).write_text(f"{os.getpid()}\n")
    try:
        for entry in sorted(staged.iterdir()):
            target = out / entry.name
            if target.exists() or target.is_symlink():
                os.replace(target, old / entry.name)
            os.replace(entry, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)


@contextlib.contextmanager
def created_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``out`` if needed; if this block created it and fails leaving it empty, remove it."""
    path = Path(out)
    existed = path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                path.rmdir()  # only succeeds while it is empty
        raise
