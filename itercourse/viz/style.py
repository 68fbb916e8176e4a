"""The book's figure style: drawn for its content column, text >= 9 pt, sharp PNGs.

Applied when :mod:`itercourse.viz` is imported (:func:`use_book_style`), so a
chapter that imports any figure function draws for the page with no setup
cell. What it sets (matplotlib's ``rcParams``):

- ``figure.dpi`` 150: inline PNGs at 150 dpi, sharp on high-density screens;
  the page scales a figure to the column, so its text shows at the size a
  100-dpi figure of the same inches would.
- font sizes: 10 pt text, titles and axis labels; 9 pt tick labels, legends
  and legend titles (:data:`MIN_FONT_PT`): at :data:`COLUMN_WIDTH` inches or
  less, no text is smaller than 9 pt at display size.
- ``figure.figsize`` 6.0 x 3.6 in, inside the column.

Layout is not set globally (a global constrained layout would turn a
chapter's own ``fig.tight_layout()`` into a warning): every figure function of
the package asks for ``layout="constrained"`` itself, and so do the chapters'
own figures.
"""
from __future__ import annotations

import matplotlib as mpl
from matplotlib.text import Text

COLUMN_WIDTH = 7.7          # inches: the widest figure (the book's content column at 100 dpi)
MIN_FONT_PT = 9             # points: the smallest text a figure may hold
DPI = 150                   # dots per inch of inline PNGs

BOOK_RC = {
    "figure.dpi": DPI,
    "figure.figsize": (6.0, 3.6),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "figure.titlesize": 10,
    "figure.labelsize": 10,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
}


def use_book_style() -> None:
    """Set the book's figure defaults (:data:`BOOK_RC`) in matplotlib's ``rcParams``."""
    mpl.rcParams.update(BOOK_RC)


def small_texts(fig, min_pt: float = MIN_FONT_PT) -> list[tuple[str, float]]:
    """Every visible text of ``fig`` smaller than ``min_pt`` points: ``(text, size)``.

    Draws the figure first, so tick labels exist.
    """
    fig.canvas.draw()
    found = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() < min_pt - 1e-9:
            found.append((t.get_text(), float(t.get_fontsize())))
    return found
