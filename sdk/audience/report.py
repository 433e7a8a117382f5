"""An HTML report from audience JSON Lines: charts drawn as inline SVG, no external assets.

Sums over published records only: a cell withheld by k-anonymity (``null``) adds nothing, so
every total is a lower bound, and the report says how many cells were withheld. A person whose
visit spans several windows counts once in each.
"""

from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .records import ATTENTION_BINS

__all__ = ["read_records", "render_report"]

_COLOURS = ("#3b6ea8", "#d9822b", "#5a9e5a", "#a33b6e", "#7a7a7a")


def read_records(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Every record of the JSON Lines files named, or of the ``*.jsonl`` files in named folders."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(path.glob("*.jsonl"))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path} does not exist; name JSON Lines files or folders holding them")
    records = []
    for file in files:
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{file} line {number} is not JSON ({exc.msg}); is it an audience record file?"
                ) from exc
            if not isinstance(record, dict) or "kind" not in record:
                raise ConfigError(f"{file} line {number} is not an audience record (no 'kind')")
            records.append(record)
    return records


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _bars(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], unit: str) -> str:
    """A grouped bar chart as an SVG element."""
    width, height, left, bottom, top = 640, 260, 44, 40, 28
    top_value = max([v for values in series.values() for v in values] + [1.0])
    slot = (width - left - 10) / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>',
        f'<text x="{left}" y="16" font-size="13">{html.escape(title)} ({html.escape(unit)})</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#444"/>',
        f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{top_value:g}</text>',
    ]
    scale = (height - bottom - top) / top_value
    for i, label in enumerate(labels):
        x0 = left + i * slot + slot * 0.1
        for j, (name, values) in enumerate(series.items()):
            h = values[i] * scale
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{height - bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{_COLOURS[j % len(_COLOURS)]}"><title>{html.escape(name)} {html.escape(label)}: '
                f"{values[i]:g}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{height - bottom + 14}" font-size="10" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
    if len(series) > 1:
        for j, name in enumerate(series):
            x = left + j * 90
            parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{_COLOURS[j % 5]}"/>')
            parts.append(f'<text x="{x + 14}" y="{height - 5}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _hour(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:00")


def _content_rows(records: Sequence[Mapping[str, Any]]) -> list[str]:
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        row = table[str(r.get("content"))]
        row["plays"] += 1
        row["passers_by"] += _num(r.get("passers_by"))
        row["viewers"] += _num(r.get("viewers"))
        dwell, attention = r.get("dwell_s") or {}, r.get("attention_s") or {}
        row["dwell"] += _num(dwell.get("mean")) * _num(r.get("passers_by"))
        row["attention"] += _num(attention.get("mean")) * _num(r.get("viewers"))
        row["suppressed"] += len(r.get("suppressed") or ())
    rows = []
    for name, row in sorted(table.items()):
        dwell = row["dwell"] / row["passers_by"] if row["passers_by"] else 0.0
        attention = row["attention"] / row["viewers"] if row["viewers"] else 0.0
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{row['plays']:.0f}</td><td>{row['passers_by']:.0f}</td>"
            f"<td>{row['viewers']:.0f}</td><td>{dwell:.1f}</td><td>{attention:.1f}</td>"
            f"<td>{row['suppressed']:.0f}</td></tr>"
        )
    return rows


def render_report(records: Sequence[Mapping[str, Any]]) -> str:
    """The report page: viewers per hour, viewers' demographics, attention distribution, content table."""
    windows = [r for r in records if r.get("kind") == "window"]
    contents = [r for r in records if r.get("kind") == "content"]
    hours: dict[str, float] = defaultdict(float)
    for r in windows:
        hours[_hour(r["start"])] += _num(r.get("viewers"))
    demographics: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    genders: set[str] = set()
    for r in windows:
        for age, cells in (r.get("viewers_by_age_gender") or {}).items():
            for gender, count in cells.items():
                demographics[age][gender] += _num(count)
                genders.add(gender)
    histogram = {name: 0.0 for name, _ in ATTENTION_BINS}
    for r in windows:
        for name, count in (r.get("attention_histogram") or {}).items():
            histogram[name] = histogram.get(name, 0.0) + _num(count)
    withheld = sum(len(r.get("suppressed") or ()) for r in windows + contents)
    ages = sorted(
        demographics,
        key=lambda a: (a == "unknown", float(a.split("-")[0].rstrip("+")) if a[0].isdigit() else 0),
    )
    charts = [
        _bars("Viewers per hour", sorted(hours), {"viewers": [hours[h] for h in sorted(hours)]}, "people"),
        _bars(
            "Viewers by age group and gender",
            ages,
            {g: [demographics[a][g] for a in ages] for g in sorted(genders)},
            "people",
        ),
        _bars(
            "Attention per passer-by", list(histogram), {"passers-by": list(histogram.values())}, "seconds"
        ),
    ]
    span = (
        f"{min(r['start'] for r in windows)} to {max(r['end'] for r in windows)}" if windows else "no windows"
    )
    rows = _content_rows(contents)
    body = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Audience report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}td:first-child{text-align:left}</style>",
        "</head><body><h1>Audience report</h1>",
        f"<p>{len(windows)} windows ({html.escape(span)}), {len(contents)} content plays. Cells describing fewer "
        f"than k people were withheld at the source ({withheld} cells): totals below are lower bounds. A person "
        "whose visit spans several windows counts in each.</p>",
        *[f"<figure>{chart}</figure>" for chart in charts],
        "<h2>Content items</h2><table><tr><th>content</th><th>plays</th><th>passers-by</th><th>viewers</th>"
        "<th>mean dwell (s)</th><th>mean attention (s)</th><th>withheld cells</th></tr>",
        *rows,
        "</table></body></html>",
    ]
    return "\n".join(body) + "\n"
