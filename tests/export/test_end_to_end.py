"""One end-to-end export of the training smoke run's checkpoint (when the training fixture exists)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_export_smoke_run(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    try:
        run_dir = Path(request.getfixturevalue("smoke_run"))
    except pytest.FixtureLookupError:
        pytest.skip("the training stage's 'smoke_run' fixture (tests/conftest.py) does not exist yet")
    from facesdk.cli import main
    from facesdk.contract.export_manifest import load_export_manifest

    out = tmp_path / "export"
    code = main(
        ["export", "build", "--ckpt", str(run_dir / "checkpoint"), "--out", str(out), "--max-batch", "4"]
    )
    assert code == 0
    manifest = load_export_manifest(out, verify=True)
    assert manifest.parity["merge"]["max_abs_diff"] <= 1e-4
    assert manifest.parity["onnx_vs_torch"]["max_abs_diff"] <= 1e-4
