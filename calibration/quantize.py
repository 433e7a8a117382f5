"""INT8 post-training quantization of ``model.onnx`` into a Q/DQ ``model.int8.onnx``.

ONNX Runtime's static quantizer writes QuantizeLinear/DequantizeLinear pairs (QDQ format):
symmetric int8 activations, per-channel symmetric int8 weights. That is the explicit
quantization TensorRT builds INT8 engines from, and ONNX Runtime's CPU provider fuses the
pairs into integer kernels. Which nodes stay float is a list of patterns (node name or op
type, ``fnmatch`` syntax), by default the patch embedding (a ViT's) or stem convolution (a
CNN's), LayerNorm, Softmax, the attention products, the attention pool and the task heads.
Weight MatMuls (ViT) and convolutions (CNN) are quantized. See ``docs/int8.md``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.contract.integrity import stamp_onnx_digest
from facesdk.contract.manifest_io import sha256_file
from facesdk.errors import ConfigError, ManifestError, require
from facesdk.outputs import check_output_file
from facesdk.preprocess import Preprocess
from facesdk.tasks import TaskSpec

from .accuracy import (
    AccuracyDropError,
    check_reachable,
    compare_models,
    holdout_split,
    min_agreement,
    min_lower_bound,
    model_outputs,
)
from .calibset import check_fingerprint, load_calibration_set
from .quantize_config import AUTO, DEFAULT_QUANTIZE_OPS, METHODS, QuantizeConfig

__all__ = [
    "AUTO",
    "METHODS",
    "DEFAULT_QUANTIZE_OPS",
    "MIN_CROPS",
    "AccuracyDropError",
    "QuantizeConfig",
    "default_keep_float",
    "select_nodes",
    "quantize_export",
]

log = logging.getLogger(__name__)

MIN_CROPS = 2
"""Fewest crops a set may hold for quantization: at least one to calibrate on and one held out."""
BACKBONE_KEEP_FLOAT = (
    "*/patch_embed/*",  # first layer: raw pixels, small, sensitive
    "*/backbone/stem/*",  # the same for CNNs: ConvNeXt's stem,
    "*/backbone/conv_stem/*",  # EfficientNet's and MobileNet's,
    "*/backbone/conv1/*",  # ResNet's (the blocks' conv1 sit below layerN/)
    "LayerNormalization",
    "Softmax",
    "*/attn/MatMul",  # attention products (activation x activation)
    "*/attn/MatMul_1",
    "*/attn_pool/*",  # attention pooling: one query, feeds every head
)


def default_keep_float(tasks: Iterable[TaskSpec | str]) -> list[str]:
    """The default kept-float patterns: backbone groups above plus each task head ``/model/<task>/*``."""
    names = [t.name if isinstance(t, TaskSpec) else str(t) for t in tasks]
    return [*BACKBONE_KEEP_FLOAT, *(f"/model/{n}/*" for n in names)]


def _matches(node: Any, patterns: Sequence[str]) -> bool:
    return any(node.op_type == p or fnmatch.fnmatchcase(node.name, p) for p in patterns)


def select_nodes(
    model: Any, keep_float: Sequence[str], op_types: Sequence[str] = DEFAULT_QUANTIZE_OPS
) -> tuple[list[str], list[str]]:
    """Split a graph's nodes into (quantized, kept float).

    Quantized: nodes of ``op_types`` that match no ``keep_float`` pattern. Kept float: every
    node that matches a pattern (whatever its op type).
    """
    unnamed = [n.op_type for n in model.graph.node if not n.name]
    if unnamed:
        raise ConfigError(
            f"the graph has {len(unnamed)} unnamed node(s) ({unnamed[:3]}); re-export it with torch.onnx"
        )
    kept = [n.name for n in model.graph.node if _matches(n, keep_float)]
    kept_set = set(kept)
    quantized = [n.name for n in model.graph.node if n.op_type in op_types and n.name not in kept_set]
    return quantized, kept


class _Reader:
    """``CalibrationDataReader`` over selected rows of the calibration crops."""

    def __init__(self, crops: np.ndarray, rows: np.ndarray, input_name: str, batch: int = 4) -> None:
        self._batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
        self._crops, self._name = crops, input_name
        self._pos, self._end = 0, len(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Used by ORT's strided calibration: one chunk of batches at a time (bounded memory)."""
        self._pos, self._end = start_index, min(end_index, len(self._batches))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        rows = self._batches[self._pos]
        self._pos += 1
        return {self._name: np.ascontiguousarray(self._crops[rows], dtype=np.float32)}

    def rewind(self) -> None:
        self._pos, self._end = 0, len(self._batches)


@dataclass(frozen=True, slots=True)
class _Settings:
    method: str
    op_types: tuple[str, ...]
    activations: str
    cache: Path
    reduce_range: bool = True


class _PreprocessAdvice(logging.Filter):
    """Drops ONNX Runtime's "consider pre-processing before quantization" advice (logged on the
    root logger at every call, dozens of times in a sensitivity pass): facesdk quantizes the graph
    as exported on purpose, so that the INT8 model keeps the FP32 model's node names."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("consider" in message and "pre-processing" in message)


@contextlib.contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    root, advice = logging.getLogger(), _PreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _run_quantizer(
    fp32: Path,
    out: Path,
    reader: _Reader | None,
    nodes: Sequence[str],
    exclude: Sequence[str],
    cfg: _Settings,
) -> None:
    """One ``quantize_static`` call; tensor ranges are read from / written to ``cfg.cache``."""
    q = require("onnxruntime.quantization", "", "INT8 quantization")
    calib = {"entropy": q.CalibrationMethod.Entropy, "percentile": q.CalibrationMethod.Percentile}.get(
        cfg.method, q.CalibrationMethod.MinMax
    )
    symmetric = cfg.activations == "int8"
    if reader is not None:
        reader.rewind()
    with _without_preprocess_advice():
        q.quantize_static(
            str(fp32),
            str(out),
            reader,
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=sorted(cfg.op_types),  # also limits the tensors the calibrator records
            nodes_to_quantize=list(nodes),
            nodes_to_exclude=list(exclude),
            per_channel=True,
            reduce_range=cfg.reduce_range,  # 7-bit weights: no saturation on CPUs without VNNI
            activation_type=q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=calib,
            calibration_cache_path=str(cfg.cache),
            extra_options={
                "ActivationSymmetric": symmetric,
                "WeightSymmetric": True,
                "CalibTensorRangeSymmetric": symmetric,
                "CalibPercentile": 99.99,
                # One reader batch per calibration pass: the calibrator keeps every recorded tensor of
                # a pass in memory (GBs for 48 crops at 384 px); histograms and ranges merge across passes.
                "CalibStridedMinMax": 1,
            },
        )


def _rank(comparison: dict[str, Any]) -> tuple[float, float]:
    """How ``method="auto"`` orders the tries: the lowest per-task top-1 agreement, then the
    smaller mean relative logit error (agreement on a few hundred crops moves in coarse steps)."""
    errors = comparison["relative_logit_error"].values()
    return min_agreement(comparison), -sum(errors) / max(len(errors), 1)


def _node_groups(nodes: Sequence[str]) -> dict[str, list[str]]:
    """Candidate groups for the sensitivity pass: per block, then per layer role."""
    groups: dict[str, list[str]] = {}
    for name in nodes:
        block = re.search(r"(blocks|layer\d+)\.(\d+)/", name)  # ViT/EfficientNet blocks, ResNet stages
        role = re.search(r"/(qkv|proj|fc1|fc2|q|kv|conv_dw|dw_start|dw_mid)/", name)
        if block:
            groups.setdefault(f"*/{block.group(1)}.{block.group(2)}/*", []).append(name)
        if role:
            groups.setdefault(f"*/{role.group(1)}/*", []).append(name)
        if not block and not role:
            groups.setdefault(name, []).append(name)
    return groups


def _sensitivity(
    fp32: Path,
    nodes: Sequence[str],
    kept: Sequence[str],
    cfg: _Settings,
    x: np.ndarray,
    ref: dict[str, np.ndarray],
    labels: np.ndarray,
    tasks: Sequence[str],
    budget_s: float,
) -> list[dict[str, Any]]:
    """Re-quantize with each candidate group kept float (ranges from the cache); rank by agreement."""
    ranking: list[dict[str, Any]] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="facesdk-sens-") as tmp:
        for pattern, members in _node_groups(nodes).items():
            if time.monotonic() - start > budget_s:
                log.warning(
                    "sensitivity pass stopped after %.0f s (budget); %d group(s) measured",
                    budget_s,
                    len(ranking),
                )
                break
            out = Path(tmp) / "candidate.onnx"
            rest = [n for n in nodes if n not in set(members)]
            _run_quantizer(fp32, out, None, rest, [*kept, *members], cfg)
            got = model_outputs(out, x, tasks)
            rep = compare_models(ref, got, labels, tasks)
            ranking.append(
                {
                    "keep_float": pattern,
                    "nodes": len(members),
                    "min_agreement": min_agreement(rep),
                    "min_lower_bound": min_lower_bound(rep),
                    "agreement": rep["agreement"],
                }
            )
    ranking.sort(key=lambda r: -r["min_agreement"])
    return ranking


def _gate(
    report: dict[str, Any],
    fp32: Path,
    nodes: Sequence[str],
    kept: Sequence[str],
    cfg: _Settings,
    held: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]],
    names: Sequence[str],
    budget_s: float,
    accept_drop: bool,
    also_keep_float: Sequence[str] = (),
) -> None:
    """Below the threshold: rank node groups by how much keeping them float helps, then refuse.

    The advice names the whole ``also_keep_float`` list to pass next: the patterns given this
    time plus the most helpful group, so that following it as printed never drops a pattern.
    """
    x, y, ref = held
    ranking = _sensitivity(fp32, nodes, kept, cfg, x, ref, y, names, budget_s)
    report["sensitivity"] = ranking
    best = ", ".join(f"{r['keep_float']} (min agreement {r['min_agreement']:.3f})" for r in ranking[:3])
    advice = list(dict.fromkeys([*also_keep_float, *(r["keep_float"] for r in ranking[:1])]))
    report["advice_also_keep_float"] = advice
    bounds = {t: round(v, 4) for t, v in report["agreement_lower_bound"].items()}
    message = (
        f"INT8 top-1 agreement with FP32 is {report['agreement']} on {report['held_out']} held-out crops "
        f"(Wilson 95% lower bounds {bounds}); every task's bound needs >= {report['threshold']}. Keeping these node groups float helps most: "
        f"{best or 'none measured (sensitivity budget spent)'}. Keep them float "
        f"(the whole list: also_keep_float={json.dumps(advice)}), try another method "
        "(method=auto tries entropy, percentile and minmax and keeps the best), "
        "or accept the drop (accept_drop=true): with 'facesdk export build' each is an "
        "--int8-option KEY=VALUE, with 'facesdk calibrate quantize' an option of that name"
    )
    if not accept_drop:
        raise AccuracyDropError(message, report)
    log.warning("%s; accepted (accept_drop)", message)
    report["accepted_drop"] = True


@dataclass(frozen=True, slots=True)
class _Job:
    """What one quantization works on: the crops, the split, the node selection."""

    crops: np.ndarray
    rows: np.ndarray
    x_hold: np.ndarray
    y_hold: np.ndarray
    names: list[str]
    patterns: list[str]
    nodes: list[str]
    kept: list[str]
    input_name: str
    calib: Any


def _prepare(
    fp32_onnx: Path, calib_dir: Path, preprocess: Preprocess, tasks: Sequence[TaskSpec], cfg: QuantizeConfig
) -> _Job:
    """Load and check the calibration set, split off the held-out crops, select the nodes."""
    onnx = require("onnx", "export", "INT8 quantization")
    calib = load_calibration_set(calib_dir)
    check_fingerprint(calib, preprocess, calib_dir)
    if calib.count < MIN_CROPS:
        raise ManifestError(
            f"calibration set {calib_dir} holds {calib.count} crop(s); quantization needs at least {MIN_CROPS} "
            "(some to calibrate on, some held out to check). Re-collect it from sources with readable "
            "images that show faces ('facesdk calibrate collect')"
        )
    crops, labels = calib.arrays(calib_dir)
    rows, held = holdout_split(len(crops), cfg.holdout_fraction, cfg.seed)
    try:
        check_reachable(len(held), cfg.threshold, len(crops), cfg.holdout_fraction)
    except ConfigError as exc:
        if not cfg.accept_drop:
            raise
        log.warning("%s; going on (accept_drop)", exc)
    patterns = default_keep_float(tasks) if cfg.keep_float is None else list(cfg.keep_float)
    patterns += [p for p in cfg.also_keep_float if p not in patterns]
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    nodes, kept = select_nodes(model, patterns, cfg.op_types)
    if not nodes:
        raise ConfigError(
            f"nothing to quantize: every {list(cfg.op_types)} node matches keep_float {patterns}"
        )
    return _Job(
        crops, rows, np.ascontiguousarray(crops[held]), np.asarray(labels[held]), [t.name for t in tasks],
        patterns, nodes, kept, model.graph.input[0].name, calib,
    )  # fmt: skip


def _try_methods(
    fp32_onnx: Path, job: _Job, cfg: QuantizeConfig, ref: dict[str, np.ndarray], tmp: Path
) -> tuple[dict[str, dict[str, Any]], str]:
    """Quantize with each candidate method into ``tmp``; return every try and the best one's name."""
    tried: dict[str, dict[str, Any]] = {}
    best: str | None = None
    for candidate in METHODS if cfg.method == AUTO else (cfg.method,):
        trial = _Settings(
            candidate, cfg.op_types, cfg.activations, tmp / f"ranges-{candidate}.json", cfg.reduce_range
        )
        start = time.monotonic()
        reader = _Reader(job.crops, job.rows, job.input_name)
        _run_quantizer(fp32_onnx, tmp / f"{candidate}.onnx", reader, job.nodes, job.kept, trial)
        got = model_outputs(tmp / f"{candidate}.onnx", job.x_hold, job.names)
        tried[candidate] = {
            "settings": trial,
            "seconds": round(time.monotonic() - start, 2),
            "comparison": compare_models(ref, got, job.y_hold, job.names),
        }
        log.info("INT8 with %s calibration: %s", candidate, tried[candidate]["comparison"]["agreement"])
        if best is None or _rank(tried[candidate]["comparison"]) > _rank(tried[best]["comparison"]):
            best = candidate
    assert best is not None
    return tried, best


def _report(
    calib_dir: Path, job: _Job, cfg: QuantizeConfig, tried: dict[str, dict[str, Any]], best: str
) -> dict[str, Any]:
    """The quantization report of the kept method (settings, nodes, calibration set, comparison)."""
    ort = require("onnxruntime", "", "INT8 quantization")
    symmetric = cfg.activations == "int8"
    report: dict[str, Any] = {
        "format": "onnx-qdq",
        "method": best,
        "activations": "int8 symmetric, per tensor" if symmetric else "uint8 asymmetric, per tensor",
        "weights": "int8 symmetric, per channel" + (", 7-bit range" if cfg.reduce_range else ""),
        "quantizer": f"onnxruntime.quantization {ort.__version__}",
        "op_types": list(cfg.op_types),
        "keep_float_patterns": job.patterns,
        "quantized_nodes": job.nodes,
        "kept_float_nodes": len(job.kept),
        "calibration": {
            "dir": str(calib_dir),
            "preprocess_fingerprint": job.calib.fingerprint,
            "crops": int(len(job.rows)),
            "shards_sha256": [s.crops.sha256 for s in job.calib.shards],
        },
        "quantize_seconds": round(tried[best]["seconds"], 2),
        "threshold": cfg.threshold,
        **tried[best]["comparison"],
    }
    if cfg.method == AUTO:
        report["method_search"] = {
            m: {
                "agreement": t["comparison"]["agreement"],
                "agreement_lower_bound": t["comparison"]["agreement_lower_bound"],
                "relative_logit_error": t["comparison"]["relative_logit_error"],
                "seconds": t["seconds"],
            }
            for m, t in tried.items()
        }
    report["passed"] = min_lower_bound(report) >= cfg.threshold
    return report


def quantize_export(
    fp32_onnx: Path,
    calib_dir: Path,
    out_onnx: Path,
    preprocess: Preprocess,
    tasks: Sequence[TaskSpec],
    config: QuantizeConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Quantize ``fp32_onnx`` to a Q/DQ INT8 model and check it against FP32 on held-out crops.

    Args:
        fp32_onnx: The FP32 ``model.onnx``.
        calib_dir: A calibration set from ``facesdk calibrate collect``.
        out_onnx: Where to write ``model.int8.onnx`` (atomically).
        preprocess: The model's preprocessing spec; the set's fingerprint must match it.
        tasks: The model's tasks (output names, label columns).
        config: The settings (:class:`QuantizeConfig`); or give them as keyword ``options``
            (``method="auto"``, ``accept_drop=True``, ...), checked the same way.

    Returns:
        The report (settings, node lists, agreement, relative logit error, accuracy, hashes).

    Raises:
        ConfigError: An unknown option or a bad value (before any work).
        ManifestError: The calibration set is incomplete, corrupt or has another fingerprint.
        AccuracyDropError: Agreement fell below the threshold (and ``accept_drop`` is false);
            the message names the node groups whose exclusion helps most.
    """
    if config is not None and options:
        raise ConfigError("give quantize_export either a QuantizeConfig or keyword options, not both")
    cfg = config if config is not None else QuantizeConfig.from_options(options)
    fp32_onnx, calib_dir, out_onnx = Path(fp32_onnx), Path(calib_dir), Path(out_onnx)
    # Never replace an input or a file an export lists, even when the caller may overwrite.
    check_output_file(out_onnx, [fp32_onnx, calib_dir], force=True, flag="out_onnx")
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    job = _prepare(fp32_onnx, calib_dir, preprocess, tasks, cfg)
    with tempfile.TemporaryDirectory(prefix="facesdk-int8-", dir=out_onnx.parent) as tmp:
        ref = model_outputs(fp32_onnx, job.x_hold, job.names)
        tried, best = _try_methods(fp32_onnx, job, cfg, ref, Path(tmp))
        report = _report(calib_dir, job, cfg, tried, best)
        if not report["passed"]:
            held = (job.x_hold, job.y_hold, ref)
            _gate(report, fp32_onnx, job.nodes, job.kept, tried[best]["settings"], held, job.names,
                  cfg.sensitivity_budget_s, cfg.accept_drop, cfg.also_keep_float)  # fmt: skip
        staged = Path(tmp) / f"{best}.onnx"
        stamp_onnx_digest(staged)  # the quantizer copies the FP32 file's metadata, its digest too
        os.replace(staged, out_onnx)
    report["sha256"] = sha256_file(out_onnx)
    log.info("wrote %s: agreement %s", out_onnx, report["agreement"])
    return report
