"""Zero-shot face attributes from a CLIP text tower, compiled into linear heads.

Importing :mod:`facesdk.training` registers the ``zeroshot`` adaptation method
(needed to load a zero-shot checkpoint); building one needs open_clip, the
``[zeroshot]`` extra. The names below are imported on first use, so that the training
package can import its method without a cycle through the checkpoint loader.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "METHOD_NAME",
    "NormalizedLinear",
    "ZeroShot",
    "PromptSet",
    "TaskPrompts",
    "load_prompts",
    "parse_prompts",
    "zeroshot_heads_state",
    "init_heads_from_zeroshot",
    "start_from_zeroshot",
    "build_zeroshot_checkpoint",
]

_WHERE = {
    "METHOD_NAME": "method",
    "NormalizedLinear": "method",
    "ZeroShot": "method",
    "PromptSet": "prompts",
    "TaskPrompts": "prompts",
    "load_prompts": "prompts",
    "parse_prompts": "prompts",
    "zeroshot_heads_state": "heads_init",
    "init_heads_from_zeroshot": "heads_init",
    "start_from_zeroshot": "heads_init",
    "build_zeroshot_checkpoint": "compile",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
