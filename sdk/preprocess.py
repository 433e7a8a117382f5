"""The preprocessing spec: how a face crop becomes the model's input tensor.

It travels with the weights (checkpoint manifest, export manifest, ONNX metadata), like
timm's pretrained config, so every stage makes crops the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .errors import ConfigError

__all__ = [
    "ALIGN_VERSION",
    "SUPPORTED_ALIGN_VERSIONS",
    "CropPolicy",
    "Preprocess",
    "to_input_tensor",
    "INTERPOLATIONS",
]

INTERPOLATIONS: dict[str, int] = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
}

CROP_KINDS = ("align5", "box", "full")

ALIGN_VERSION = 1
"""Version of the crop geometry (``facesdk.faces.align``: template, margin, box square, border).

It is part of every model's contract: crops of another geometry are other inputs. Any change to
what :func:`facesdk.faces.align.crop_face` returns for a given spec must bump it (the golden
crops in ``tests/core/golden/`` fail until then), and bump the manifests' schema versions so
that older readers, which ignore unknown fields, refuse the new manifests instead of cutting
version-1 crops for them.
"""

SUPPORTED_ALIGN_VERSIONS: tuple[int, ...] = (ALIGN_VERSION,)
"""Crop geometry versions this release can make; a manifest recording another one is refused."""


@dataclass(frozen=True, slots=True)
class CropPolicy:
    """How a face is cut out of a frame.

    Attributes:
        kind: ``"align5"`` warps the five detector landmarks onto a canonical template
            (similarity transform); ``"box"`` takes a square around the detection box;
            ``"full"`` resizes the whole image (for inputs that are already face crops).
        margin: Extra context around the face, as a fraction of the face size; age and
            gender read hair and face shape, so the default keeps some context.
        align_version: The crop geometry version (:data:`ALIGN_VERSION`); part of the
            fingerprint whenever it is not 1.
    """

    kind: str = "align5"
    margin: float = 0.4
    align_version: int = ALIGN_VERSION

    def __post_init__(self) -> None:
        if self.kind not in CROP_KINDS:
            raise ConfigError(f"crop kind must be one of {CROP_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.margin <= 3.0:
            raise ConfigError(f"crop margin must be within [0, 3], got {self.margin}")
        if self.align_version not in SUPPORTED_ALIGN_VERSIONS:
            raise ConfigError(
                f"crop geometry version {self.align_version} is not made by this facesdk (it makes version(s) "
                f"{list(SUPPORTED_ALIGN_VERSIONS)}); use the facesdk release the model was trained with"
            )

    def to_json(self) -> dict[str, Any]:
        """The JSON form; ``align_version`` 1 is left implicit so files from before versioning match."""
        out: dict[str, Any] = {"kind": self.kind, "margin": self.margin}
        if self.align_version != 1:
            out["align_version"] = self.align_version
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CropPolicy:
        """Read a crop policy; a record without ``align_version`` is version 1 (before versioning)."""
        return cls(
            kind=str(data.get("kind", "align5")),
            margin=float(data.get("margin", 0.4)),
            align_version=int(data.get("align_version", 1)),
        )


@dataclass(frozen=True, slots=True)
class Preprocess:
    """Input size, normalisation, interpolation and crop policy of a model.

    The model input is float32, N x 3 x H x W, RGB, ``(pixel / 255 - mean) / std``.
    """

    input_size: tuple[int, int] = (384, 384)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop: CropPolicy = field(default_factory=CropPolicy)

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or min(size) < 8:
            raise ConfigError(f"input_size must be (height, width) with each >= 8, got {self.input_size}")
        object.__setattr__(self, "input_size", size)
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ConfigError(f"{name} must have 3 values (R, G, B), got {value}")
            object.__setattr__(self, name, value)
        if min(self.std) <= 0:
            raise ConfigError(f"std values must be > 0, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}"
            )

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]

    @property
    def cv2_interpolation(self) -> int:
        return INTERPOLATIONS[self.interpolation]

    def to_json(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop": self.crop.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocess:
        try:
            return cls(
                input_size=tuple(data["input_size"]),
                mean=tuple(data["mean"]),
                std=tuple(data["std"]),
                interpolation=str(data.get("interpolation", "bicubic")),
                crop=CropPolicy.from_json(data.get("crop", {})),
            )
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"preprocessing spec needs input_size (2 integers), mean and std (3 numbers each); got {data!r:.200}"
            ) from exc

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: equal specs make equal crops.

        The form includes the crop geometry version (left out at version 1, so fingerprints
        recorded before versioning stay valid; any other version changes the fingerprint).
        """
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def to_input_tensor(crops_bgr: Sequence[np.ndarray], spec: Preprocess) -> np.ndarray:
    """Turn BGR uint8 crops into the model's N x 3 x H x W float32 RGB input.

    Crops of another size are resized with the spec's interpolation.
    """
    out = np.empty((len(crops_bgr), 3, spec.height, spec.width), dtype=np.float32)
    scale = (1.0 / (255.0 * np.asarray(spec.std, dtype=np.float32))).reshape(3, 1, 1)
    shift = (np.asarray(spec.mean, dtype=np.float32) / np.asarray(spec.std, dtype=np.float32)).reshape(
        3, 1, 1
    )
    for i, crop in enumerate(crops_bgr):
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ConfigError(f"crops must be H x W x 3 uint8 BGR, got shape {crop.shape} dtype {crop.dtype}")
        if crop.shape[:2] != spec.input_size:
            crop = cv2.resize(crop, (spec.width, spec.height), interpolation=spec.cv2_interpolation)
        chw = crop[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
        out[i] = chw * scale - shift
    return out
