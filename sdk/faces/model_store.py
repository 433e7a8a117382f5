"""Where the face detector model lives, and how ``facesdk models fetch`` downloads it.

YuNet (OpenCV Zoo's ``face_detection_yunet_2026may.onnx``, MIT licence, 230 KB) ships inside the
package (:data:`PACKAGED_DETECTOR`, with its licence in ``facesdk/faces/models/LICENSE``), so the
SDK finds faces on an offline machine right after ``pip install``. Lookup order (first hit wins):

1. an explicit path (``Analyzer(detector=PATH)``, ``--detector PATH``);
2. ``$FACESDK_HOME/models/face_detection_yunet_2026may.onnx``;
3. the cache: ``$XDG_CACHE_HOME/facesdk/models/`` or ``~/.cache/facesdk/models/``;
4. the packaged copy.

The store (2 and 3) comes before the packaged copy, so a copy that ``facesdk models fetch``
installed wins. A file found in 2, 3 or 4 (or an explicit path that points there) is checked
against :data:`DETECTOR_SHA256` on every load (hashed once per process, see
:func:`facesdk.contract.integrity.cached_sha256`); a mismatch is an :class:`IntegrityError` naming the fix.
An explicit path elsewhere whose hash the store does not know is used as given, with a logged
warning.

Nothing here touches the network unless :func:`fetch_detector_model` is called.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..contract.fileio import sha256_file
from ..contract.integrity import cached_sha256, verify_file
from ..errors import ConfigError, DetectorNotFoundError, IntegrityError, SourceError

__all__ = [
    "DETECTOR_FILENAME",
    "DETECTOR_SHA256",
    "DETECTOR_URL",
    "PACKAGED_DETECTOR",
    "cache_dir",
    "candidate_paths",
    "default_fetch_dir",
    "fetch_detector_model",
    "find_detector_model",
    "verify_store_file",
]

logger = logging.getLogger(__name__)

DETECTOR_FILENAME = "face_detection_yunet_2026may.onnx"
DETECTOR_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
DETECTOR_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + DETECTOR_FILENAME
)
PACKAGED_DETECTOR = Path(__file__).resolve().parent / "models" / DETECTOR_FILENAME
"""The copy of YuNet inside the package, the last place the lookup tries."""

_CHUNK = 1 << 16
_FETCH_FIX = "Run 'facesdk models fetch' to replace it with a verified copy."
_PACKAGED_FIX = (
    "Reinstall facesdk (pip install --force-reinstall facesdk), or run 'facesdk models fetch': "
    "a fetched copy is used before the packaged one."
)


def cache_dir() -> Path:
    """The per-user model cache: ``$XDG_CACHE_HOME/facesdk/models`` or ``~/.cache/facesdk/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facesdk" / "models"


def default_fetch_dir() -> Path:
    """Where ``facesdk models fetch`` writes: ``$FACESDK_HOME/models`` when set, else :func:`cache_dir`."""
    home = os.environ.get("FACESDK_HOME")
    return Path(home) / "models" if home else cache_dir()


def candidate_paths() -> list[Path]:
    """The implicit lookup locations, in order (without an explicit path); the packaged copy is last."""
    paths = []
    home = os.environ.get("FACESDK_HOME")
    if home:
        paths.append(Path(home) / "models" / DETECTOR_FILENAME)
    paths.append(cache_dir() / DETECTOR_FILENAME)
    paths.append(PACKAGED_DETECTOR)
    return paths


def verify_store_file(path: str | os.PathLike[str]) -> Path:
    """Check a detector file of the model store (or the packaged copy) against :data:`DETECTOR_SHA256`.

    Raises:
        IntegrityError: The file differs; the message names the fix (``facesdk models fetch``,
            or reinstalling facesdk for the packaged copy).
    """
    packaged = os.path.realpath(path) == os.path.realpath(PACKAGED_DETECTOR)
    what = "packaged face detector model" if packaged else "face detector model"
    return verify_file(path, DETECTOR_SHA256, what=what, fix=_PACKAGED_FIX if packaged else _FETCH_FIX)


def _in_store(path: Path) -> bool:
    real = os.path.realpath(path)
    return any(
        os.path.realpath(c) == real for c in [*candidate_paths(), default_fetch_dir() / DETECTOR_FILENAME]
    )


def find_detector_model(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the detector model path, following the documented lookup order, verified.

    Raises:
        DetectorNotFoundError: The explicit path does not exist, or no location holds the
            model; the message lists where it looked and what to do.
        IntegrityError: The store's file differs from the sha256 recorded for it.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise DetectorNotFoundError(
                f"face detector model {path} does not exist; pass the path of {DETECTOR_FILENAME}, "
                "or leave detector unset to use the cache (fill it with 'facesdk models fetch')"
            )
        if _in_store(path):
            return verify_store_file(path)
        if cached_sha256(path) != DETECTOR_SHA256:
            logger.warning(
                "face detector %s is not the %s the model store knows (sha256 differs); using it as given",
                path,
                DETECTOR_FILENAME,
            )
        return path
    candidates = candidate_paths()
    for path in candidates:
        if path.is_file():
            return verify_store_file(path)
    looked = ", ".join(str(p) for p in candidates)
    raise DetectorNotFoundError(
        f"face detector model {DETECTOR_FILENAME} not found (looked in: {looked}; the last is the copy "
        "facesdk ships, missing from this installation). Reinstall facesdk, or run 'facesdk models fetch' "
        f"(needs internet once), or set FACESDK_HOME to a folder whose models/ holds {DETECTOR_FILENAME}, "
        "or pass detector=PATH (--detector PATH on the command line)."
    )


def _download(opener: Callable[..., Any], url: str, dest: Path, sha256: str, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                with opener(url, timeout=timeout) as response:
                    while block := response.read(_CHUNK):
                        digest.update(block)
                        fh.write(block)
            except (OSError, ValueError) as exc:  # ValueError: a URL urllib cannot parse
                raise SourceError(f"could not download {url}: {exc}") from exc
            fh.flush()
            os.fsync(fh.fileno())
        found = digest.hexdigest()
        if found != sha256:
            raise IntegrityError(
                f"{url} downloaded with sha256 {found} but {sha256} was expected; refusing to install it. "
                "Retry later, or download the file by hand and pass its path."
            )
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _as_url(url: str) -> str:
    """``url`` as given when it names a scheme; a plain path of an existing file as a ``file://`` URL."""
    if "://" in url:
        return url
    path = Path(url).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--url {url} is neither a URL (https://..., file://...) nor an existing file; "
            "name the detector's download URL or a local copy of it"
        )
    return path.resolve().as_uri()


def fetch_detector_model(
    dest_dir: str | os.PathLike[str] | None = None,
    url: str = DETECTOR_URL,
    sha256: str | None = None,
    force: bool = False,
    opener: Callable[..., Any] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the YuNet detector, verify its sha256 and write it atomically.

    Args:
        dest_dir: Target folder; defaults to :func:`default_fetch_dir`.
        url: Where to download from (``file://`` URLs work, for tests and mirrors; so does the
            plain path of a local copy).
        sha256: Expected hex digest (default: the one the store knows); a download that does not
            match leaves nothing behind. Only the store's own digest is accepted: the store
            verifies its file against that digest on every load, so another file installed
            under the detector's name would be refused later as damaged. Run another detector
            model by its path instead (it runs with a warning).
        force: Download even when a file with the right hash is already there.
        opener: ``urllib.request.urlopen``-like callable (injectable for tests; default
            ``urllib.request.urlopen``, imported here: with ``ssl`` it adds ~7 MiB to every process
            that only runs the detector).
        timeout: Socket timeout in seconds.

    Returns:
        The installed file's path.
    """
    if sha256 is not None and sha256.strip().lower() != DETECTOR_SHA256:
        raise ConfigError(
            f"--sha256 {sha256[:16]}... is not the digest of {DETECTOR_FILENAME} ({DETECTOR_SHA256[:16]}...): "
            "the model store installs only that file (it verifies it on every load). To run another "
            "detector model, pass its path instead: Analyzer(..., detector=PATH) or --detector PATH"
        )
    sha256 = DETECTOR_SHA256
    url = _as_url(url)
    dest = Path(dest_dir or default_fetch_dir()) / DETECTOR_FILENAME
    if dest.is_file() and not force:
        if sha256_file(dest) == sha256:
            logger.info("detector model already present at %s", dest)
            return dest
        logger.warning("%s has a different sha256; downloading it again", dest)
    logger.info("downloading %s to %s", url, dest)
    if opener is None:
        import urllib.request

        opener = urllib.request.urlopen
    _download(opener, url, dest, sha256, timeout)
    return dest
