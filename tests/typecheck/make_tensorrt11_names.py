"""Write ``tensorrt11_names.json``: every public name of the real TensorRT 11 Python module.

The ``tensorrt-cu13-bindings`` wheel holds the real ``tensorrt`` extension module but not the
TensorRT libraries it links (``libnvinfer.so.11`` and friends), so it cannot be imported as
is. This script unpacks the wheel, compiles empty stand-ins for the few library functions the
module links (nothing is called while the module only registers its classes), imports it in a
child process and lists the module's names and each class's attributes. The test
``test_tensorrt_names.py`` reads the list; nothing here runs in CI.

Usage (needs gcc; the wheel comes from PyPI)::

    pip download --no-deps tensorrt-cu13-bindings==11.4.0.106 -d /tmp/trt11
    python tests/typecheck/make_tensorrt11_names.py /tmp/trt11/tensorrt_cu13_bindings-11.4.0.106-*.whl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).with_name("tensorrt11_names.json")

# The library functions tensorrt.so links (objdump -T tensorrt.so | grep UND), as no-op stand-ins.
STUB_C = """
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void* createInferRefitter_INTERNAL(void* a, void* b, int c) { return 0; }
void* createInferRuntime_INTERNAL(void* a, int b) { return 0; }
void* createNvOnnxParser_INTERNAL(void* a, void* b, int c) { return 0; }
void* getBuilderPluginRegistry(int a) { return 0; }
void* createInferBuilder_INTERNAL(void* a, int b) { return 0; }
void* getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void* a, const char* b) { return 0; }
"""
LIBS = ("libnvinfer.so.11", "libnvinfer_plugin.so.11", "libnvonnxparser.so.11")

DUMP = """
import inspect, json, sys
import tensorrt_bindings as trt
names = {"version": trt.__version__, "module": sorted(n for n in dir(trt) if not n.startswith("__")), "classes": {}}
for name in names["module"]:
    value = getattr(trt, name)
    if inspect.isclass(value):
        names["classes"][name] = sorted(n for n in dir(value) if not n.startswith("__") or n == "__init__")
json.dump(names, sys.stdout)
"""


def dump_names(wheel: Path) -> dict:
    """Import the wheel's module against stand-in libraries and return its names."""
    with tempfile.TemporaryDirectory(prefix="trt11-") as tmp:
        root = Path(tmp)
        zipfile.ZipFile(wheel).extractall(root)
        (root / "stub.c").write_text(STUB_C)
        for lib in LIBS:
            subprocess.run(
                ["gcc", "-shared", "-fPIC", "-o", str(root / lib), str(root / "stub.c")], check=True
            )
        env = {**os.environ, "LD_LIBRARY_PATH": str(root), "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, "-c", DUMP], env=env, cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"importing the TensorRT 11 module failed:\n{done.stderr}")
        return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="tensorrt_cu13_bindings-11.x wheel")
    names = dump_names(parser.parse_args().wheel)
    names["source"] = parser.parse_args().wheel.name
    OUT.write_text(json.dumps(names, indent=0, sort_keys=True) + "\n")
    print(
        f"{OUT}: TensorRT {names['version']}, {len(names['module'])} names, {len(names['classes'])} classes"
    )


if __name__ == "__main__":
    main()
