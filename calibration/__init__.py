"""facesdk.calibration: INT8 calibration sets and quantized models."""

from __future__ import annotations
