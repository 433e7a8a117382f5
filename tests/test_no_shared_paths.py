"""No file of the project outside tests/ and .ci/ names ``../shared``, a folder that exists only beside
this checkout (the workspace's copy of YuNet), never on a user's machine: the detector ships inside the
package, and docs, scripts and benchmark pages give commands that run anywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = ("tests/", ".ci/")
NEEDLE = b"../shared"


def project_files(root: Path = ROOT) -> list[str]:
    """Tracked and untracked, not ignored, files of the checkout (``git ls-files``)."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    return sorted({name for name in done.stdout.decode().split("\0") if name})


def naming_shared(root: Path = ROOT) -> list[str]:
    """Text files outside tests/ and .ci/ that contain ``../shared``."""
    found = []
    for name in project_files(root):
        path = root / name
        if name.startswith(ALLOWED) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192] and NEEDLE in data:  # binary files (models, images) are not text
            found.append(name)
    return found


def test_no_file_outside_tests_names_the_workspace_folder() -> None:
    assert not naming_shared(), f"these files name ../shared (use the packaged detector): {naming_shared()}"


def test_the_check_sees_untracked_files_and_skips_tests(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "docs" / "page.md").write_text("FACESDK_HOME=../shared facesdk analyze photo.jpg\n")
    (tmp_path / "tests" / "test_x.py").write_text('YUNET = "../shared/models/yunet.onnx"\n')
    (tmp_path / "model.onnx").write_bytes(b"\0\1../shared")
    assert naming_shared(tmp_path) == ["docs/page.md"]
