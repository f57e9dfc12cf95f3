"""Scheduled invoice ingestion: small, frequent batches with a deadline and an error-rate alert.

The same engine as the archive flow with ``configs/invoices.yaml``: small
shards, a deadline per run (shards not started by then wait for the next run,
and the run fails so someone looks), and a failed flow state when the share of
failed documents passes ``jobs.max_error_rate``; Prefect automations on
failed states turn that into a notification.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows.common import (
    DeadlinePassed,
    FlowReport,
    JobParams,
    check_error_rate,
    plan_task,
    prepare,
    publish_report,
    run_shards,
)

__all__ = ["invoices_flow"]

@flow(name="invoices", description="Scheduled invoice ingestion with a deadline and an error-rate alert.")
def invoices_flow(
    source: str,
    dest: str,
    config: str | None = None,
    sets: dict[str, Any] | None = None,
    shard_size: int | None = None,
    deadline_minutes: float | None = None,
    max_error_rate: float | None = None,
    runner: Literal["ray", "local"] = "ray",
    ray_address: str | None = None,
    exclude: list[str] | None = None,
) -> FlowReport:
    """OCR the invoices that arrived under ``source`` since the last run.

    Args:
        source: local folder or ``s3://bucket/prefix`` where invoices land.
        dest: output root (local or ``s3://``).
        config: Folio YAML config (default ``configs/invoices.yaml``).
        sets: dotted overrides on top of it.
        shard_size: documents per shard (default ``jobs.shard_size``).
        deadline_minutes: start no shard after this (default ``jobs.deadline_minutes``).
        max_error_rate: fail the run above this share of failed documents (default ``jobs.max_error_rate``).
        runner: ``ray`` (default) or ``local``.
        ray_address: Ray cluster (default ``RAY_ADDRESS``, else a local Ray).
        exclude: glob patterns of inputs to leave out.
    """
    if max_error_rate is not None and not 0 <= max_error_rate <= 1:
        raise ValueError(f"max_error_rate must be between 0 and 1, got {max_error_rate}")
    if deadline_minutes is not None and deadline_minutes <= 0:
        raise ValueError(f"deadline_minutes must be positive, got {deadline_minutes}")
    params = JobParams(source=source, dest=dest, config=config, sets=sets or {}, shard_size=shard_size,
                       runner=runner, ray_address=ray_address, exclude=exclude or [])
    cfg, fingerprint = prepare(params, "invoices.yaml")
    refs, done = plan_task(params.source, params.dest, cfg, fingerprint, params.exclude)
    report = run_shards("invoices", refs, params, cfg, fingerprint, deadline_minutes=deadline_minutes)
    report.already_done = done
    publish_report(report, cfg, key="folio-invoices")
    check_error_rate(report, cfg, max_error_rate)
    if report.not_started:
        raise DeadlinePassed(f"deadline passed with {report.not_started} documents not started; "
                             "they are new work for the next run")
    return report
