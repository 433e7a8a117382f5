"""facesdk.training: the multi-task model, adapters, data and the training loop (extra ``[train]``)."""

from __future__ import annotations
