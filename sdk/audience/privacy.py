"""k-anonymity for everything the audience layer publishes: one function, :func:`suppress`.

An aggregate record (:meth:`facesdk.audience.records.Aggregate.to_json`) holds counts of people
and numbers computed over groups of people. Every *cell* is tied to the number of people it
describes; a cell that describes at least one and fewer than ``k`` people is replaced by
``None`` (JSON ``null``) and its path is listed under ``"suppressed"``. Empty cells (zero
people) describe nobody and stay.

Cells and the count that governs each:

* ``passers_by`` (itself), ``dwell_s`` (``passers_by``);
* ``viewers`` (itself), ``attention_s`` (``viewers``);
* ``attention_histogram.<bin>`` (itself);
* ``viewers_by_age_gender.<age>.<gender>`` (itself);
* ``emotion_people`` (itself), ``emotion_shares`` (``emotion_people``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["DEFAULT_K", "suppress"]

DEFAULT_K = 3
"""Smallest group of people a published cell may describe."""

_GOVERNED = {"dwell_s": "passers_by", "attention_s": "viewers", "emotion_shares": "emotion_people"}
_COUNTS = ("passers_by", "viewers", "emotion_people")


def _small(count: Any, k: int) -> bool:
    return isinstance(count, int) and 0 < count < k


def suppress(record: Mapping[str, Any], k: int = DEFAULT_K) -> dict[str, Any]:
    """A copy of an aggregate record with every cell of fewer than ``k`` people set to ``None``.

    The copy carries ``"k"`` and ``"suppressed"`` (the paths of the withheld cells, sorted).
    Applying it to a record it already filtered leaves the record as it is.

    Raises:
        ConfigError: ``k`` is below 1, or the record is not an aggregate (``kind`` ``"window"``
            or ``"content"``).
    """
    if k < 1:
        raise ConfigError(f"k-anonymity needs k >= 1 (people per published cell), got {k}")
    if record.get("kind") not in ("window", "content"):
        raise ConfigError(
            f"suppress() filters aggregate records (kind window or content), got {record.get('kind')!r}"
        )
    out = copy.deepcopy(dict(record))
    done = set(out.get("suppressed") or ())
    for name in _COUNTS:
        if _small(out.get(name), k):
            done.add(name)
    for cell, governing in _GOVERNED.items():
        if _small(out.get(governing), k) and out.get(cell) is not None:
            done.add(cell)
    for name in done:
        if "." not in name and name in out:
            out[name] = None
    histogram = out.get("attention_histogram") or {}
    for bin_, count in histogram.items():
        if _small(count, k):
            histogram[bin_] = None
            done.add(f"attention_histogram.{bin_}")
    for age, genders in (out.get("viewers_by_age_gender") or {}).items():
        for gender, count in genders.items():
            if _small(count, k):
                genders[gender] = None
                done.add(f"viewers_by_age_gender.{age}.{gender}")
    out["k"] = k
    out["suppressed"] = sorted(done)
    return out
