"""The serving environment: a separate virtual environment that Triton's Python backend runs in.

Why a second environment: the ``tritonserver`` binary in the ``nvidia-pytriton`` wheel runs
Python-backend models in a stub process that embeds the interpreter's own ``libpython``, and
its stub exchanges tensors with numpy 1.x (with numpy 2 the models return empty outputs).
``nvidia-pytriton`` pins ``numpy<2``; the SDK's OpenCV 5 needs numpy >= 2. So the serving
environment carries ``numpy<2``, an OpenCV that accepts it (4.10), ONNX Runtime and facesdk
itself (installed without dependencies), while the main environment keeps numpy 2.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from ..errors import DependencyError, FaceSdkError

__all__ = ["SERVING_REQUIREMENTS", "ServingEnv", "create_env", "default_env_path", "find_env"]

logger = logging.getLogger(__name__)

SERVING_REQUIREMENTS = (
    "nvidia-pytriton>=0.7,<0.8",
    "numpy>=1.24,<2",
    "opencv-python-headless>=4.10,<4.12",
    "onnxruntime>=1.17",
    "tqdm>=4.60",
)
"""What ``facesdk serve setup`` installs into the serving environment (plus facesdk, no deps)."""

_PROBE = (
    "import json, sys, sysconfig, pytriton, numpy; "
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], 'libdir': sysconfig.get_config_var('LIBDIR'), "
    "'purelib': sysconfig.get_paths()['purelib'], 'pytriton': pytriton.__path__[0], 'numpy': numpy.__version__}))"
)


def default_env_path() -> Path:
    """``$FACESDK_SERVING_ENV``, else ``$FACESDK_HOME/serving-env``, else ``~/.cache/facesdk/serving-env``."""
    explicit = os.environ.get("FACESDK_SERVING_ENV")
    if explicit:
        return Path(explicit)
    home = os.environ.get("FACESDK_HOME")
    if home:
        return Path(home) / "serving-env"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facesdk" / "serving-env"


@dataclass(frozen=True, slots=True)
class ServingEnv:
    """A ready serving environment and where its Triton pieces are.

    Attributes:
        path: The virtual environment.
        python: Its interpreter.
        version: Its Python version (``"3.11"``), which picks the backend stub.
        libdir: The directory holding that interpreter's ``libpython`` (first on ``LD_LIBRARY_PATH``).
        site_packages: Its ``site-packages`` (put on the stub's ``PYTHONPATH``).
        pytriton: The installed ``pytriton`` package directory.
    """

    path: Path
    python: Path
    version: str
    libdir: Path
    site_packages: Path
    pytriton: Path

    @property
    def tritonserver(self) -> Path:
        return self.pytriton / "tritonserver" / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        """The Python backend's directory (``libtriton_python.so`` and the utils module)."""
        return self.pytriton / "tritonserver" / "backends" / "python"

    @property
    def stub(self) -> Path:
        return (
            self.pytriton
            / "tritonserver"
            / "python_backend_stubs"
            / self.version
            / "triton_python_backend_stub"
        )

    @property
    def server_libs(self) -> Path:
        """Shared libraries the wheel bundles for ``tritonserver``."""
        return self.pytriton.parent / "nvidia_pytriton.libs"

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Process environment for ``tritonserver``: libpython first, the venv's packages on the path."""
        env = dict(os.environ if base is None else base)
        libs = [str(self.libdir), str(self.server_libs)]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libs)
        env["PYTHONPATH"] = str(self.site_packages)
        env["PYTHONNOUSERSITE"] = "1"
        env["PATH"] = f"{self.path / 'bin'}:{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.path)
        return env


def find_env(path: str | os.PathLike[str] | None = None) -> ServingEnv:
    """Describe the serving environment at ``path`` (default :func:`default_env_path`).

    Raises:
        DependencyError: It does not exist or lacks ``nvidia-pytriton``; the message says how to create it.
    """
    root = Path(path) if path is not None else default_env_path()
    python = root / "bin" / "python"
    hint = f"create it with: facesdk serve setup --env {root}"
    if not python.exists():
        raise DependencyError(f"no serving environment at {root}; {hint}")
    proc = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise DependencyError(
            f"the serving environment {root} is incomplete ({proc.stderr.strip()[-300:]}); {hint}"
        )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if int(info["numpy"].split(".")[0]) >= 2:
        raise DependencyError(
            f"the serving environment {root} has numpy {info['numpy']}; Triton's Python backend stub needs "
            f"numpy<2 (with numpy 2 it returns empty outputs); {hint} --force"
        )
    env = ServingEnv(
        path=root,
        python=python,
        version=info["version"],
        libdir=Path(info["libdir"]),
        site_packages=Path(info["purelib"]),
        pytriton=Path(info["pytriton"]),
    )
    for needed in (env.tritonserver, env.stub, env.python_backend / "libtriton_python.so"):
        if not needed.exists():
            raise DependencyError(f"{needed} is missing from the serving environment {root}; {hint} --force")
    return env


def _sdk_root() -> Path:
    """The facesdk source tree (an editable install) or the installed distribution to install from."""
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file():
        return here
    raise FaceSdkError(
        "facesdk is not an editable/source install; pass --sdk PATH (a checkout or a wheel) to 'facesdk serve setup'"
    )


def create_env(
    path: str | os.PathLike[str] | None = None,
    sdk: str | os.PathLike[str] | None = None,
    force: bool = False,
    extra_pip_args: tuple[str, ...] = (),
) -> ServingEnv:
    """Create (or complete) the serving environment and return it.

    Args:
        path: Where (default :func:`default_env_path`).
        sdk: facesdk to install into it with ``--no-deps`` (default: this source tree, editable).
        force: Re-create it from scratch.
        extra_pip_args: Passed to ``pip install`` (``--index-url``...).
    """
    root = Path(path) if path is not None else default_env_path()
    if root.exists() and not force:
        try:
            return find_env(root)
        except DependencyError:
            logger.info("completing the serving environment at %s", root)
    logger.info("creating the serving environment at %s (python %s)", root, sys.version.split()[0])
    venv.EnvBuilder(with_pip=True, clear=force, symlinks=True).create(root)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", *extra_pip_args]
    subprocess.run([*pip, *SERVING_REQUIREMENTS], check=True)
    source = Path(sdk) if sdk is not None else _sdk_root()
    target = ["-e", str(source)] if source.is_dir() else [str(source)]
    subprocess.run([*pip, "--no-deps", *target], check=True)
    return find_env(root)
