"""Kept for existing imports: the manifests" schema lives in :mod:`facesdk.contract.schema`."""

from __future__ import annotations

from .contract.schema import (
    CROP,
    FILE_ENTRY,
    PREPROCESS,
    TASK,
    Anything,
    Bool,
    Dim,
    FileName,
    Float,
    Int,
    MapOf,
    Obj,
    Seq,
    Spec,
    Str,
    check_plain_name,
    member_path,
    validate,
)

__all__ = [
    "CROP",
    "FILE_ENTRY",
    "PREPROCESS",
    "TASK",
    "Anything",
    "Bool",
    "check_plain_name",
    "Dim",
    "FileName",
    "Float",
    "Int",
    "MapOf",
    "member_path",
    "Obj",
    "Seq",
    "Spec",
    "Str",
    "validate",
]
