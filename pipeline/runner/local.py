"""The local runner: every stage in this process, the reference every other runner matches.

For each planned input, the decode stage reads, hashes and decodes it (asking
the assembler whether its pages are wanted; with ``runner.decode_threads``
above 1, that many inputs ahead in threads, :func:`decoded_ahead`); decoded pages are OCR'd by the
page stage in batches of ``runner.batch_pages`` that span documents (with
``runner.ocr_threads`` above 1, that many batches at once in threads sharing
one copy of the models, while the next pages are decoded; a page's result does
not depend on its batch); every other item and every page result goes to the
assembler, in the order the batches were made.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.config import FolioConfig
from pipeline.stages.assemble import Assembler
from pipeline.stages.decode import DecodeStage
from pipeline.stages.factory import create_page_stage
from pipeline.types import DocumentRef, Item, Page, PageImage

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

    decode_threads = config.runner.decode_threads
    try:
        if decode_threads > 1:
            documents = decoded_ahead(refs, decode, assembler.wanted, decode_threads, config.runner.batch_pages)
        else:
            documents = (decode(ref, wanted=assembler.wanted) for ref in refs)
        for items in documents:
            for item in items:
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


_END = object()


def decoded_ahead(
    refs: Sequence[DocumentRef],
    decode: Callable[..., Iterator[Item]],
    wanted: Callable[[str, str], bool],
    threads: int,
    depth: int,
) -> Iterator[Iterator[Item]]:
    """Each input's items, in the order of ``refs``, read and decoded up to ``threads`` inputs ahead in
    threads.

    A thread holds at most ``depth`` items of its input waiting, so memory stays bounded however many
    pages a document has. ``wanted`` is asked in the order of ``refs`` (each thread waits for its turn),
    so which of two inputs with the same bytes is read is what it is without threads.
    """
    stop = threading.Event()
    turns = [threading.Event() for _ in range(len(refs) + 1)]
    turns[0].set()

    def wait(event: threading.Event) -> bool:
        while not event.wait(0.1):
            if stop.is_set():
                return False
        return True

    def work(i: int, ref: DocumentRef, out: queue.Queue) -> None:
        asked = False

        def in_turn(doc_id: str, uri: str) -> bool:
            nonlocal asked
            asked = True
            if not wait(turns[i]):
                return False
            try:
                return wanted(doc_id, uri)
            finally:
                turns[i + 1].set()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in decode(ref, wanted=in_turn):
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - the consumer raises it, in order
            put(e)
        finally:
            if not asked and wait(turns[i]):
                turns[i + 1].set()
            put(_END)

    def items(out: queue.Queue) -> Iterator[Item]:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    window: collections.deque[queue.Queue] = collections.deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="folio-decode")
    todo = iter(enumerate(refs))
    try:
        for i, ref in todo:
            window.append(queue.Queue(maxsize=depth))
            pool.submit(work, i, ref, window[-1])
            if len(window) >= threads:
                break
        while window:
            yield items(window.popleft())
            nxt = next(todo, None)
            if nxt is not None:
                window.append(queue.Queue(maxsize=depth))
                pool.submit(work, nxt[0], nxt[1], window[-1])
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
