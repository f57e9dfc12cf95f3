"""Stages: callable classes that run the same way in the local runner's loop and in Ray's workers.

A stage's ``__init__`` loads what it needs once (models); its ``__call__``
maps a batch of items to a batch of items (:mod:`pipeline.types`):

- :mod:`~pipeline.stages.decode`: a planned input to its decoded pages and its source document;
- :mod:`~pipeline.stages.dewarp`: pages flattened and turned upright;
- :mod:`~pipeline.stages.ocr` (or :mod:`~pipeline.stages.tesseract`): pages to lines and words;
- :mod:`~pipeline.stages.layout`: lines to blocks in reading order, and the page text;
- :mod:`~pipeline.stages.assemble`: pages and source documents to ``documents`` rows.

:mod:`~pipeline.stages.factory` composes the middle ones into the page stage
an OCR worker runs. A failure on one page or document is that page's or
document's error row; a stage never lets an exception take down its batch.
"""
