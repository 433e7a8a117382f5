"""Many sources, one Analyzer: shared batches, source tags, a failing source does not stop the others."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from facesdk.errors import SourceError
from facesdk.scheduling import ScheduleConfig


def _frames(image: np.ndarray, count: int, fail_after: int | None = None, delay: float = 0.0):  # noqa: ANN202
    for i in range(count):
        if fail_after is not None and i == fail_after:
            raise SourceError("camera unplugged")
        if delay:
            time.sleep(delay)
        yield np.roll(image, 2 * i, axis=1)


def test_three_sources_one_failing(analyzer, astronaut_bgr) -> None:  # noqa: ANN001
    sources = {
        "a": _frames(astronaut_bgr, 6),
        "b": _frames(astronaut_bgr, 6, delay=0.05),
        "bad": _frames(astronaut_bgr, 6, fail_after=2),
    }
    # every face; batches of up to 8 (ONNX Runtime on the CPU would send one crop per call)
    multi = analyzer.streams(sources, max_delay_ms=200, batch_size=8, schedule=ScheduleConfig(enabled=False))
    results = list(multi)
    counts = Counter(r.source for r in results)
    assert counts["a"] == 6 and counts["b"] == 6 and counts["bad"] == 2
    assert set(multi.errors) == {"bad"} and isinstance(multi.errors["bad"], SourceError)
    assert max(multi.batches) > 1, f"faces of several sources never shared a backbone call: {multi.batches}"
    for source in ("a", "b"):
        indices = [r.index for r in results if r.source == source]
        assert indices == sorted(indices)
        assert all(
            len(r.faces) == 1 and r.faces[0].track_id is not None for r in results if r.source == source
        )


def test_results_equal_single_stream(analyzer, astronaut_bgr) -> None:  # noqa: ANN001
    frames = [np.roll(astronaut_bgr, 5 * i, axis=1) for i in range(3)]
    multi = list(analyzer.streams([frames, frames], track=False))
    assert sorted(r.source for r in multi) == ["source0"] * 3 + ["source1"] * 3
    for r in multi:
        want = analyzer.analyze(frames[r.index])
        got_p = [p for a in r.faces[0].attributes.values() for p in a.probs.values()]
        want_p = [p for a in want.faces[0].attributes.values() for p in a.probs.values()]
        np.testing.assert_allclose(got_p, want_p, atol=1e-6)


def test_unopenable_source_is_reported(analyzer, astronaut_bgr, tmp_path) -> None:  # noqa: ANN001
    missing = tmp_path / "missing.mp4"
    multi = analyzer.streams([missing, [astronaut_bgr]])
    assert [r.source for r in multi] == ["source1"]
    assert str(missing) in multi.errors
    with pytest.raises(SourceError):
        analyzer.streams([missing], on_error="raise")
