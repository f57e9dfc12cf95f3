"""A run: plan the inputs, fingerprint the configuration, run the stages on a runner, write the output.

:func:`run` is what ``folio run`` and the flows' shards call. It lists the
inputs (:func:`plan`), reads what the destination already holds, sets up the
assembler with the Parquet writer as its sink, hands everything to the local
or the Ray runner, and writes the run's manifest (at every shard, as the run's
lease, and at the end). It returns the run's :class:`~pipeline.types.RunTally`.

The config fingerprint lives here too (:func:`fingerprint`): it hashes what
the run will actually compute with, the engine ``auto`` resolves to and the
precision the torch engine runs in included, with the sha256 of every model.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from pipeline import __version__
from pipeline.config import FolioConfig, StorageConfig
from pipeline.errors import ClusterUnavailable, FolioError
from pipeline.io.storage import get_storage
from pipeline.models.engine import resolve_engine
from pipeline.models.zoo import ModelFile
from pipeline.output.parquet import DatasetWriter, load_done_index, new_run_id, retire_orphan_pages
from pipeline.runner.local import run_local
from pipeline.runner.ray_data import connect, run_ray
from pipeline.stages.assemble import Assembler
from pipeline.stages.factory import create_page_stage, stage_models
from pipeline.stages.fields import FieldsStage
from pipeline.types import DocumentRef, Page, RunTally

__all__ = ["fingerprint", "plan", "run", "settle", "Progress"]

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def fingerprint(config: FolioConfig, models: dict[str, ModelFile] | None = None) -> str:
    """The ``config_fingerprint`` a run with ``config`` writes: a short stable hash of every setting
    that can change the output (:meth:`~pipeline.config.FolioConfig.output_settings`), with the
    engine that actually runs and its precision, and the sha256 of every model file.

    Args:
        config: the run's configuration.
        models: ``stage_models(config)`` when already at hand (they are looked up otherwise).

    Raises:
        ModelError: a model file the config needs is missing.
    """
    if models is None:
        models = stage_models(config)
    engine = resolve_engine(config).engine  # as the runner resolved it; else as it runs in this process
    payload = {
        "config": config.output_settings(engine.name, engine.dtype if engine.name == "torch" else None),
        "models": dict(sorted((k, m.sha256) for k, m in models.items())),
        "version": __version__,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def settle(config: FolioConfig, runner: str = "local", address: str | None = None) -> FolioConfig:
    """``config`` with the engine resolved as ``runner``'s workers will run it, for a caller that needs
    the run's fingerprint before the run (a flow planning what is already done).

    The local runner's workers are this process. The Ray runner's OCR actors compute on a GPU
    when ``ray.ocr_num_gpus`` gives them one; where it is null and the engine depends on it,
    this connects to the cluster to ask (as :func:`run` does).

    Raises:
        ClusterUnavailable: the cluster had to be asked and cannot be used.
    """
    if runner != "ray":
        return resolve_engine(config)
    gpus = config.ray.ocr_num_gpus
    if gpus is None and resolve_engine(config, cuda=True) != resolve_engine(config, cuda=False):
        return connect(config, address)[0]
    return resolve_engine(config, cuda=bool(gpus))


def plan(source: str, exclude: Sequence[str] = (), storage_config: StorageConfig | None = None) -> list[DocumentRef]:
    """Every document under ``source`` (folder, recursively, or one file), sorted.

    Args:
        source: folder, file or URI prefix (``s3://bucket/prefix``).
        exclude: glob patterns (``fnmatch``) matched against each object's path
            relative to ``source`` and against its base name; matches are left out.
        storage_config: object-store client settings (default ``StorageConfig()``).
    """
    refs = get_storage(source, storage_config).list(source)
    if not exclude:
        return list(refs)
    root = source.rstrip("/")
    kept = []
    for ref in refs:
        rel = ref.uri[len(root) :].lstrip("/") if ref.uri.startswith(root) else ref.uri
        name = rel.rsplit("/", 1)[-1]
        if not any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(name, pat) for pat in exclude):
            kept.append(ref)
    return kept


class Progress:
    """tqdm bar over documents with pages, pages/s and failures; silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.start = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="doc", dynamic_ncols=True, desc="folio run")

    def note(self, text: str) -> None:
        """A line on stderr above the bar."""
        if self.bar is not None:
            self.bar.write(f"folio: {text}", file=sys.stderr)

    def update(self, tally: RunTally) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix(pages=tally.pages, pages_s=f"{tally.pages / elapsed:.2f}", errors=tally.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(
    source: str | Iterable[DocumentRef],
    dest: str,
    config: FolioConfig,
    *,
    runner: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
    exclude: Sequence[str] = (),
    redo_before: dt.datetime | None = None,
    run_id: str | None = None,
    stage_factory: Callable[[FolioConfig], Callable[[Sequence], list[Page]]] | None = None,
) -> RunTally:
    """OCR ``source`` into Parquet under ``dest``.

    Args:
        source: folder, file or URI to plan from, or already planned refs.
        dest: output folder or URI (reachable from every worker on Ray).
        config: the run's configuration.
        runner: ``local`` (this process) or ``ray`` (Ray Data on the cluster at ``address``,
            ``ray.address`` or ``RAY_ADDRESS``, else a local Ray); both write the same rows.
        address: Ray cluster address.
        force: redo documents the destination already holds under this config.
        progress: show a progress bar on stderr.
        exclude: glob patterns of inputs to leave out (see :func:`plan`).
        redo_before: redo documents whose existing rows were processed before this time
            (what a reprocessing job passes, so its retries keep what earlier attempts finished).
        run_id: the run's id (default a new one); output file names carry it.
        stage_factory: builds the page stage (default from the config; the seam tests inject
            faults through).

    Returns:
        The run's tally; the manifest's path is in ``tally.manifest``.

    Raises:
        ModelError: a model the config needs is missing.
        StorageError: the destination cannot be read or written.
        ValueError: ``run_id`` cannot name files, or ``runner`` is unknown.
    """
    if runner not in ("local", "ray"):
        raise ValueError(f"runner must be 'local' or 'ray', got {runner!r}")
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-128 letters, digits, '.', '_' or '-' (it names files)")
    run_id = run_id or new_run_id()
    connected = None
    if runner == "ray":
        try:  # connect first: a cluster that cannot be used fails the run before it plans or writes anything
            config, connected = connect(config, address)
        except ClusterUnavailable as e:
            _record_failure(dest, config, run_id, source, e)
            raise
    else:
        config = resolve_engine(config)
    refs = plan(source, exclude, config.storage) if isinstance(source, str) else list(source)
    retire_orphan_pages(dest, config.storage, config.output.orphan_after_s)
    done = load_done_index(dest, config.storage)
    models = stage_models(config)
    model_rows = [{"role": k, "name": m.name, "sha256": m.sha256} for k, m in models.items()]
    tally = RunTally(run_id=run_id, dest=dest, fingerprint=fingerprint(config, models))
    writer = DatasetWriter(dest, tally.run_id, config.output.compression, storage_config=config.storage)
    bar = Progress(len(refs), progress)
    if connected:
        log.info(connected)
        bar.note(connected)
    shards = 0
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc)

    def manifest(final: bool, failure: FolioError | None = None) -> None:
        tally.manifest = writer.write_manifest({
            "run_id": tally.run_id, "complete": final, "source": source if isinstance(source, str) else None,
            "dest": dest, "started_at": started_at.isoformat(),
            "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat() if final else None,
            "pipeline_version": __version__, "config_fingerprint": tally.fingerprint,
            "config": config.model_dump(mode="json"), "models": model_rows,
            "counts": {"documents": tally.documents, "skipped": tally.skipped, "ok": tally.ok,
                       "partial": tally.partial, "error": tally.errors, "pages": tally.pages,
                       "page_errors": tally.page_errors},
            "errors_by_code": tally.errors_by_code, "files": writer.files, "inputs": assembler.outcomes,
            "failure": None if failure is None else {"code": failure.code, "message": failure.message},
        })

    def write(documents: list[dict], pages: list[Page], fields: list) -> None:
        nonlocal shards
        writer.write_shard(shards, documents, pages, tally.fingerprint, fields)
        shards += 1
        manifest(final=False)  # the run's lease: others see it is alive (retire_orphan_pages)

    assembler = Assembler(config, done, tally.fingerprint, model_rows, tally.run_id, write, tally=tally, force=force,
                          redo_before=redo_before, on_document=bar.update,
                          fields=FieldsStage(config.fields) if config.fields.enabled else None)
    if refs:
        manifest(final=False)
    factory = stage_factory or create_page_stage
    try:
        if runner == "ray":
            run_ray(refs, config, assembler, address=address, stage_factory=factory)
        else:
            run_local(refs, config, assembler, stage_factory=factory)
    except FolioError as e:  # the run cannot go on (a cluster lost, a store down): the manifest says why
        manifest(final=False, failure=e)
        raise
    finally:
        bar.close()
    assembler.close()
    tally.seconds = time.perf_counter() - started
    manifest(final=True)
    log.info("run %s: %d documents (%d skipped), %d pages, %d failed in %.1f s", tally.run_id, tally.documents,
             tally.skipped, tally.pages, tally.failed, tally.seconds)
    return tally


def _record_failure(dest: str, config: FolioConfig, run_id: str, source, error: FolioError) -> None:
    """The manifest of a run that failed before it started: what it was asked to do, and why it did not."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    try:
        writer = DatasetWriter(dest, run_id, config.output.compression, storage_config=config.storage)
        writer.write_manifest({
            "run_id": run_id, "complete": False, "source": source if isinstance(source, str) else None,
            "dest": dest, "started_at": now, "updated_at": now, "finished_at": None,
            "pipeline_version": __version__, "config": config.model_dump(mode="json"),
            "failure": {"code": error.code, "message": error.message}, "files": [], "inputs": [],
        })
    except FolioError as e:  # the original failure is what the caller must see
        log.warning("cannot record the failed run in %s: %s", dest, e)
