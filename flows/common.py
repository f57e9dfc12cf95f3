"""What the three flows share: validated parameters, planning, shards on Ray, and the report.

The flows are thin. They plan in the flow (listing and the done index are
cheap), run each shard as one Prefect task that calls the Ray runner (inference
happens in Ray's actors, never in Prefect's task runner, so models load once
per actor and not once per task), retry a failed shard alone, and publish a
markdown artifact built from the Parquet the shards wrote.

A retried shard cannot duplicate documents: the runner skips every document the
destination already holds under the current config fingerprint, so a retry
redoes only what the failed attempt did not finish.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.config import FolioConfig, load_config
from pipeline.errors import ConfigError
from pipeline.output.catalog import run_stats
from pipeline.output.parquet import load_done_index, new_run_id
from pipeline.run import fingerprint, plan, run, settle
from pipeline.types import DocumentRef, RunTally

__all__ = ["JobParams", "FlowReport", "ErrorRateExceeded", "DeadlinePassed", "CONFIG_DIR", "SHARD_RUNNERS",
           "validate_location", "prepare", "plan_new", "plan_task", "shard", "run_shards", "publish_report"]

log = logging.getLogger(__name__)

#: configs/ beside flows/ in the repository (deployments run from a checkout or the image).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ErrorRateExceeded(RuntimeError):
    """A run's share of failed documents passed ``jobs.max_error_rate``: the flow fails (the alert)."""


class DeadlinePassed(RuntimeError):
    """A run hit ``jobs.deadline_minutes`` before all shards started; the rest waits for the next run."""


def validate_location(value: str, what: str, must_exist: bool) -> str:
    """Check a local path or ``s3://bucket/prefix`` before any work; the message names the problem.

    Raises:
        ValueError: not a local path or s3:// URI, a malformed bucket name, ``..`` in the key,
            or (``must_exist``) a local path that is not there.
    """
    if not value or not value.strip():
        raise ValueError(f"{what} is empty")
    if value.lower().startswith("s3:") and not value.startswith("s3://"):
        raise ValueError(f"{what} {value!r} is not an S3 URI: write s3://bucket/prefix")
    if value.startswith("s3://"):
        bucket, _, prefix = value[len("s3://"):].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(f"{what} {value!r}: {bucket!r} is not a valid S3 bucket name "
                             "(3-63 lowercase letters, digits, dots, hyphens)")
        if ".." in prefix.split("/"):
            raise ValueError(f"{what} {value!r}: '..' is not allowed in a key prefix")
        return value
    if "://" in value:
        raise ValueError(f"{what} {value!r}: only local paths and s3:// URIs are supported")
    if must_exist and not Path(value).exists():
        raise ValueError(f"{what} {value!r} does not exist")
    return value


class JobParams(BaseModel):
    """Parameters every flow takes; validated before any work starts.

    ``config`` is a YAML file (relative paths are tried against the working
    directory, then the repository's ``configs/``); ``sets`` are dotted
    overrides (``{"detection.box_thresh": 0.6}``) applied on top.
    """

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="Where the scans are: a local folder or s3://bucket/prefix.")
    dest: str = Field(description="Output root: a local folder or s3://bucket/prefix.")
    config: str | None = Field(None, description="Folio YAML config for this job.")
    sets: dict[str, Any] = Field(default_factory=dict, description="Dotted config overrides.")
    runner: Literal["ray", "local"] = Field("ray", description="ray (the default) or local (one process).")
    ray_address: str | None = Field(None, description="Ray cluster address; default RAY_ADDRESS, else local Ray.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of inputs to leave out.")
    shard_size: int | None = Field(None, ge=1, description="Documents per shard (default jobs.shard_size).")

    @field_validator("dest")
    @classmethod
    def _dest(cls, value: str) -> str:
        return validate_location(value, "dest", must_exist=False)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return None if value is None else validate_location(value, "source", must_exist=True)


def _config_path(path: str | None, default: str | None) -> Path | None:
    name = path or default
    if name is None:
        return None
    p = Path(name)
    if p.exists() or p.is_absolute():
        return p
    if (CONFIG_DIR / p.name).exists() and len(p.parts) <= 2:
        return CONFIG_DIR / p.name
    return p


def prepare(params: JobParams, default_config: str | None = None) -> tuple[FolioConfig, str]:
    """Load the job's config, with its engine resolved as the shards' workers will run it
    (:func:`~pipeline.run.settle`), and its fingerprint; raises ``ValueError`` naming a bad config.

    The fingerprint needs the model files, so a missing model fails here too,
    before any shard starts; so does a Ray cluster that has to be asked for its GPUs and cannot
    be used (``ClusterUnavailable``).
    """
    try:
        config = load_config(_config_path(params.config, default_config), params.sets)
        config = settle(config, params.runner, params.ray_address)
        return config, fingerprint(config)
    except ConfigError as e:
        raise ValueError(str(e)) from e


def plan_new(source: str, dest: str, config: FolioConfig, fingerprint: str,
             exclude: Sequence[str] = ()) -> tuple[list[DocumentRef], int]:
    """The objects under ``source`` the destination does not hold under ``fingerprint``.

    Judged by (URI, ETag) against the ``documents`` rows already written, so
    unchanged objects are not even downloaded; a changed object (new ETag) and
    an object done only under another config are new work. Inputs whose bytes
    were done under another name are caught later by the runner (by ``doc_id``).

    Returns:
        The new refs, and how many listed objects were already done.
    """
    refs = plan(source, exclude, config.storage)
    done = load_done_index(dest, config.storage)
    new = [r for r in refs if not done.has_object(r.uri, r.etag, fingerprint)]
    return new, len(refs) - len(new)


#: :func:`plan_new` as a Prefect task (listing and the done index are retried on storage hiccups).
plan_task = task(plan_new, name="plan-new", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)


def shard(refs: Sequence[DocumentRef], size: int) -> list[list[DocumentRef]]:
    """Consecutive shards of at most ``size`` refs."""
    return [list(refs[i:i + size]) for i in range(0, len(refs), size)]


def _run_shard(runner: str):
    def run_shard(refs, dest, config, *, redo_before, address, run_id) -> RunTally:
        return run(refs, dest, config, runner=runner, address=address, redo_before=redo_before, progress=False,
                   run_id=run_id)

    return run_shard


#: How a shard is run, by ``JobParams.runner``: the seam tests inject shard faults through.
SHARD_RUNNERS: dict[str, Callable[..., RunTally]] = {"ray": _run_shard("ray"), "local": _run_shard("local")}


@task(name="run-shard", cache_policy=NO_CACHE, task_run_name="shard-{index}")
def run_shard(index: int, refs: list[DocumentRef], dest: str, config: FolioConfig, runner: str,
              address: str | None, redo_before: dt.datetime | None, batch_id: str) -> dict:
    """One shard through the runner; a retry resumes (documents already written are skipped).

    Every attempt writes under its own run id, ``<batch_id>-s<shard>-a<attempt>``, so the
    flow's report finds the rows of failed attempts too (by the ``batch_id`` prefix).
    """
    from prefect.runtime import task_run

    logger = get_run_logger()
    run_id = f"{batch_id}-s{index:04d}-a{task_run.run_count or 1}"
    tally = SHARD_RUNNERS[runner](refs, dest, config, redo_before=redo_before, address=address, run_id=run_id)
    logger.info("shard %d: %d documents (%d skipped), %d pages, %d failed in %.1f s (run %s)",
                index, tally.documents, tally.skipped, tally.pages, tally.failed, tally.seconds, tally.run_id)
    return {"run_id": tally.run_id, "documents": tally.documents, "skipped": tally.skipped,
            "pages": tally.pages, "seconds": tally.seconds}


class FlowReport(BaseModel):
    """What a flow run did; the flow's return value and the source of its artifact.

    ``tally`` holds what its shards wrote, read back from the Parquet (so the
    artifact cannot disagree with the output); the other fields say what the
    flow planned and how it ran.
    """

    flow: str
    dest: str
    fingerprint: str
    planned: int = 0
    already_done: int = 0
    shards: int = 0
    batch_id: str | None = None  # prefix of the run ids of every shard attempt of this flow run
    run_ids: list[str] = Field(default_factory=list)  # runs of the shard attempts that succeeded
    seconds: float = 0.0
    not_started: int = 0
    selection: str | None = None
    tally: RunTally = Field(default_factory=RunTally)
    exported: dict[str, int] = Field(default_factory=dict)  # files written per export format
    not_exported: list[str] = Field(default_factory=list)  # documents with no export, and why

    @property
    def pages_per_second(self) -> float:
        return self.tally.pages / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.tally.error_rate


def run_shards(
    flow: str,
    refs: list[DocumentRef],
    params: JobParams,
    config: FolioConfig,
    fingerprint: str,
    *,
    redo: bool = False,
    deadline_minutes: float | None = None,
) -> FlowReport:
    """Run ``refs`` in shards, each a task retried alone; stop starting shards at the deadline (the first
    shard always starts).

    Attempts of one shard all write under ``params.dest``; the runner's resume
    makes each document land once whatever attempt finished it. ``redo``
    reprocesses documents done before this call even under the same config
    (rows written by this call's own attempts still count as done).
    """
    logger = get_run_logger()
    jobs = config.jobs
    shards = shard(refs, params.shard_size or jobs.shard_size)
    report = FlowReport(flow=flow, dest=params.dest, fingerprint=fingerprint, planned=len(refs), shards=len(shards))
    runner = run_shard.with_options(retries=jobs.shard_retries, retry_delay_seconds=jobs.retry_delay_s)
    deadline = deadline_minutes if deadline_minutes is not None else jobs.deadline_minutes
    started = time.monotonic()
    redo_before = dt.datetime.now(dt.timezone.utc) if redo else None
    report.batch_id = new_run_id()
    for i, part in enumerate(shards):
        # The first shard always starts, so a run makes progress however short its deadline.
        if i > 0 and deadline is not None and time.monotonic() - started > deadline * 60:
            report.not_started = sum(len(s) for s in shards[i:])
            logger.warning("deadline of %.1f min passed: %d shards (%d documents) left for the next run",
                           deadline, len(shards) - i, report.not_started)
            break
        logger.info("shard %d/%d: %d documents", i + 1, len(shards), len(part))
        result = runner(i, part, params.dest, config, params.runner, params.ray_address, redo_before, report.batch_id)
        report.run_ids.append(result["run_id"])
    report.seconds = time.monotonic() - started
    return report


@task(name="export", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def export_task(report: FlowReport, config: FolioConfig, source: str | None = None) -> FlowReport:
    """Write ``config.outputs`` (ALTO, PDF, ...) of the documents this flow run wrote under
    ``<dest>/<format>/``, named after their paths below ``source``; counts go to the report."""
    if not config.outputs or not report.batch_id:
        return report
    from pipeline.output.exports.export import export

    result = export(report.dest, report.dest, config.outputs, run_ids=[report.batch_id], relative_to=source,
                    storage_config=config.storage, words=config.output.export_words)
    report.exported = dict(result.files)
    report.not_exported = [f"{uri}: {why}" for uri, why in result.failed]
    get_run_logger().info("exported %d documents (%s) under %s; %d not", result.documents,
                          ", ".join(f"{n} {fmt}" for fmt, n in result.files.items()), report.dest, len(result.failed))
    return report


def collect(report: FlowReport, config: FolioConfig) -> FlowReport:
    """Fill the report's tally from the Parquet its runs wrote (so the artifact cannot disagree with it)."""
    prefixes = [report.batch_id] if report.batch_id else []
    report.tally = run_stats(report.dest, prefixes, config.storage, config.jobs.lowest_confidence_documents)
    report.tally.seconds = report.seconds
    report.tally.dest, report.tally.fingerprint = report.dest, report.fingerprint
    return report


#: The artifact lists at most this many documents that need review (the Parquet has them all).
_REVIEW_ROWS = 200


def report_markdown(report: FlowReport) -> str:
    """The artifact: documents, pages, errors by code, pages/s, mean confidence, lowest-confidence documents;
    with fields, the documents that need review (and why) and the fields found."""
    t = report.tally
    conf = f"{t.mean_confidence:.3f}" if t.mean_confidence is not None else "n/a"
    lines = [
        f"# Folio {report.flow}: {t.documents} documents, {t.pages} pages",
        "",
        "| metric | value |",
        "|---|---|",
        f"| documents | {t.documents} |",
        f"| pages | {t.pages} ({t.page_errors} failed) |",
        f"| ok / partial / error | {t.ok} / {t.partial} / {t.errors} |",
        f"| error rate | {report.error_rate:.1%} |",
        f"| pages/s | {report.pages_per_second:.2f} |",
        f"| mean confidence | {conf} |",
        f"| planned / already done | {report.planned} / {report.already_done} |",
        f"| shards | {report.shards} |",
        f"| left for the next run (deadline) | {report.not_started} |",
        f"| config fingerprint | `{report.fingerprint}` |",
        f"| output | `{report.dest}` |",
        f"| runs | {', '.join(f'`{r}`' for r in report.run_ids) or 'none'} |",
    ]
    if report.selection:
        lines.append(f"| selection | {report.selection} |")
    if report.exported:
        lines.append(f"| exports | {', '.join(f'{n} {fmt}' for fmt, n in report.exported.items())} "
                     f"(`{report.dest}/<format>/`); {len(report.not_exported)} documents not exported |")
    lines += ["", "## Errors by code", ""]
    if t.errors_by_code:
        lines += ["| error_code | documents |", "|---|---|"]
        lines += [f"| `{code}` | {n} |" for code, n in sorted(t.errors_by_code.items(), key=lambda kv: -kv[1])]
    else:
        lines.append("None.")
    if t.fields_found or t.needs_review:
        lines += ["", f"## Needs review: {len(t.needs_review)} of {t.documents} documents", ""]
        if t.needs_review:
            lines += ["| source | reasons | doc_id |", "|---|---|---|"]
            lines += [f"| `{d['source_uri']}` | {', '.join(d['reasons'])} | `{d['doc_id'][:16]}` |"
                      for d in t.needs_review[:_REVIEW_ROWS]]
            if len(t.needs_review) > _REVIEW_ROWS:
                lines.append(f"| ... {len(t.needs_review) - _REVIEW_ROWS} more (documents.needs_review) | | |")
        else:
            lines.append("None.")
        lines += ["", "## Fields found", "", "| field | documents |", "|---|---|"]
        lines += [f"| `{name}` | {n} |" for name, n in sorted(t.fields_found.items())]
    lines += ["", "## Lowest-confidence documents", ""]
    if t.lowest_confidence:
        lines += ["| mean confidence | source | doc_id |", "|---|---|---|"]
        lines += [f"| {d['mean_confidence']:.3f} | `{d['source_uri']}` | `{d['doc_id'][:16]}` |"
                  for d in t.lowest_confidence]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def publish_report(report: FlowReport, config: FolioConfig, key: str) -> FlowReport:
    """Fill counts from the Parquet, publish the markdown artifact, log a summary line."""
    collect(report, config)
    create_markdown_artifact(markdown=report_markdown(report), key=key,
                             description=f"Folio {report.flow} run: {report.tally.documents} documents")
    t = report.tally
    get_run_logger().info(
        "%s: %d documents (%d ok, %d partial, %d error), %d pages, %.2f pages/s",
        report.flow, t.documents, t.ok, t.partial, t.errors, t.pages, report.pages_per_second,
    )
    return report


def check_error_rate(report: FlowReport, config: FolioConfig, max_error_rate: float | None = None) -> None:
    """Fail the flow (raise) when the share of failed documents passes the threshold."""
    limit = config.jobs.max_error_rate if max_error_rate is None else max_error_rate
    t = report.tally
    if t.documents and t.error_rate > limit:
        raise ErrorRateExceeded(
            f"{t.failed} of {t.documents} documents failed "
            f"({t.error_rate:.1%} > {limit:.1%}); errors by code: {t.errors_by_code}"
        )
