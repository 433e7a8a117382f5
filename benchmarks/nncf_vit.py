"""OpenVINO INT8 through NNCF post-training quantization against OpenVINO FP32, for one export.

An exploratory check beside ``benchmarks/int8_cpu.py`` (docs/int8.md): NNCF is not a facesdk
dependency, so it runs in an environment of its own, on face crops dumped from a facesdk
calibration set by the main environment:

    python benchmarks/nncf_vit.py dump --calib CALIB_DIR --out crops.npy          # facesdk's venv
    python -m venv /tmp/nncf && /tmp/nncf/bin/pip install nncf==3.4.0 openvino onnxruntime
    /tmp/nncf/bin/python benchmarks/nncf_vit.py run --model EXPORT/model.onnx --crops crops.npy

``run`` quantizes with the first three quarters of the crops (``model_type=TRANSFORMER``),
times FP32 and INT8 at batch 1 and 8 (2 threads, f32 hint, the models taking turns) and prints
the top-1 agreement of INT8 with ONNX Runtime's FP32 on the held-out quarter.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def dump(calib: str, out: str) -> None:
    from facesdk.calibration.calibset import load_calibration_set

    crops, _ = load_calibration_set(calib).arrays(calib)
    np.save(out, np.ascontiguousarray(crops, dtype=np.float32))
    print(f"{out}: {crops.shape}")


def run(model_path: str, crops_path: str, threads: int, rounds: int) -> None:
    import nncf
    import onnxruntime as ort
    import openvino as ov

    crops = np.load(crops_path)
    split = len(crops) * 3 // 4
    calib, held = crops[:split], crops[split:]
    core = ov.Core()
    fp32 = core.read_model(model_path)
    start = time.perf_counter()
    dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    int8 = nncf.quantize(fp32, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
    print(f"NNCF quantization: {time.perf_counter() - start:.1f} s on {len(calib)} crops")
    size = crops.shape[2:]
    runs = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        for batch in (1, 8):
            shaped = model.clone()
            shaped.reshape({shaped.inputs[0].get_any_name(): [batch, 3, *size]})
            config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
            request = core.compile_model(shaped, "CPU", config).create_infer_request()
            request.infer({0: crops[:batch]})  # warm-up
            runs[name, batch] = (request, crops[:batch], [])
    for _ in range(rounds):
        for request, x, times in runs.values():
            start = time.perf_counter()
            request.infer({0: x})
            times.append(1000 * (time.perf_counter() - start))
    median = {key: statistics.median(times) for key, (_, _, times) in runs.items()}
    for batch in (1, 8):
        print(
            f"batch {batch}: fp32 {median['fp32', batch]:.1f} ms, int8 {median['int8', batch]:.1f} ms, "
            f"speed-up {median['fp32', batch] / median['int8', batch]:.2f}x"
        )
    reference = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    request = runs["int8", 8][0]
    agree: dict[str, list[bool]] = {}
    for i in range(0, len(held) - len(held) % 8, 8):
        x = held[i : i + 8]
        want = dict(zip(names, reference.run(None, {"input": x}), strict=True))
        for port, value in request.infer({0: x}).items():
            task = port.get_any_name()
            agree.setdefault(task, []).extend(np.argmax(value, 1) == np.argmax(want[task], 1))
    counts = {task: len(v) for task, v in agree.items()}
    print(
        "top-1 agreement with ORT FP32:", {t: round(float(np.mean(v)), 3) for t, v in agree.items()}, counts
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="crops of a facesdk calibration set to one .npy (facesdk's venv)")
    d.add_argument("--calib", required=True)
    d.add_argument("--out", required=True)
    r = sub.add_parser("run", help="quantize with NNCF and time (an environment with nncf and openvino)")
    r.add_argument("--model", required=True, help="an export's model.onnx")
    r.add_argument("--crops", required=True)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.calib, args.out)
    else:
        run(args.model, args.crops, args.threads, args.rounds)


if __name__ == "__main__":
    main()
