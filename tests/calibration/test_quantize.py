"""INT8 quantization: fingerprint check, kept-float nodes, the accuracy gate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from facesdk.bench import wilson_lower_bound
from facesdk.calibration.quantize import AccuracyDropError, default_keep_float, quantize_export, select_nodes
from facesdk.errors import ConfigError, ManifestError
from facesdk.preprocess import Preprocess
from facesdk.tasks import DEFAULT_TASKS

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def quantized(tiny_onnx: Path, calib_dir: Path, spec: Preprocess, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    report = quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=0.0)
    return out, report


def test_report_fields(quantized):
    path, report = quantized
    assert path.is_file() and report["passed"]
    assert set(report["agreement"]) == {"age", "gender", "emotion"}
    assert report["held_out"] == 32 and report["calibration"]["crops"] == 32  # half held out by default
    assert all(0 <= v < 0.2 for v in report["relative_logit_error"].values())
    assert set(report["accuracy"]) == {"age", "gender", "emotion"}  # the CSV has labels
    assert report["accuracy"]["emotion"]["labelled"] < 32  # a quarter of emotion labels are missing
    for task, rate in report["agreement"].items():  # counts and bounds travel with every agreement
        assert report["agree"][task] == round(rate * 32)
        assert report["agreement_lower_bound"][task] == pytest.approx(
            wilson_lower_bound(report["agree"][task], 32)
        )
    assert len(report["quantized_nodes"]) == 8  # qkv, proj, fc1, fc2 of two blocks


def test_mismatched_calibration_set_is_refused(tiny_onnx, calib_dir, tmp_path, spec):
    other = Preprocess(input_size=(64, 64), interpolation="bilinear")
    with pytest.raises(ManifestError) as err:
        quantize_export(tiny_onnx, calib_dir, tmp_path / "x.onnx", other, DEFAULT_TASKS)
    assert spec.fingerprint() in str(err.value) and other.fingerprint() in str(err.value)
    assert not (tmp_path / "x.onnx").exists()


def test_kept_float_nodes_stay_float(tiny_onnx, quantized):
    path, _ = quantized
    source = onnx.load(str(tiny_onnx))
    quantized_names, kept = select_nodes(source, default_keep_float(DEFAULT_TASKS))
    ops = {n.name: n.op_type for n in source.graph.node}
    for op in ("Conv", "LayerNormalization", "Softmax", "Gemm"):
        assert any(ops[name] == op for name in kept), op
    assert any("/attn/MatMul" in name for name in kept) and any("attn_pool" in name for name in kept)
    graph = onnx.load(str(path)).graph
    producer = {out: n for n in graph.node for out in n.output}
    by_name = {n.name: n for n in graph.node}
    for name in kept:
        node = by_name[name]
        assert node.op_type == ops[name]  # still the float op
        feeders = {producer[i].op_type for i in node.input if i in producer}
        assert not feeders & {"QuantizeLinear", "DequantizeLinear"}, (name, feeders)
    for name in quantized_names:  # and the quantized ones really are
        assert {producer[i].op_type for i in by_name[name].input if i in producer} == {"DequantizeLinear"}


REACHABLE = 0.85
"""32 held-out crops all agreeing give a Wilson lower bound of 0.893: this threshold can pass."""


@pytest.fixture()
def flipping(monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> list[int]:
    """Make every INT8 candidate move held-out rows 0-5 of every task to another class."""
    import numpy as np

    import facesdk.calibration.quantize as quantize

    real, rows = quantize.model_outputs, [0, 1, 2, 3, 4, 5]

    def outputs(path, x, names, *args, **kwargs):  # noqa: ANN001, ANN202
        out = real(path, x, names, *args, **kwargs)
        if Path(path) != Path(tiny_onnx):
            for name in names:
                top = out[name][rows].argmax(1)
                out[name][rows, top] = out[name][rows].min(1) - 1.0  # the top class drops to the bottom
        return {n: np.asarray(v) for n, v in out.items()}

    monkeypatch.setattr(quantize, "model_outputs", outputs)
    return rows


def test_gate_passes_a_reachable_threshold_without_flips(
    quantized, tiny_onnx, calib_dir, tmp_path, spec, caplog
):
    """The same threshold the flipped candidate fails is passed by the real INT8 model."""
    assert min(quantized[1]["agreement"].values()) == 1.0  # the tiny model's INT8 agrees on all 32
    with caplog.at_level(logging.WARNING):
        report = quantize_export(
            tiny_onnx, calib_dir, tmp_path / "m.onnx", spec, DEFAULT_TASKS, threshold=REACHABLE
        )
    # ONNX Runtime's per-call "consider pre-processing" advice is filtered, and only that
    assert "pre-processing" not in caplog.text
    logging.getLogger().warning("please consider pre-processing")  # the filter is gone after the call
    assert "please consider pre-processing" in caplog.text
    assert report["passed"] and min(report["agreement_lower_bound"].values()) == pytest.approx(
        32 / (32 + 1.96**2), abs=1e-3
    )


def test_gate_fails_on_known_disagreements(flipping, tiny_onnx, calib_dir, tmp_path, spec):
    out = tmp_path / "model.int8.onnx"
    with pytest.raises(AccuracyDropError) as err:
        quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=REACHABLE, method="minmax")
    report = err.value.report
    assert report["agree"] == {t.name: 32 - len(flipping) for t in DEFAULT_TASKS}
    assert report["agreement_lower_bound"]["age"] == pytest.approx(wilson_lower_bound(26, 32))
    assert not report["passed"] and not out.exists()


def test_gate_decides_on_the_bound_not_the_point_estimate(monkeypatch, tiny_onnx, calib_dir, tmp_path, spec):
    """31 of 32 in agreement (0.969) is above 0.85 but its lower bound (0.843) is not: refused."""
    import facesdk.calibration.quantize as quantize

    real = quantize.model_outputs

    def one_flip(path, x, names, *args, **kwargs):  # noqa: ANN001, ANN202
        out = real(path, x, names, *args, **kwargs)
        if Path(path) != Path(tiny_onnx):
            out["gender"][0] = out["gender"][0][::-1].copy()  # two classes: reversed is the other class
        return out

    monkeypatch.setattr(quantize, "model_outputs", one_flip)
    with pytest.raises(AccuracyDropError) as err:
        quantize_export(tiny_onnx, calib_dir, tmp_path / "m.onnx", spec, DEFAULT_TASKS, threshold=REACHABLE,
                        sensitivity_budget_s=0)  # fmt: skip
    report = err.value.report
    assert report["agree"]["gender"] == 31 and report["agreement"]["gender"] > REACHABLE
    assert report["agreement_lower_bound"]["gender"] < REACHABLE


def test_unreachable_gate_is_refused_before_quantizing(tiny_onnx, calib_dir, tmp_path, spec):
    with pytest.raises(ConfigError, match="needs >= 189 held-out crops") as err:
        quantize_export(tiny_onnx, calib_dir, tmp_path / "m.onnx", spec, DEFAULT_TASKS, threshold=0.98)
    assert "378 crops" in str(err.value) and not (tmp_path / "m.onnx").exists()


def test_gate_fails_and_names_nodes(flipping, tiny_onnx, calib_dir, tmp_path, spec):
    out = tmp_path / "model.int8.onnx"
    with pytest.raises(AccuracyDropError) as err:
        quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=REACHABLE, method="minmax")
    assert "blocks." in str(err.value) or "/fc" in str(err.value) or "/qkv" in str(err.value)
    assert err.value.report["sensitivity"] and not err.value.report["passed"]
    assert not out.exists()  # nothing written on failure


def test_gate_accept_drop_writes_model(flipping, tiny_onnx, calib_dir, tmp_path, spec):
    out = tmp_path / "model.int8.onnx"
    report = quantize_export(
        tiny_onnx,
        calib_dir,
        out,
        spec,
        DEFAULT_TASKS,
        threshold=REACHABLE,
        accept_drop=True,
        method="percentile",
        sensitivity_budget_s=0,
    )
    assert out.is_file() and report["accepted_drop"] and not report["passed"]


def test_also_keep_float_adds_to_the_defaults(tiny_onnx, calib_dir, tmp_path, spec):
    out = tmp_path / "model.int8.onnx"
    report = quantize_export(
        tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=0.0, also_keep_float=["*/proj/*"]
    )
    patterns = report["keep_float_patterns"]
    assert patterns[: len(default_keep_float(DEFAULT_TASKS))] == default_keep_float(DEFAULT_TASKS)
    assert patterns[-1] == "*/proj/*"
    assert len(report["quantized_nodes"]) == 6  # qkv, fc1, fc2 of two blocks: proj stays float
    assert not any("/proj/" in name for name in report["quantized_nodes"])


def test_gate_message_names_the_options_to_use(flipping, tiny_onnx, calib_dir, tmp_path, spec):
    with pytest.raises(AccuracyDropError) as err:
        quantize_export(
            tiny_onnx,
            calib_dir,
            tmp_path / "m.onnx",
            spec,
            DEFAULT_TASKS,
            threshold=REACHABLE,
            sensitivity_budget_s=30,
        )
    message = str(err.value)
    assert "Wilson 95% lower bounds" in message
    assert "also_keep_float=[" in message and "accept_drop=true" in message and "--int8-option" in message


def _best(search: dict) -> str:
    """The try ``method="auto"`` must keep: highest lowest-task agreement, then smallest mean logit error."""

    def rank(m: str) -> tuple[float, float]:
        errors = search[m]["relative_logit_error"].values()
        return min(search[m]["agreement"].values()), -sum(errors) / len(errors)

    return max(search, key=rank)  # the first of equals, as METHODS orders them


@pytest.fixture(scope="module")
def auto_quantized(tiny_onnx, calib_dir, spec, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("auto") / "m.onnx"
    return out, quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, method="auto", threshold=0.0)


def test_auto_method_tries_all_and_writes_the_best(auto_quantized, tiny_onnx, calib_dir):
    """All three methods are tried, the best is kept, and the file written is that method's model
    (its logit error, recomputed on the held-out crops, matches that try and no other)."""
    import numpy as np

    from facesdk.calibration.accuracy import compare_models, holdout_split, model_outputs
    from facesdk.calibration.calibset import load_calibration_set

    out, report = auto_quantized
    search = report["method_search"]
    assert list(search) == ["entropy", "percentile", "minmax"] and report["passed"]
    assert report["method"] == _best(search)
    assert report["agreement"] == search[report["method"]]["agreement"]
    crops, labels = load_calibration_set(calib_dir).arrays(calib_dir)
    _, held = holdout_split(len(crops), 0.5, 0)
    names = [t.name for t in DEFAULT_TASKS]
    x = np.ascontiguousarray(crops[held])

    def logits(path: Path) -> dict:
        return model_outputs(path, x, names)

    again = compare_models(logits(tiny_onnx), logits(out), labels[held], names)
    kept = search[report["method"]]["relative_logit_error"]
    assert again["relative_logit_error"] == pytest.approx(kept, rel=1e-5)
    others = [s["relative_logit_error"] for m, s in search.items() if m != report["method"]]
    assert all(o != pytest.approx(kept, rel=1e-5) for o in others)  # the methods' models differ


def test_auto_method_choice_does_not_depend_on_the_gate(
    auto_quantized, flipping, tiny_onnx, calib_dir, tmp_path, spec
):
    """With known disagreements failing the gate the same method is kept, then the drop is accepted."""
    report = quantize_export(
        tiny_onnx, calib_dir, tmp_path / "m.onnx", spec, DEFAULT_TASKS, method="auto", threshold=REACHABLE,
        accept_drop=True, sensitivity_budget_s=0,
    )  # fmt: skip
    assert report["method"] == auto_quantized[1]["method"]
    assert report["accepted_drop"] and not report["passed"]


def test_unknown_method_is_refused(tiny_onnx, calib_dir, tmp_path, spec):
    with pytest.raises(ConfigError, match="auto"):
        quantize_export(tiny_onnx, calib_dir, tmp_path / "m.onnx", spec, DEFAULT_TASKS, method="best")


def test_cli_quantize_with_auto_method(tiny_onnx, tmp_path, images, capsys):
    """``facesdk calibrate quantize --method auto`` on an ONNX file with facesdk metadata: exit 0,
    the kept method printed, the full report (with every try) written."""
    import json

    from facesdk.calibration.collect import Source, collect
    from facesdk.cli import main
    from facesdk.testing import tiny_manifest

    manifest = tiny_manifest(size=64)
    model = onnx.load(str(tiny_onnx))
    onnx.helper.set_model_props(model, manifest.onnx_metadata())
    onnx.save(model, str(tmp_path / "model.onnx"))
    collect([Source(images["csv"])], tmp_path / "calib", manifest.preprocess, count=32, progress=False)
    argv = [
        "calibrate",
        "quantize",
        "--model",
        str(tmp_path / "model.onnx"),
        "--calib",
        str(tmp_path / "calib"),
    ]
    argv += ["--out", str(tmp_path / "m.onnx"), "--method", "auto", "--threshold", "0", "--report"]
    assert main([*argv, str(tmp_path / "r.json")]) == 0
    out = "\n" + capsys.readouterr().out  # the quantizer prints progress lines before the summary
    printed = json.loads(out[out.rindex("\n{\n") + 1 :])
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["method_search"]) == ["entropy", "percentile", "minmax"]
    assert printed["method"] == report["method"] == _best(report["method_search"]) and printed["passed"]
    assert (tmp_path / "m.onnx").is_file()


def test_int8_model_carries_its_own_digest(quantized, tiny_onnx):
    """The quantizer copies the FP32 file's metadata; the INT8 file is stamped with its own digest."""
    from facesdk.contract.integrity import check_onnx_digest, stamp_onnx_digest

    path, _ = quantized
    fp32 = tiny_onnx.parent / "stamped-fp32.onnx"
    fp32.write_bytes(tiny_onnx.read_bytes())
    digest = check_onnx_digest(path)
    assert digest is not None and digest != stamp_onnx_digest(fp32)


@pytest.fixture()
def needs_both_mlp_layers_float(monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    """Every INT8 candidate moves held-out rows 0-5 to another class while any fc1 or fc2 MatMul
    is quantized: a gate that no single pattern satisfies, the way a second block can still fail."""
    import re

    import numpy as np
    import onnx

    import facesdk.calibration.quantize as quantize

    real = quantize.model_outputs

    def quantized_roles(path: Path) -> set[str]:
        graph = onnx.load(str(path), load_external_data=False).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        found = set()
        for node in graph.node:
            role = re.search(r"/(fc1|fc2)/", node.name)
            if role and node.op_type == "MatMul" and dequantized & set(node.input):
                found.add(role.group(1))
        return found

    def outputs(path, x, names, *args, **kwargs):  # noqa: ANN001, ANN202
        out = {n: np.array(v) for n, v in real(path, x, names, *args, **kwargs).items()}
        if Path(path) != Path(tiny_onnx) and quantized_roles(Path(path)):
            for name in names:
                top = out[name][:6].argmax(1)
                out[name][np.arange(6), top] = out[name][:6].min(1) - 1.0
        return out

    monkeypatch.setattr(quantize, "model_outputs", outputs)


def test_the_gates_advice_can_be_followed_as_printed(
    needs_both_mlp_layers_float: None, tiny_onnx: Path, calib_dir: Path, tmp_path: Path, spec: Preprocess
) -> None:
    """One pattern given, refused; the advice names the whole list to pass; following it passes."""
    import json
    import re

    from facesdk.export.options import parse_key_values

    out = tmp_path / "m.onnx"
    given = parse_key_values(['also_keep_float=["*/fc1/*"]'])
    with pytest.raises(AccuracyDropError) as err:
        quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=REACHABLE, **given)
    advice = re.search(r"also_keep_float=(\[[^\]]*\])", str(err.value))
    assert advice is not None, str(err.value)
    assert json.loads(advice.group(1)) == ["*/fc1/*", "*/fc2/*"]  # not fc2 alone, which drops fc1
    followed = parse_key_values([f"also_keep_float={advice.group(1)}"])
    report = quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=REACHABLE, **followed)
    assert report["passed"] and out.is_file()


def test_a_second_also_keep_float_adds_to_the_first() -> None:
    from facesdk.export.options import parse_key_values

    options = ['also_keep_float=["*/blocks.0/*"]', 'also_keep_float=["*/blocks.1/*", "*/blocks.0/*"]']
    assert parse_key_values(options) == {"also_keep_float": ["*/blocks.0/*", "*/blocks.1/*"]}
    assert parse_key_values(["also_keep_float=*/fc1/*", "also_keep_float=*/fc2/*"]) == {
        "also_keep_float": ["*/fc1/*", "*/fc2/*"]
    }
    with pytest.raises(ConfigError, match="method is given twice"):
        parse_key_values(["method=entropy", "method=minmax"])
    from facesdk.calibration.cli import build_parser

    args = build_parser().parse_args(
        [
            "quantize",
            "--model",
            "m",
            "--calib",
            "c",
            "--out",
            "o.onnx",
            "--also-keep-float",
            "a",
            "--also-keep-float",
            "b",
        ]
    )
    assert args.also_keep_float == ["a", "b"]


def _int8_weights(path: Path) -> list:
    """The int8 weight initialisers of a Q/DQ model (activations are computed, not stored)."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]


@pytest.mark.parametrize("reduce_range", [True, False])
def test_reduce_range_keeps_weights_in_seven_bits(tiny_onnx, calib_dir, tmp_path, spec, reduce_range):
    out = tmp_path / "model.int8.onnx"
    report = quantize_export(
        tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, threshold=0.0, reduce_range=reduce_range
    )
    weights = [w for w in _int8_weights(out) if w.size > 1]
    assert weights, "no int8 weights in the Q/DQ model"
    largest = max(int(abs(w.astype(int)).max()) for w in weights)
    assert (largest <= 64) == reduce_range, largest  # 7 bits: [-64, 63]; 8 bits reach 127
    assert report["weights"].endswith("7-bit range") == reduce_range
    with pytest.raises(ConfigError, match="reduce_range"):
        quantize_export(tiny_onnx, calib_dir, out, spec, DEFAULT_TASKS, reduce_range="yes")
