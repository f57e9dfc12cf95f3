"""Nightly archive digitization: OCR what is new under a source prefix since the last run.

"New" means objects whose (URI, ETag) has no ``documents`` row under the
current config fingerprint: new scans, changed scans, and everything after a
config or model change. Shards run on Ray with retries; the artifact reports
the run from the Parquet it wrote.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows.common import (
    FlowReport,
    JobParams,
    check_error_rate,
    export_task,
    plan_task,
    prepare,
    publish_report,
    run_shards,
)

__all__ = ["archive_flow"]

@flow(name="archive", description="Nightly archive digitization: OCR what is new under a prefix.")
def archive_flow(
    source: str,
    dest: str,
    config: str | None = None,
    sets: dict[str, Any] | None = None,
    shard_size: int | None = None,
    runner: Literal["ray", "local"] = "ray",
    ray_address: str | None = None,
    exclude: list[str] | None = None,
) -> FlowReport:
    """OCR every document under ``source`` that ``dest`` does not hold under the current config.

    Args:
        source: local folder or ``s3://bucket/prefix`` of scans.
        dest: output root (local or ``s3://``).
        config: Folio YAML config (default ``configs/archive.yaml``).
        sets: dotted overrides on top of it.
        shard_size: documents per shard (default ``jobs.shard_size``).
        runner: ``ray`` (default) or ``local``.
        ray_address: Ray cluster (default ``RAY_ADDRESS``, else a local Ray).
        exclude: glob patterns of inputs to leave out.
    """
    params = JobParams(source=source, dest=dest, config=config, sets=sets or {}, shard_size=shard_size,
                       runner=runner, ray_address=ray_address, exclude=exclude or [])
    cfg, fingerprint = prepare(params, "archive.yaml")
    refs, done = plan_task(params.source, params.dest, cfg, fingerprint, params.exclude)
    report = run_shards("archive", refs, params, cfg, fingerprint)
    report.already_done = done
    report = export_task(report, cfg, params.source)
    publish_report(report, cfg, key="folio-archive")
    check_error_rate(report, cfg)
    return report
