"""Display: every figure (:mod:`.plots`), explorer and slider figure (:mod:`.explorers`) and unit diagram (:mod:`.diagrams`).

Importing it sets the book's figure style (:mod:`.style`: text >= 9 pt, 150 dpi).
"""
from .style import use_book_style

use_book_style()
