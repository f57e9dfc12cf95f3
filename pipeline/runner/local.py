"""The local runner: every stage in this process, the reference every other runner matches.

For each planned input, the decode stage reads, hashes and decodes it (asking
the assembler whether its pages are wanted); decoded pages are OCR'd by the
page stage in batches of ``runner.batch_pages`` that span documents (with
``runner.ocr_threads`` above 1, that many batches at once in threads sharing
one copy of the models, while the next pages are decoded; a page's result does
not depend on its batch); every other item and every page result goes to the
assembler, in the order the batches were made.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.config import FolioConfig
from pipeline.stages.assemble import Assembler
from pipeline.stages.decode import DecodeStage
from pipeline.stages.factory import create_page_stage
from pipeline.types import DocumentRef, Page, PageImage

__all__ = ["run_local"]

log = logging.getLogger(__name__)

#: Builds the page stage from the run's config (the seam tests inject faults through).
StageFactory = Callable[[FolioConfig], Callable[[Sequence[PageImage]], list[Page]]]


def run_local(
    refs: Sequence[DocumentRef],
    config: FolioConfig,
    assembler: Assembler,
    *,
    stage_factory: StageFactory = create_page_stage,
) -> None:
    """Run ``refs`` through the stages in this process, every item ending in ``assembler``.

    Args:
        refs: the planned inputs.
        config: the run's configuration (``engine.name`` resolved).
        assembler: takes every page and source document.
        stage_factory: builds the page stage; the models load when the first page needs them.
    """
    decode = DecodeStage(config)
    stage = None
    pending: list[PageImage] = []
    threads = config.runner.ocr_threads
    # Batches in flight, oldest first; their results are added in the order the batches were made.
    in_flight: collections.deque[Future] = collections.deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="folio-ocr") if threads > 1 else None

    def collect(block_while: int) -> None:
        while len(in_flight) > block_while or (in_flight and in_flight[0].done()):
            for page in in_flight.popleft().result():
                assembler.add(page)

    def run_ocr() -> None:
        nonlocal stage, pending
        if not pending:
            return
        if stage is None:
            stage = stage_factory(config)
        batch, pending = pending, []
        if pool is None:
            for page in stage(batch):
                assembler.add(page)
            return
        # Keep at most `threads` batches in flight: decoded pages wait in `pending`, not in a queue.
        collect(block_while=threads - 1)
        in_flight.append(pool.submit(stage, batch))

    try:
        for ref in refs:
            for item in decode(ref, wanted=assembler.wanted):
                if isinstance(item, PageImage):
                    pending.append(item)
                    if len(pending) >= config.runner.batch_pages:
                        run_ocr()
                else:
                    assembler.add(item)
            collect(block_while=threads)
        run_ocr()
        collect(block_while=0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
