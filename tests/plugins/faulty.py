"""OCR stages that fail the way production workers do, loaded through ``plugins.stage``
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
from pipeline.stages import create_stage

POISON_SHAPE = (555, 777)  # (height, width)


def _real(config: FolioConfig):
    return create_stage(config.model_copy(update={"plugins": PluginsConfig()}))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def oom_on_poison(config: FolioConfig):
    stage = _real(config)

    def run(batch):
        if any(tuple(image.shape[:2]) == POISON_SHAPE for image in batch["image"]):
            _die()
        return stage(batch)

    return run


def killed_once(config: FolioConfig):
    stage = _real(config)
    marker = Path(os.environ["FOLIO_TEST_KILL_MARKER"])

    def run(batch):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return stage(batch)
        os.close(fd)
        stage({k: v[:1] for k, v in batch.items()})  # half the work, then the worker is gone
        _die()

    return run
