"""Page stages that fail the way production workers do, loaded through ``plugins.stage``
(the seam a custom engine would use; OCRmyPDF's test plugins work the same way).

``oom_on_poison``: the worker dies (SIGKILL, what the kernel's OOM killer sends)
whenever it is handed the poison page, a page of exactly ``POISON_SHAPE`` pixels.
``killed_once``: the first batch the run hands out kills its worker halfway,
once per run (a marker file named by ``FOLIO_TEST_KILL_MARKER`` remembers it).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pipeline.config import FolioConfig, PluginsConfig
from pipeline.stages.factory import create_page_stage

POISON_SHAPE = (555, 777)  # (height, width)


def _real(config: FolioConfig):
    return create_page_stage(config.model_copy(update={"plugins": PluginsConfig()}))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def oom_on_poison(config: FolioConfig):
    stage = _real(config)

    def run(pages):
        if any(tuple(page.image.shape[:2]) == POISON_SHAPE for page in pages):
            _die()
        return stage(pages)

    return run


def killed_once(config: FolioConfig):
    stage = _real(config)
    marker = Path(os.environ["FOLIO_TEST_KILL_MARKER"])

    def run(pages):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return stage(pages)
        os.close(fd)
        stage(pages[:1])  # half the work, then the worker is gone
        _die()

    return run


def raises_on_marked_page(config: FolioConfig):
    """A page stage that raises a library's exception (not Folio's) whenever a batch holds a page of
    an input whose name contains ``MARK``: what a bug or a foreign library does."""
    stage = _real(config)

    def run(pages):
        if any(MARK in page.key for page in pages):
            raise ZeroDivisionError("injected: a foreign exception in the page stage")
        return stage(pages)

    return run


#: The inputs :func:`raises_on_marked_page` fails on.
MARK = "marked-for-failure"
