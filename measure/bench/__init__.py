"""``folio bench``: speed, memory and accuracy of Folio's runners and of peer systems on the same
pages (:func:`measure.bench.core.bench`)."""
