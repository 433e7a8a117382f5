"""Serving: a Triton model repository from an export, a loopback Triton server and a typed client.

Needs the ``[serving]`` extra (``tritonclient``) in the main environment and a serving
environment for Triton's Python backend (``facesdk serve setup``); see ``docs/serving.md``.
"""

from __future__ import annotations

from .client import Client, ServerError, batch_sizes
from .env import ServingEnv, create_env, default_env_path, find_env
from .repository import BACKBONE, BACKBONE_PYTHON, PIPELINE, RepositoryConfig, write_repository
from .server import TritonServer, free_port

__all__ = [
    "BACKBONE",
    "BACKBONE_PYTHON",
    "PIPELINE",
    "Client",
    "RepositoryConfig",
    "ServerError",
    "ServingEnv",
    "TritonServer",
    "batch_sizes",
    "create_env",
    "default_env_path",
    "find_env",
    "free_port",
    "write_repository",
]
