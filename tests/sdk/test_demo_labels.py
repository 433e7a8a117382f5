"""The demo's labels: text on a filled box sized by cv2.getTextSize, nothing drawn outside it."""

from __future__ import annotations

import numpy as np
import pytest

from facesdk.cli import demo
from facesdk.cli.demo import draw_label, draw_results, label_box
from facesdk.results import FaceResult, FrameResult, Prediction

GREY = (40, 90, 200)  # a colour no black-and-white label pixel can have


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before != after).any(axis=2)


@pytest.mark.parametrize("text", ["#3", "emotion: happy 0.97", "gender: female 0.51", "Ag|jy_"])
def test_label_draws_only_inside_its_box(text: str) -> None:
    image = np.full((120, 320, 3), GREY, np.uint8)
    before = image.copy()
    x0, y0, x1, y1 = draw_label(image, text, (20, 80))
    assert (x0, y0, x1, y1) == label_box(text, (20, 80))
    changed = _changed(before, image)
    inside = np.zeros_like(changed)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    assert changed[inside].all(), "the background box is not filled"
    assert not changed[~inside].any(), "pixels drawn outside the label's box"
    box = image[y0 : y1 + 1, x0 : x1 + 1]
    assert (box.min(axis=2) > 160).sum() >= 8, "no white text inside the box"
    # the text is legible: it never touches the box's border (the padding stays background)
    border = np.concatenate([box[0], box[-1], box[:, 0], box[:, -1]])
    assert (border == 0).all()


def test_label_box_grows_with_the_text() -> None:
    short = label_box("a", (0, 50))
    long = label_box("a much longer label", (0, 50))
    assert long[2] > short[2] and long[0] == short[0] and long[3] == short[3] == 50


def _face(box: tuple[float, float, float, float]) -> FaceResult:
    attrs = {"emotion": Prediction("happy", 0.9, {"happy": 0.9, "sad": 0.1})}
    return FaceResult(box=box, score=0.99, landmarks=((0.0, 0.0),) * 5, attributes=attrs, track_id=7)


def test_results_labels_stay_in_the_frame_and_do_not_overlap() -> None:
    frame = np.full((240, 320, 3), GREY, np.uint8)
    result = FrameResult(index=0, timestamp=0.0, faces=(_face((100.0, 0.0, 80.0, 80.0)),))
    changed = _changed(frame, draw_results(frame, result))
    step = label_box("Ag", (0, 0))[3] - label_box("Ag", (0, 0))[1] + 1
    # a face touching the top edge: its two lines (track id, emotion) move down into the frame
    first = label_box("#7", (100, step - 1))
    second = label_box("emotion: happy 0.90", (100, 2 * step - 1))
    assert first[1] == 0 and first[3] < second[1]
    for x0, y0, x1, y1 in (first, second):
        assert changed[y0 : y1 + 1, x0 : x1 + 1].all()


def test_labels_say_when_a_face_is_not_estimated_yet_and_how_old_a_reading_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts: list[str] = []
    monkeypatch.setattr(demo, "draw_label", lambda image, text, *a, **k: texts.append(text))
    gender = Prediction.from_probs(("male", "female"), [0.8, 0.2])
    new = FaceResult((10, 40, 50, 50), 0.9, (), attributes={}, track_id=7, inferred=False)
    old = FaceResult(
        (100, 40, 50, 50), 0.9, (), {"gender": gender}, track_id=3, inferred=False, estimate_age_s=0.62
    )
    fresh = FaceResult((200, 40, 50, 50), 0.9, (), {"gender": gender}, track_id=4, inferred=True)
    demo.draw_results(np.zeros((120, 320, 3), np.uint8), FrameResult(0, 0.0, (new, old, fresh)))
    assert texts == ["#7 estimating...", "#3 (0.6 s ago)", "gender: male 0.80", "#4", "gender: male 0.80"]
