"""Property-based tests (Hypothesis): whatever comes in, a result or a FaceSdkError, never anything else.

Runs stay small (``max_examples`` 50, no deadline) so CI stays fast; Hypothesis's database
replays any failure it found first on the next run.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (the [dev] extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from facesdk import Analyzer  # noqa: E402
from facesdk.contract.export_manifest import EXPORT_MANIFEST, ExportManifest, load_export_manifest  # noqa: E402
from facesdk.errors import FaceSdkError, ManifestError  # noqa: E402
from facesdk.results import FrameResult  # noqa: E402
from facesdk.testing import make_tiny_export  # noqa: E402

SMALL = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
)


@pytest.fixture(scope="module")
def module_analyzer(tmp_path_factory: pytest.TempPathFactory, yunet_path: Path) -> Iterator[Analyzer]:
    directory = tmp_path_factory.mktemp("prop_export")
    make_tiny_export(directory, max_batch=4)
    with Analyzer(directory, backend="onnxruntime", detector=yunet_path) as analyzer:
        yield analyzer


@st.composite
def frames(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["array", "array", "array", "view", "other"]))
    if kind == "other":
        return draw(st.sampled_from([None, [], [[1, 2], [3, 4]], "frame.png", 3.5, b"\x00" * 12, {"a": 1}]))
    dtype = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=48))
    array = draw(hnp.arrays(dtype, shape))
    if kind == "view" and array.ndim >= 2 and array.shape[1] > 1:
        array = array[:, ::2]  # not contiguous
    return array


@SMALL
@given(frame=frames())
def test_analyze_returns_a_result_or_a_facesdk_error(module_analyzer: Analyzer, frame: Any) -> None:
    try:
        result = module_analyzer.analyze(frame)
    except FaceSdkError as exc:
        assert str(exc)  # a message, one line
        return
    assert isinstance(result, FrameResult)
    for face in result.faces:
        for attribute in face.attributes.values():
            assert math.isfinite(sum(attribute.probs.values()))


@SMALL
@given(frame=hnp.arrays(np.uint8, st.tuples(st.integers(2, 40), st.integers(2, 40), st.just(3))))
def test_any_uint8_bgr_frame_gives_a_result(module_analyzer: Analyzer, frame: np.ndarray) -> None:
    assert isinstance(module_analyzer.analyze(frame), FrameResult)


# --- export.json field values ----------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["../model.onnx", "/abs/model.onnx", "batch", "fp32", "onnx", "align5", "age", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@pytest.fixture(scope="module")
def pristine_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[tuple]]:
    directory = tmp_path_factory.mktemp("prop_manifest")
    make_tiny_export(directory)
    data = json.loads((directory / EXPORT_MANIFEST).read_text())
    return directory, data, [p for p in _paths(data) if p]


TOP_LEVEL = ("kind", "schema_version", "created", "tasks", "preprocess", "input", "outputs", "batch", "opset",
             "models", "complexity", "parity", "source", "versions")  # fmt: skip


@pytest.mark.parametrize("field", TOP_LEVEL)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.data(), value=JSON, delete=st.booleans())
def test_export_json_field_values_load_or_raise_manifest_error(
    pristine_export: tuple[Path, dict[str, Any], list[tuple]],
    field: str,
    choice: st.DataObject,
    value: Any,
    delete: bool,
) -> None:
    """One field of export.json (or one nested inside it) replaced by any JSON value, or deleted."""
    directory, pristine, paths = pristine_export
    path = choice.draw(st.sampled_from([(field,), *(p for p in paths if p[0] == field)]))
    data = json.loads(json.dumps(pristine))
    node = data
    for part in path[:-1]:
        node = node[part]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    work = directory.parent / f"{directory.name}-work"
    if not work.exists():
        shutil.copytree(directory, work)
    (work / EXPORT_MANIFEST).write_text(json.dumps(data))
    try:
        manifest = load_export_manifest(work)
    except ManifestError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(manifest, ExportManifest)
