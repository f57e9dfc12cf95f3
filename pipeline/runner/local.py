"""The local runner: the whole pipeline in one process, the reference every other runner matches.

For each planned document: read the bytes, hash them (``doc_id``), skip it if
the destination already holds it under the same config fingerprint, decode its
pages, OCR them in batches that span documents (with ``runner.ocr_threads``
above 1, that many batches at once in threads sharing one copy of the models,
while the next pages are decoded; a page's result does not depend on its
batch), assemble rows, and flush
Parquet shards every ``runner.flush_documents`` documents. A failure that
belongs to one document (corrupt file, over a limit, unreadable) becomes its
``status=error`` row; the run goes on.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.config import FolioConfig
from pipeline.models.engine import resolve_engine
from pipeline.runner.common import OcrRecords, RunSummary, plan, read_document, start_run
from pipeline.stages import create_stage
from pipeline.storage import get_storage
from pipeline.types import DocumentRef

__all__ = ["RunSummary", "run_local", "plan"]

log = logging.getLogger(__name__)


def run_local(
    source: str | Iterable[DocumentRef],
    dest: str,
    config: FolioConfig,
    *,
    force: bool = False,
    progress: bool = True,
    exclude: Sequence[str] = (),
    redo_before: dt.datetime | None = None,
    run_id: str | None = None,
    stage_factory: Callable[[FolioConfig], object] = create_stage,
) -> RunSummary:
    """Run the pipeline over ``source`` in this process and write results to ``dest``.

    Args:
        source: folder, file or URI to plan from, or already planned refs.
        dest: output folder or URI.
        config: the run's configuration.
        force: redo documents the destination already holds under this config.
        progress: show a progress bar on stderr.
        redo_before: redo documents whose existing rows were processed before this time
            (what a reprocessing job passes, so its retries keep what earlier attempts finished).
        run_id: the run's id (default a new one); output file names carry it.
        exclude: glob patterns of inputs to leave out (see :func:`plan`).
        stage_factory: builds the OCR stage (the seam tests use to inject faults).

    Returns:
        The run's :class:`RunSummary`; the manifest path is in ``summary.manifest``.
    """
    config = resolve_engine(config)
    refs, assembler = start_run(source, dest, config, force=force, progress=progress, exclude=exclude,
                                  redo_before=redo_before, run_id=run_id)
    ocr: OcrRecords | None = None  # models load only when there is a page to OCR
    pending: list[dict] = []
    threads = config.runner.ocr_threads
    # Batches in flight, oldest first; their results are added in the order the batches were made.
    in_flight: collections.deque[Future] = collections.deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="folio-ocr") if threads > 1 else None

    def collect(block_while: int) -> None:
        while len(in_flight) > block_while or (in_flight and in_flight[0].done()):
            for record in in_flight.popleft().result():
                assembler.add(record)

    def run_ocr() -> None:
        nonlocal ocr, pending
        if not pending:
            return
        if ocr is None:
            ocr = OcrRecords(config, stage_factory)
        batch, pending = pending, []
        if pool is None:
            for record in ocr.process(batch):
                assembler.add(record)
            return
        # Keep at most `threads` batches in flight: decoded pages wait in `pending`, not in a queue.
        collect(block_while=threads - 1)
        in_flight.append(pool.submit(ocr.process, batch))

    storages: dict[bool, object] = {}
    try:
        for ref in refs:
            storage = storages.setdefault("://" in ref.uri, get_storage(ref.uri, config.storage))
            for record in read_document(ref, storage, config, wanted=assembler.wanted):
                if record["kind"] == "page":
                    pending.append(record)
                    if len(pending) >= config.runner.batch_pages:
                        run_ocr()
                else:
                    assembler.add(record)
            collect(block_while=threads)
        run_ocr()
        collect(block_while=0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        assembler.progress.close()
    summary = assembler.close(source if isinstance(source, str) else None)
    log.info(
        "run %s: %d documents (%d skipped), %d pages, %d failed in %.1f s",
        summary.run_id, summary.documents, summary.skipped, summary.pages, summary.failed, summary.seconds,
    )
    return summary
