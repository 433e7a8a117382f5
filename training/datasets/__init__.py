"""facesdk.training.datasets: readers for public face datasets, crop preparation, mixing."""

from __future__ import annotations

from .manifest import (
    ManifestRow,
    prepared_crop_policy,
    read_manifest,
    read_prepare_info,
    stratified_split,
    write_manifest,
)
from .mixing import MixSource, SamplingPlan, build_sampling_plan, sources_from_config, write_combined_manifest
from .prepare import PrepareOptions, PrepareResult, prepare_dataset
from .readers import DATASETS, DatasetInfo, dataset_title, get_dataset
from .records import FaceRecord, Issue, ReadReport

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "FaceRecord",
    "Issue",
    "ManifestRow",
    "MixSource",
    "PrepareOptions",
    "PrepareResult",
    "ReadReport",
    "SamplingPlan",
    "build_sampling_plan",
    "dataset_title",
    "get_dataset",
    "prepare_dataset",
    "prepared_crop_policy",
    "read_manifest",
    "read_prepare_info",
    "sources_from_config",
    "stratified_split",
    "write_combined_manifest",
    "write_manifest",
]
