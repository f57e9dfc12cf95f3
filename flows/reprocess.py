"""Ad hoc reprocessing: pick documents from existing output and run them again with a config.

Selection criteria (all given must hold): doc ids, a source prefix, a date
range of ``processed_at``, a config fingerprint other than the current one
(``stale``) or named fingerprints, mean confidence below a value, error codes.
Each is judged on a document's newest row. ``fields_only`` extracts the
selected documents' invoice fields again from their pages, without OCR. New rows carry the new config's
fingerprint; old rows stay, and readers take the newest per ``doc_id``
(:data:`pipeline.output.catalog.LATEST_DOCUMENTS_SQL`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import FlowReport, JobParams, check_error_rate, export_task, prepare, publish_report, run_shards
from pipeline.config import FolioConfig
from pipeline.output.catalog import Selection, select_documents

__all__ = ["reprocess_flow"]


@task(name="select", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def select_task(dest, selection, fingerprint, storage_config):
    return select_documents(dest, selection, fingerprint, storage_config)


def extract_fields_again(dest: str, selection: Selection, config: FolioConfig) -> FlowReport:
    """The fields of the selected documents, extracted again from their pages into a new run under ``dest``
    (``folio fields``), as the flow's report."""
    from pipeline.output.refields import extract_fields

    result = extract_fields(dest, dest, config, selection=selection)
    return FlowReport(flow="reprocess", dest=dest, fingerprint="", planned=result.tally.documents, shards=1,
                      batch_id=result.tally.run_id, run_ids=[result.tally.run_id], seconds=result.tally.seconds,
                      selection=f"{selection.describe()} (fields only)")


@task(name="fields", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def fields_task(dest: str, selection: Selection, config: FolioConfig) -> FlowReport:
    """:func:`extract_fields_again` as a task."""
    report = extract_fields_again(dest, selection, config)
    get_run_logger().info("fields of %d documents extracted again", report.planned)
    return report


@flow(name="reprocess", description="Rerun a selection of already processed documents with a given config.")
def reprocess_flow(
    dest: str,
    config: str | None = None,
    sets: dict[str, Any] | None = None,
    doc_ids: list[str] | None = None,
    source_prefix: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    stale: bool = False,
    fingerprints: list[str] | None = None,
    below_confidence: float | None = None,
    error_codes: list[str] | None = None,
    everything: bool = False,
    shard_size: int | None = None,
    runner: Literal["ray", "local"] = "ray",
    ray_address: str | None = None,
    fields_only: bool = False,
) -> FlowReport:
    """Reprocess the documents under ``dest`` that the selection picks, with ``config``.

    Args:
        dest: output root holding earlier results; new rows are written there too.
        config: Folio YAML config to rerun with (default: the built-in defaults).
        sets: dotted overrides on top of it.
        doc_ids: these documents.
        source_prefix: documents whose source URI starts with this.
        since / until: processed on or after / on or before these dates (UTC).
        stale: documents whose newest row has a fingerprint other than this config's.
        fingerprints: documents whose newest row has one of these fingerprints.
        below_confidence: documents whose mean line confidence is below this.
        error_codes: documents whose newest row has one of these error codes.
        everything: every document (must be asked for explicitly).
        shard_size: documents per shard (default ``jobs.shard_size``).
        runner: ``ray`` (default) or ``local``.
        ray_address: Ray cluster (default ``RAY_ADDRESS``, else a local Ray).
        fields_only: extract the fields of the selected documents again from their pages (``folio
            fields``), without OCR: after a change to the fields stage or its settings.
    """
    if below_confidence is not None and not 0 <= below_confidence <= 1:
        raise ValueError(f"below_confidence must be between 0 and 1, got {below_confidence}")
    if since and until and since > until:
        raise ValueError(f"since ({since}) is after until ({until})")
    params = JobParams(dest=dest, config=config, sets=sets or {}, shard_size=shard_size, runner=runner,
                       ray_address=ray_address)
    cfg, fingerprint = prepare(params)
    selection = Selection(
        doc_ids=tuple(doc_ids or ()), source_prefix=source_prefix, since=since, until=until, stale=stale,
        fingerprints=tuple(fingerprints or ()), below_confidence=below_confidence,
        error_codes=tuple(error_codes or ()), everything=everything,
    )
    if selection.empty:
        raise ValueError("reprocess needs a selection: doc_ids, source_prefix, since/until, stale, "
                         "fingerprints, below_confidence, error_codes or everything")
    if fields_only:
        report = fields_task(params.dest, selection, cfg)
        publish_report(report, cfg, key="folio-reprocess")
        return report
    selected = select_task(params.dest, selection, fingerprint, cfg.storage)
    get_run_logger().info("selected %d of %d documents (%d inputs): %s", len(selected.doc_ids), selected.considered,
                          len(selected.refs), selection.describe())
    report = run_shards("reprocess", selected.refs, params, cfg, fingerprint, redo=True)
    report.selection = selection.describe()
    report = export_task(report, cfg, None)
    publish_report(report, cfg, key="folio-reprocess")
    check_error_rate(report, cfg)
    return report
