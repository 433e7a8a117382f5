"""A procedural face-attribute set: face-like PNGs whose visible features carry the three labels.

Each image is a face-ish ellipse on a coloured background:

* **age group** (9 bins) ↔ background colour (one of nine well separated colours);
* **gender** (2) ↔ face shape and hair: a wide, round face with a short cap of hair for
  ``male``, a narrow, tall face framed by long hair for ``female``;
* **emotion** (7) ↔ the mouth: its colour (one of seven) and its curve (up, down, open, flat).

Position, size, skin tone and pixel noise vary at random, so a model has to find the
features rather than memorise pixels. A chosen share of each task's labels is left empty
(missing) in the manifests; the image still shows the feature. Generation is seeded and
deterministic: image ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from facesdk.contract.manifest_io import atomic_write_bytes, atomic_write_json
from facesdk.errors import ConfigError
from facesdk.progress import progress_bar
from facesdk.tasks import AGE, EMOTION, GENDER, MISSING

from .datasets.manifest import write_manifest

__all__ = ["SynthOptions", "SynthResult", "generate_synthetic", "render_face", "SYNTH_INFO"]

log = logging.getLogger(__name__)

SYNTH_INFO = "synth.json"

# BGR colours, far apart from each other and from skin tones.
AGE_COLOURS = (
    (40, 40, 200),
    (40, 160, 40),
    (200, 60, 40),
    (40, 200, 220),
    (200, 40, 200),
    (210, 210, 40),
    (20, 20, 20),
    (235, 235, 235),
    (0, 110, 255),
)
MOUTH_COLOURS = (
    (255, 0, 0),
    (0, 0, 255),
    (0, 200, 0),
    (255, 0, 255),
    (0, 0, 0),
    (255, 255, 0),
    (255, 255, 255),
)
# Mouth curve per emotion: surprise open, fear open small, disgust flat, happy up, sad down,
# angry down, neutral flat.
MOUTH_CURVE = ("open", "open", "flat", "up", "down", "down", "flat")


@dataclass(frozen=True, slots=True)
class SynthOptions:
    """Settings of a synthetic set.

    Attributes:
        count: Number of images (train + validation).
        missing: Share of each task's labels left empty, independently per task.
        seed: Seed; equal options give byte-identical files.
        size: Image side in pixels.
        val_fraction: Share of the images in ``val.csv``.
    """

    count: int = 2000
    missing: float = 0.3
    seed: int = 0
    size: int = 64
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        if int(self.count) < 10:
            raise ConfigError(f"synthetic count must be >= 10, got {self.count}")
        if not 0.0 <= float(self.missing) < 1.0:
            raise ConfigError(f"synthetic missing must be within [0, 1), got {self.missing}; try 0.3")
        if int(self.size) < 16:
            raise ConfigError(f"synthetic size must be >= 16 pixels, got {self.size}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ConfigError(f"synthetic val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True, slots=True)
class SynthResult:
    """Where a synthetic set lies: its folder and its two manifests."""

    root: Path
    train: Path
    val: Path


def render_face(labels: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one BGR uint8 face whose features show ``(age_group, gender, emotion)``."""
    age, gender, emotion = labels
    s = float(size)
    bg = np.clip(np.array(AGE_COLOURS[age]) + rng.integers(-20, 21, 3), 0, 255)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = bg.astype(np.uint8)
    cx, cy = s / 2 + rng.uniform(-0.05, 0.05) * s, s / 2 + rng.uniform(-0.05, 0.05) * s
    scale = rng.uniform(0.9, 1.1)
    axes = (0.38, 0.36) if gender == 0 else (0.22, 0.44)
    ax, ay = axes[0] * s * scale, axes[1] * s * scale
    skin = tuple(int(v) for v in rng.integers((110, 140, 170), (170, 190, 235)))
    sh = 4  # fixed-point shift for sub-pixel drawing
    f = 1 << sh

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * f)), int(round(y * f))

    hair = tuple(int(v) for v in rng.integers((15, 25, 45), (45, 60, 90)))
    if gender == 1:  # long hair framing the face down to the chin
        cv2.ellipse(img, pt(cx, cy), pt(ax + 0.14 * s, ay + 0.06 * s), 0, 0, 360, hair, -1, cv2.LINE_AA, sh)
    else:  # a short cap
        cv2.ellipse(img, pt(cx, cy - 0.08 * s), pt(ax + 0.02 * s, ay), 0, 180, 360, hair, -1, cv2.LINE_AA, sh)
    cv2.ellipse(img, pt(cx, cy), pt(ax, ay), 0, 0, 360, skin, -1, cv2.LINE_AA, sh)
    eye_y, eye_dx, eye_r = cy - 0.12 * s, 0.45 * ax, max(1.0, 0.045 * s)
    for side in (-1, 1):
        cv2.circle(img, pt(cx + side * eye_dx, eye_y), int(eye_r * f), (30, 30, 30), -1, cv2.LINE_AA, sh)
    brow = MOUTH_COLOURS[emotion]
    for side in (-1, 1):
        x0 = cx + side * eye_dx
        cv2.line(
            img,
            pt(x0 - 0.08 * s, eye_y - 0.08 * s),
            pt(x0 + 0.08 * s, eye_y - 0.08 * s),
            brow,
            max(1, int(0.05 * s)),
            cv2.LINE_AA,
            sh,
        )
    _draw_mouth(img, emotion, (cx, cy + 0.2 * s), 0.7 * ax if gender == 0 else 0.9 * ax, s, pt, sh)
    noise = rng.normal(0.0, 6.0, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _draw_mouth(
    img: np.ndarray, emotion: int, centre: tuple[float, float], half: float, s: float, pt, sh
) -> None:  # noqa: ANN001
    colour, curve = MOUTH_COLOURS[emotion], MOUTH_CURVE[emotion]
    thick = max(2, int(round(0.08 * s)))
    x, y = centre
    if curve == "open":
        r = 0.09 * s if emotion == 0 else 0.06 * s
        cv2.ellipse(img, pt(x, y), pt(0.8 * r, r), 0, 0, 360, colour, -1, cv2.LINE_AA, sh)
    elif curve == "flat":
        cv2.line(img, pt(x - half, y), pt(x + half, y), colour, thick, cv2.LINE_AA, sh)
    else:
        start, end = (0, 180) if curve == "up" else (180, 360)
        dy = -0.04 * s if curve == "up" else 0.04 * s
        cv2.ellipse(img, pt(x, y + dy), pt(half, 0.08 * s), 0, start, end, colour, thick, cv2.LINE_AA, sh)


def _labels(rng: np.random.Generator) -> tuple[int, int, int]:
    return (
        int(rng.integers(AGE.num_classes)),
        int(rng.integers(GENDER.num_classes)),
        int(rng.integers(EMOTION.num_classes)),
    )


def generate_synthetic(out: str | os.PathLike[str], options: SynthOptions = SynthOptions()) -> SynthResult:
    """Write ``images/*.png``, ``train.csv``, ``val.csv`` and ``synth.json`` under ``out``.

    A folder whose ``synth.json`` records the same options is reused as it is; one with
    other options is refused rather than overwritten.
    """
    root = Path(out)
    result = SynthResult(root, root / "train.csv", root / "val.csv")
    info_path = root / SYNTH_INFO
    if info_path.is_file():
        import json

        found = json.loads(info_path.read_text())
        if found == asdict(options) and result.train.is_file() and result.val.is_file():
            log.info("synthetic set in %s is up to date; reusing it", root)
            return result
        raise ConfigError(
            f"{root} holds a synthetic set made with {found}, not {asdict(options)}; "
            "choose another folder or delete it"
        )
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in progress_bar(range(options.count), desc="synthetic faces", unit="img", leave=False):
        rng = np.random.default_rng([options.seed, i])
        labels = _labels(rng)
        img = render_face(labels, options.size, rng)
        ok, png = cv2.imencode(".png", img)
        assert ok
        rel = f"images/{i:06d}.png"
        atomic_write_bytes(root / rel, png.tobytes())
        kept = tuple(MISSING if rng.random() < options.missing else v for v in labels)
        is_val = rng.random() < options.val_fraction
        rows.append((is_val, (rel, *kept)))
    write_manifest(result.train, [r for v, r in rows if not v])
    write_manifest(result.val, [r for v, r in rows if v])
    atomic_write_json(info_path, asdict(options))
    log.info("wrote %d synthetic faces to %s", options.count, root)
    return result
