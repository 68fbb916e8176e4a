"""Display: every figure (:mod:`.plots`), explorer and slider figure (:mod:`.explorers`) and unit diagram (:mod:`.diagrams`)."""
