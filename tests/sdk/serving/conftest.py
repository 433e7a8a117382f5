"""Fixtures for the serving tests: the serving environment, a repository, a running Triton server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.http", reason="the serving tests need the [serving] extra (tritonclient)")


@pytest.fixture(scope="session")
def serving_env():  # noqa: ANN201
    """The serving environment; created on first use, the tests skip with the reason if that fails."""
    from facesdk.errors import DependencyError
    from facesdk.serving import create_env, default_env_path, find_env

    try:
        return find_env()
    except DependencyError as missing:
        try:
            return create_env()
        except Exception as exc:  # noqa: BLE001 - any failure is a reason to skip
            pytest.skip(
                f"no serving environment at {default_env_path()} ({missing}) and creating it failed: {exc}"
            )


SERVED_TEMPERATURES = {"age": 2.5, "gender": 0.4}  # emotion left out: 1.0


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny export with softmax temperatures, so every served probability is a calibrated one.

    Overrides tests/sdk/conftest.py's fixture for the serving tests: the server, the in-process
    Analyzer they compare with, and the backbone's raw logits all use this export.
    """
    import json

    from facesdk.testing import make_tiny_export

    directory = tmp_path_factory.mktemp("served_export")
    make_tiny_export(directory, max_batch=8)
    data = json.loads((directory / "export.json").read_text())
    data["temperatures"] = SERVED_TEMPERATURES
    (directory / "export.json").write_text(json.dumps(data))
    return directory


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, tiny_export: Path, yunet_path: Path) -> Path:
    from facesdk.serving import RepositoryConfig, write_repository

    repo = tmp_path_factory.mktemp("triton_repo")
    write_repository(
        tiny_export,
        repo,
        RepositoryConfig(backend="python", instances=2, max_queue_delay_us=20000),
        yunet_path,
    )
    return repo


@pytest.fixture(scope="session")
def server(serving_env, repository: Path) -> Iterator[object]:  # noqa: ANN001
    from facesdk.serving import BACKBONE_PYTHON, PIPELINE, TritonServer

    srv = TritonServer(repository, [PIPELINE, BACKBONE_PYTHON], serving_env, startup_timeout=180)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop(timeout=15)
