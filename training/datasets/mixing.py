"""Mix several prepared manifests into one sampling plan with per-dataset weights.

Each dataset ``d`` with weight ``w_d`` and ``n_d`` rows gets per-sample weight
``w_d / (sum(w) * n_d)``: a sampler drawing by these weights picks dataset ``d`` with
probability ``w_d / sum(w)`` whatever its size, and samples uniformly within it. Feed
:attr:`SamplingPlan.weights` to ``torch.utils.data.WeightedRandomSampler`` (see
:meth:`SamplingPlan.sampler`). Training config (proposed)::

    data:
      train:
        - {manifest: prepared/fairface/train.csv, weight: 1.0}
        - {manifest: prepared/rafdb/train.csv, weight: 0.5}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.errors import ConfigError

from .manifest import ManifestRow, read_manifest, read_prepare_info, write_manifest

__all__ = [
    "MixSource",
    "SamplingPlan",
    "build_sampling_plan",
    "sources_from_config",
    "write_combined_manifest",
]


@dataclass(frozen=True, slots=True)
class MixSource:
    """One manifest in a mix, its weight and a display name (default: its dataset)."""

    manifest: Path
    weight: float = 1.0
    name: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(
                f"mix weight of {self.manifest} must be a finite number > 0, got {self.weight!r}"
            )


@dataclass(frozen=True)
class SamplingPlan:
    """Rows of all mixed manifests, each with the probability a weighted sampler draws it.

    Attributes:
        rows: All rows, manifest after manifest.
        weights: Per-row probabilities (float64, sum 1).
        source: Index into ``summary`` of each row's manifest.
        summary: Per manifest: name, path, rows, weight and share of draws.
    """

    rows: tuple[ManifestRow, ...]
    weights: np.ndarray
    source: np.ndarray
    summary: tuple[dict[str, Any], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def sampler(self, num_samples: int | None = None, generator: Any = None) -> Any:
        """A ``torch.utils.data.WeightedRandomSampler`` over :attr:`rows` (with replacement)."""
        from torch.utils.data import WeightedRandomSampler

        return WeightedRandomSampler(
            self.weights.tolist(), num_samples or len(self.rows), replacement=True, generator=generator
        )


def sources_from_config(value: Any) -> list[MixSource]:
    """Parse ``data.train``: a manifest path, or a list of paths / ``{manifest, weight, name}``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    sources = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            sources.append(MixSource(Path(item)))
        elif isinstance(item, Mapping) and "manifest" in item:
            unknown = set(item) - {"manifest", "weight", "name"}
            if unknown:
                raise ConfigError(
                    f"data.train[{i}] has unknown key(s) {sorted(unknown)}; allowed: manifest, weight, name"
                )
            sources.append(MixSource(Path(item["manifest"]), item.get("weight", 1.0), item.get("name")))
        else:
            raise ConfigError(
                f"data.train[{i}] must be a path or {{manifest: PATH, weight: W}}, got {item!r}"
            )
    if not sources:
        raise ConfigError("data.train lists no manifest")
    return sources


def build_sampling_plan(sources: Sequence[MixSource]) -> SamplingPlan:
    """Read every manifest and give each row its draw probability (see the module docstring)."""
    rows: list[ManifestRow] = []
    weights, origin, summary = [], [], []
    total = float(sum(s.weight for s in sources))
    for k, src in enumerate(sources):
        part = read_manifest(src.manifest)
        if not part:
            raise ConfigError(f"{src.manifest} has no rows; remove it from the mix")
        info = read_prepare_info(src.manifest) or {}
        name = src.name or info.get("dataset") or Path(src.manifest).parent.name
        share = src.weight / total
        rows.extend(part)
        weights.append(np.full(len(part), share / len(part)))
        origin.append(np.full(len(part), k, dtype=np.int64))
        summary.append(
            {
                "name": name,
                "manifest": str(src.manifest),
                "rows": len(part),
                "weight": src.weight,
                "share": share,
            }
        )
    return SamplingPlan(tuple(rows), np.concatenate(weights), np.concatenate(origin), tuple(summary))


def write_combined_manifest(plan: SamplingPlan, path: str | os.PathLike[str]) -> int:
    """Write all rows of ``plan`` as one manifest (paths made relative to its folder).

    For a validation set drawn from several datasets; training draws by
    :attr:`SamplingPlan.weights` instead.
    """
    folder = Path(path).resolve().parent
    rows = [
        (Path(os.path.relpath(r.path.resolve(), folder)).as_posix(), r.age_group, r.gender, r.emotion)
        for r in plan.rows
    ]
    return write_manifest(path, rows)
