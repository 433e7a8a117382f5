"""Build the C++ demo once per session (incrementally, in pytest's cache) or skip with the reason."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# cmake's words for a missing dependency: these skip the tests; any other build failure fails them.
MISSING_DEPENDENCY = (
    "Could not find a package configuration file",
    "OpenCV",
    "nlohmann_json",
    "no inference backend",
)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def demo_binary(request: pytest.FixtureRequest) -> Path:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (run cpp_demo/ci_setup.sh)")
    if importlib.util.find_spec("openvino") is None:
        pytest.skip(
            "openvino is not installed (pip install 'facesdk[openvino]'): it provides the C++ runtime"
        )
    from openvino.utils import get_cmake_path

    build = Path(request.config.cache.mkdir("cpp_demo_build"))
    configure = subprocess.run(
        [
            "cmake",
            "-S",
            str(ROOT / "cpp_demo"),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DOpenVINO_DIR={get_cmake_path()}",  # this environment's wheel, not a cached one
        ],
        capture_output=True,
        text=True,
    )
    if configure.returncode != 0:
        output = configure.stdout + configure.stderr
        if any(word in output for word in MISSING_DEPENDENCY):
            pytest.skip(f"cpp_demo dependencies missing (run cpp_demo/ci_setup.sh): {_tail(output, 3)}")
        pytest.fail(f"cmake configure failed: {_tail(output)}")
    make = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    if make.returncode != 0:
        pytest.fail(f"cpp_demo build failed: {_tail(make.stdout + make.stderr, 12)}")
    return build / "facesdk_demo"


@pytest.fixture(scope="session")
def pose_binary(demo_binary: Path) -> Path:
    """``facesdk_pose``, built beside the demo: landmarks on stdin, the head pose as JSON lines."""
    return demo_binary.parent / "facesdk_pose"


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = pytest.importorskip("skimage.data")
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="session")
def astronaut_bgr(astronaut_png: Path) -> np.ndarray:
    return cv2.imread(str(astronaut_png))
