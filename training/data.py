"""Training data: manifest rows → model inputs through the SDK's own preprocessing.

Images are read with OpenCV (BGR) and turned into tensors by
:func:`facesdk.preprocess.to_input_tensor`, the function the runtime calls, so training and
serving preprocess identically. Manifests are read (and validated) by
:func:`facesdk.training.datasets.read_manifest`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facesdk.errors import ConfigError, MissingFileError
from facesdk.preprocess import Preprocess, to_input_tensor
from facesdk.tasks import MISSING, TaskSpec

from .datasets.manifest import COLUMNS, ManifestRow, read_manifest

__all__ = ["FaceDataset", "label_matrix", "read_manifest", "COLUMNS"]

log = logging.getLogger(__name__)

_COLUMN_OF = {"age": "age_group", "age_group": "age_group", "gender": "gender", "emotion": "emotion"}


def label_matrix(rows: Sequence[ManifestRow], tasks: Sequence[TaskSpec]) -> np.ndarray:
    """``N x T`` int64 labels in task order; ``-1`` where missing."""
    for task in tasks:
        if task.name not in _COLUMN_OF:
            raise ConfigError(
                f"task {task.name!r} has no manifest column; manifests carry {list(COLUMNS[1:])}"
            )
    out = np.empty((len(rows), len(tasks)), dtype=np.int64)
    for i, row in enumerate(rows):
        for j, task in enumerate(tasks):
            out[i, j] = task.check_index(getattr(row, _COLUMN_OF[task.name]))
    return out


class FaceDataset(Dataset):
    """Face crops and their labels; item ``i`` is ``(3 x H x W float32, T int64 labels)``.

    Args:
        rows: Manifest rows (absolute paths).
        tasks: Tasks in model output order.
        preprocess: The model's preprocessing spec (its crop policy should be ``full`` for
            already-cropped images: the crop is only resized and normalised).
        hflip: Flip half the images horizontally (training only). Whether image ``i`` is
            flipped depends on ``(seed, epoch, i)`` only, so runs are reproducible and resumable.
        seed: Seed of the augmentation.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        tasks: Sequence[TaskSpec],
        preprocess: Preprocess,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        self.rows = list(rows)
        self.tasks = tuple(tasks)
        self.preprocess = preprocess
        self.hflip = hflip
        self.seed = seed
        self.epoch = 0
        self.labels = torch.from_numpy(label_matrix(self.rows, self.tasks))

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def read_image(self, index: int) -> np.ndarray:
        """The BGR uint8 image of row ``index``."""
        path = self.rows[index].path
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise MissingFileError(f"cannot read image {path} (missing or not an image)")
        return image

    def _flip(self, index: int) -> bool:
        if not self.hflip:
            return False
        return bool(np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and labels of row ``index``; a padding marker ``~i`` gives row ``i`` with no labels.

        The sharded sampler pads an epoch to a multiple of the world size with such markers
        (see :mod:`facesdk.training.sampler`): the batch keeps its shape, the loss and the
        metrics ignore the row.
        """
        row = ~index if index < 0 else index
        if not 0 <= row < len(self.rows):
            raise IndexError(f"row {row} of a {len(self.rows)}-row dataset")
        image = self.read_image(row)
        if self._flip(row):
            image = np.ascontiguousarray(image[:, ::-1])
        x = to_input_tensor([image], self.preprocess)[0]
        labels = torch.full_like(self.labels[row], MISSING) if index < 0 else self.labels[row]
        return torch.from_numpy(x), labels
