"""Small, dependency-free tables for notebooks: Markdown that renders in Jupyter and in the book."""
from __future__ import annotations

import statistics
from typing import Iterable, Sequence


def mean_spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``"mean ± half-range (n=k)"`` of ``values`` times ``scale``: how results over seeds are reported."""
    vals = [v * scale for v in values]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f} (n=1)"
    half_range = (max(vals) - min(vals)) / 2
    return f"{statistics.fmean(vals):.{digits}f} ± {half_range:.{digits}f} (n={len(vals)})"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]):
    """An ``IPython.display.Markdown`` table (plain text when IPython is absent)."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover - IPython ships with the course requirements
        return text
    return Markdown(text)
