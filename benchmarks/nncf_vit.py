"""OpenVINO INT8 through NNCF post-training quantization against OpenVINO FP32, for one export.

An exploratory check beside ``benchmarks/int8_cpu.py`` (docs/int8.md): NNCF is not a facesdk
dependency, so it runs in an environment of its own, on face crops dumped from a facesdk
calibration set by the main environment:

    python -m benchmarks.nncf_vit dump --calib CALIB_DIR --out crops.npy          # facesdk's venv
    python -m venv /tmp/nncf && /tmp/nncf/bin/pip install nncf==3.4.0 openvino -e .
    /tmp/nncf/bin/python -m benchmarks.nncf_vit run --model EXPORT/model.onnx --crops crops.npy

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
    import openvino as ov

    from facesdk.backends.onnxruntime import OnnxFileBackend
    from facesdk.bench import compare_arrays, time_calls

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
            times += time_calls(lambda r=request, x=x: r.infer({0: x}), warmup=0, repeats=1)
    median = {key: statistics.median(times) for key, (_, _, times) in runs.items()}
    for batch in (1, 8):
        print(
            f"batch {batch}: fp32 {median['fp32', batch]:.1f} ms, int8 {median['int8', batch]:.1f} ms, "
            f"speed-up {median['fp32', batch] / median['int8', batch]:.2f}x"
        )
    request = runs["int8", 8][0]
    want: dict[str, list[np.ndarray]] = {}
    got: dict[str, list[np.ndarray]] = {}
    with OnnxFileBackend(model_path, max_batch=8) as reference:
        for i in range(0, len(held) - len(held) % 8, 8):
            x = held[i : i + 8]
            for task, value in reference.run(x).items():
                want.setdefault(task, []).append(value)
            for port, value in request.infer({0: x}).items():
                got.setdefault(port.get_any_name(), []).append(np.asarray(value))
    comparison = compare_arrays(
        {t: np.concatenate(v) for t, v in want.items()}, {t: np.concatenate(v) for t, v in got.items()}
    )
    print("top-1 agreement with ORT FP32:", comparison.to_json()["tasks"])


def main(argv: list[str] | None = None) -> None:
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
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.calib, args.out)
    else:
        run(args.model, args.crops, args.threads, args.rounds)


if __name__ == "__main__":
    main()
