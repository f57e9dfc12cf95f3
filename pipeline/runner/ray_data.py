"""The Ray Data runner: the same records as the local runner, fanned out over a Ray cluster.

The job::

    planned refs (driver)
      -> flat_map(fetch + sniff + decode)      CPU tasks, ``ray.decode_num_cpus`` each
      -> map_batches(OcrRecords)               actor pool: models load once per actor;
                                               one GPU each when the cluster has GPUs,
                                               fractional CPUs otherwise
      -> iter_rows() -> Assembler (driver)     rows, Parquet shards, manifest

Pages stream: Ray Data's executor bounds what is in flight, pixels stay in the
object store between decode tasks and OCR actors, and the driver only ever
sees page results (text and boxes). Per-document failures are records, never
exceptions, so Ray Data never drops a block; a dead actor is restarted and its
batch retried, and the assembler keeps each document and page once.

Only this module imports Ray.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Sequence

from pipeline.config import FolioConfig
from pipeline.errors import ConfigError
from pipeline.runner.common import (
    RECORD_FIELDS,
    Assembler,
    OcrRecords,
    RunSummary,
    read_document,
    records_table,
    start_run,
)
from pipeline.storage import get_storage
from pipeline.types import DocumentRef

__all__ = ["run_ray", "ray_init", "decode_blocks"]

log = logging.getLogger(__name__)


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise ConfigError("the Ray runner needs ray: pip install 'ray[data]'") from e
    return ray


def ray_init(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``), else start a local Ray; no-op when already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {
        "ignore_reinit_error": True,
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address is None:
        kwargs["num_cpus"] = num_cpus
    ray.init(address=address, **kwargs)


def decode_blocks(documents: int, decode_tasks: int, docs_per_task: int) -> int:
    """How many blocks (so decode tasks) the planned documents are split into: enough to keep every
    decode task busy, and none holding more than ``docs_per_task`` documents, because a decode
    worker's memory grows with the documents its task reads."""
    if documents <= 0:
        return 1
    return max(min(documents, 4 * decode_tasks), -(-documents // docs_per_task))


def _decode_refs(batch, config: FolioConfig):
    """Decode task: planned refs in, their page and document records out, a small table per record
    so that a long document streams instead of landing in one block."""
    for row in batch.to_pylist():
        ref = DocumentRef(row["uri"], row["size"], row["etag"])
        storage = get_storage(ref.uri, config.storage)
        for record in read_document(ref, storage, config, as_bytes=True):
            yield records_table([record])


class PageAttempts:
    """A small actor counting how often each page was handed to an OCR actor, in a batch and alone.

    A count above one means an actor died with the page (Ray Data retried its
    batch); :meth:`OcrRecords.__call__` uses that to isolate and, at last,
    give up on a page. Finished pages are forgotten, so it stays small.
    """

    def __init__(self):
        self.counts: dict[tuple[str, str], int] = {}

    def begin(self, keys: list[str], mode: str) -> list[int]:
        out = []
        for key in keys:
            n = self.counts.get((mode, key), 0) + 1
            self.counts[(mode, key)] = n
            out.append(n)
        return out

    def end(self, keys: list[str]) -> None:
        for key in keys:
            self.counts.pop(("batch", key), None)
            self.counts.pop(("solo", key), None)


def run_ray(
    source: str | Iterable[DocumentRef],
    dest: str,
    config: FolioConfig,
    *,
    force: bool = False,
    progress: bool = True,
    exclude: Sequence[str] = (),
    redo_before: dt.datetime | None = None,
    run_id: str | None = None,
    address: str | None = None,
) -> RunSummary:
    """Run the pipeline on Ray Data and write results to ``dest``; same output as :func:`run_local`.

    Args:
        source: folder, file or URI to plan from, or already planned refs.
        dest: output folder or URI (must be reachable from the workers).
        config: the run's configuration (``ray`` section: actor pool and task sizes).
        force: redo documents the destination already holds under this config.
        progress: show a progress bar on stderr.
        redo_before: redo documents whose existing rows were processed before this time
            (what a reprocessing job passes, so its retries keep what earlier attempts finished).
        run_id: the run's id (default a new one); output file names carry it.
        exclude: glob patterns of inputs to leave out.
        address: Ray cluster address (default ``ray.address``, ``RAY_ADDRESS``, else local Ray).
    """
    from pipeline.models.engine import resolve_engine

    ray = _ray()
    if config.engine.name == "auto":  # the workers' GPUs decide, not the driver's
        ray_init(address or config.ray.address)
        config = resolve_engine(config, cuda=ray.cluster_resources().get("GPU", 0) >= 1)
    refs, assembler = start_run(source, dest, config, force=force, progress=progress, exclude=exclude,
                                  redo_before=redo_before, run_id=run_id)
    try:
        if refs:
            ray_init(address or config.ray.address)
            _stream(ray, refs, config, assembler)
    finally:
        assembler.progress.close()
    return assembler.close(source if isinstance(source, str) else None)


def _stream(ray, refs: list[DocumentRef], config: FolioConfig, assembler: Assembler) -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts documents, pages and errors
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rc = config.ray
    gpus = rc.ocr_num_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # Kept beside the driver, so losing a worker node does not lose the counts.
    attempts = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(PageAttempts).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    ).remote()
    decode_tasks = rc.max_decode_tasks
    if gpus > 0:  # a GPU reads pages faster than one CPU decodes them: feed each OCR actor
        gpu_actors = min(rc.ocr_actors, int(ray.cluster_resources().get("GPU", 0) // gpus) or 1)
        decode_tasks = max(decode_tasks, rc.decode_tasks_per_gpu * gpu_actors)
    items = [{"uri": r.uri, "size": r.size or 0, "etag": r.etag} for r in refs]
    ds = ray.data.from_items(items, override_num_blocks=decode_blocks(len(items), decode_tasks, rc.docs_per_task))
    ds = ds.map_batches(
        _decode_refs, fn_kwargs={"config": config}, batch_size=1, batch_format="pyarrow",
        num_cpus=rc.decode_num_cpus, compute=ray.data.TaskPoolStrategy(size=decode_tasks),
    )
    ds = ds.map_batches(
        OcrRecords,
        fn_constructor_kwargs={"config": config, "attempts": attempts},
        batch_size=config.runner.batch_pages,
        batch_format="pyarrow",
        # Ray Data restarts dead actors and retries their batches without limit by default.
        # Each actor runs runner.ocr_threads batches at once in threads sharing its models, as the
        # local runner does.
        compute=ray.data.ActorPoolStrategy(
            min_size=1, max_size=rc.ocr_actors, max_concurrent_calls_per_actor=config.runner.ocr_threads,
            enable_true_multi_threading=config.runner.ocr_threads > 1,
        ),
        num_cpus=rc.ocr_num_cpus,
        num_gpus=gpus,
    )
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.drop_columns(["image_bytes"]).to_pylist():
                assembler.add(dict(RECORD_FIELDS) | row)
    finally:
        # The counts are this run's; left alive, every run a long-lived driver (a Prefect worker,
        # a notebook) makes would leave one more actor behind.
        ray.kill(attempts)
