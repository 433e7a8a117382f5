from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facesdk.cli import analyze as analyze_cli
from facesdk.memory import M_MMAP_THRESHOLD, MMAP_THRESHOLD, pin_mmap_threshold, user_malloc_settings


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_pin_sets_the_mmap_threshold(clean_env: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    assert pin_mmap_threshold(libc=libc) is True
    assert libc.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD)] == [(-3, 131072)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "1048576"),
        ("MALLOC_TRIM_THRESHOLD_", "0"),
        ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"),
    ],
)
def test_pin_keeps_the_users_setting(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    libc = FakeLibc()
    assert pin_mmap_threshold(libc=libc) is False
    assert libc.calls == []
    assert user_malloc_settings() != []


def test_other_tunables_are_not_a_threshold_setting() -> None:
    assert user_malloc_settings({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == []


PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from facesdk.memory import pin_mmap_threshold
    if sys.argv[1] == "pin":
        assert pin_mmap_threshold()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free(ctypes.c_void_p(libc.malloc(4 << 20)))  # a dynamic threshold rises to 4 MiB here
    block = libc.malloc(3 << 20)
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            low, high = (int(v, 16) for v in line.split()[0].split("-"))
            print("heap" if low <= block < high else "mapped")
            break
    else:
        print("mapped")
    """
)


def where_a_block_lands(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_freed_large_block_does_not_move_later_ones_into_the_heap(clean_env: pytest.MonkeyPatch) -> None:
    """With the threshold pinned a 3 MiB block is mapped on its own (and unmapped when freed), even
    after a 4 MiB block was freed; glibc's dynamic threshold would put it in the heap."""
    if not Path("/proc/self/maps").exists() or not hasattr(__import__("os"), "confstr"):
        pytest.skip("needs Linux with glibc (/proc/self/maps, mallopt)")
    if where_a_block_lands("default") != "heap":
        pytest.skip("this C library does not raise its mmap threshold on free (nothing to pin)")
    assert where_a_block_lands("pin") == "mapped"


def test_analyze_pins_the_threshold_before_it_builds_the_analyzer(monkeypatch: pytest.MonkeyPatch) -> None:
    class Pinned(Exception):
        pass

    def pin() -> bool:
        raise Pinned

    monkeypatch.setattr(analyze_cli, "pin_mmap_threshold", pin)
    with pytest.raises(Pinned):
        analyze_cli.main(["missing.avi", "--model", "missing-export"])


def test_analyze_imports_no_network_stack() -> None:
    """``urllib.request`` (with ``ssl``, ~7 MiB resident) is for 'facesdk models fetch' only."""
    code = (
        "import sys, facesdk.cli.analyze, facesdk.analyzer, facesdk.faces.model_store\n"
        "print(sorted(m for m in ('urllib.request', 'ssl', 'http.client') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
