"""Report writers: JSON, Markdown tables and a PNG bar chart, written atomically."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..contract.manifest_io import atomic_write_bytes, atomic_write_json

__all__ = ["fmt", "markdown_table", "bar_chart", "write_report"]

log = logging.getLogger(__name__)


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: ``–`` for None, ``digits`` decimals for floats."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> list[str]:
    """Lines of a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return lines


def bar_chart(path: Path, panels: Mapping[str, Sequence[tuple[str, float]]], xlabel: str) -> bool:
    """Horizontal bars, one panel per key; returns False (and writes nothing) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no chart written (pip install matplotlib)")
        return False
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (title, bars) in zip(axes[0], panels.items(), strict=True):
        ax.barh([b[0] for b in bars], [b[1] for b in bars], color="#4c72b0")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return True


def write_report(
    out_dir: str | Path,
    stem: str,
    data: Mapping[str, Any],
    markdown: str,
    chart: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    xlabel: str = "",
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and (given ``chart`` and matplotlib) ``<stem>.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    atomic_write_json(written["json"], dict(data))
    atomic_write_bytes(written["md"], markdown.encode())
    if chart is not None and bar_chart(out / f"{stem}.png", chart, xlabel):
        written["png"] = out / f"{stem}.png"
    return written
