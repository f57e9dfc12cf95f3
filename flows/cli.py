"""``folio flows run|serve``: the Prefect flows from the command line.

``folio flows run FLOW`` runs one flow once, now, under Prefect: against the
server ``PREFECT_API_URL`` names, else Prefect's embedded (ephemeral) server.
``folio flows serve`` runs the deployments of ``prefect.yaml`` with their
schedules in this process until interrupted. Exit codes follow ``folio run``:
0 ok, 1 the flow ran but failed its checks (error rate, deadline), 2 bad
parameters or config (nothing was started), 3 the flow could not proceed.
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys

import click
import yaml

from pipeline.cli import EXIT_DOCUMENTS_FAILED, EXIT_FATAL, EXIT_OK, EXIT_USAGE, parse_overrides

__all__ = ["flows"]

FLOWS = {
    "archive": "flows.archive:archive_flow",
    "invoices": "flows.invoices:invoices_flow",
    "reprocess": "flows.reprocess:reprocess_flow",
}


def _flow(name: str):
    import importlib

    module, _, attr = FLOWS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _params(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE (e.g. shard_size=100)", param_hint="--param")
        out[key.strip()] = yaml.safe_load(value)
    return out


@click.group()
def flows() -> None:
    """Prefect flows: archive (nightly), invoices (scheduled), reprocess (ad hoc)."""


@flows.command("run")
@click.argument("flow_name", metavar="FLOW", type=click.Choice(sorted(FLOWS)))
@click.option("--source", help="Scans to read: a local folder or s3://bucket/prefix (archive, invoices).")
@click.option("--dest", help="Output root: a local folder or s3://bucket/prefix.")
@click.option("--config", "config_path", help="Folio YAML config (default configs/<flow>.yaml where there is one).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config setting.")
@click.option("--shard-size", type=click.IntRange(min=1), help="Documents per shard (default jobs.shard_size).")
@click.option("--runner", type=click.Choice(["ray", "local"]), help="Where shards run (default ray).")
@click.option("--address", "ray_address", help="Ray cluster address (default RAY_ADDRESS, else a local Ray).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out matching inputs (archive, invoices).")
@click.option("--deadline-minutes", type=float, help="invoices: start no shard after this many minutes.")
@click.option("--max-error-rate", type=float, help="invoices: fail the run above this share of failed documents.")
@click.option("--doc-id", "doc_ids", multiple=True, help="reprocess: this document (repeatable).")
@click.option("--source-prefix", help="reprocess: documents whose source URI starts with this.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="reprocess: processed on or after (YYYY-MM-DD, UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="reprocess: processed on or before (YYYY-MM-DD, UTC).")
@click.option("--stale", is_flag=True, default=None, help="reprocess: documents done under another config fingerprint.")
@click.option("--fingerprint", "fingerprints", multiple=True, help="reprocess: documents with this fingerprint.")
@click.option("--below-confidence", type=float, help="reprocess: documents with a lower mean line confidence.")
@click.option("--error-code", "error_codes", multiple=True, help="reprocess: documents with this error code.")
@click.option("--everything", is_flag=True, default=None, help="reprocess: every document under DEST.")
@click.option("--fields-only", is_flag=True, default=None,
              help="reprocess: extract the selected documents' invoice fields again from their pages, without OCR.")
@click.option("-p", "--param", "extra", multiple=True, metavar="KEY=VALUE", help="Any other flow parameter.")
def run_cmd(flow_name: str, config_path, sets, extra, **options) -> None:
    """Run FLOW once, now, under Prefect (embedded server unless PREFECT_API_URL is set)."""
    fn = _flow(flow_name)
    accepted = set(inspect.signature(fn.fn).parameters)
    params: dict = {}
    for key, value in options.items():
        if value is None or value == ():
            continue
        if key not in accepted:
            raise click.UsageError(f"--{key.replace('_', '-')} does not apply to the {flow_name} flow")
        if isinstance(value, dt.datetime):
            value = value.date()
        params[key] = list(value) if isinstance(value, tuple) else value
    if config_path:
        params["config"] = config_path
    if sets:
        params["sets"] = parse_overrides(sets)
    for key, value in _params(extra).items():
        if key not in accepted:
            raise click.UsageError(f"the {flow_name} flow has no parameter {key!r}; it takes {sorted(accepted)}")
        params[key] = value
    missing = [p.name for p in inspect.signature(fn.fn).parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in params]
    if missing:
        raise click.UsageError(f"the {flow_name} flow needs " + ", ".join(f"--{m.replace('_', '-')}" for m in missing))
    state = fn(**params, return_state=True)
    if state.is_completed():
        report = state.result()
        t = report.tally
        click.echo(
            f"{flow_name}: {t.documents} documents ({t.ok} ok, {t.partial} partial, "
            f"{t.errors} error), {t.pages} pages, {report.pages_per_second:.2f} pages/s, "
            f"{report.already_done} already done -> {report.dest}"
        )
        sys.exit(EXIT_OK)
    error = state.result(raise_on_failure=False)
    click.echo(f"{flow_name} flow {state.name.lower()}: {error}", err=True)
    from flows.common import DeadlinePassed, ErrorRateExceeded

    if isinstance(error, (ErrorRateExceeded, DeadlinePassed)):
        sys.exit(EXIT_DOCUMENTS_FAILED)
    if isinstance(error, ValueError):  # parameters, config (pydantic's ValidationError is one)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_FATAL)


@flows.command("serve")
@click.option("--archive-source", help="Archive prefix (default FOLIO_ARCHIVE_SOURCE).")
@click.option("--archive-dest", help="Archive output root (default FOLIO_ARCHIVE_DEST); also reprocess's default.")
@click.option("--invoices-source", help="Where invoices land (default FOLIO_INVOICES_SOURCE).")
@click.option("--invoices-dest", help="Invoice output root (default FOLIO_INVOICES_DEST).")
@click.option("--only", multiple=True, help="Serve only this deployment (archive-nightly, invoices-15min, reprocess).")
def serve_cmd(archive_source, archive_dest, invoices_source, invoices_dest, only) -> None:
    """Run the deployments of prefect.yaml on their schedules in this process (Ctrl-C stops)."""
    from flows.deployments import DEPLOYMENTS, runner_deployments

    names = {d.name for d in DEPLOYMENTS}
    unknown = set(only) - names
    if unknown:
        raise click.UsageError(f"unknown deployment(s) {sorted(unknown)}; known: {sorted(names)}")
    values = {
        "archive-nightly": {"source": archive_source, "dest": archive_dest},
        "invoices-15min": {"source": invoices_source, "dest": invoices_dest},
        "reprocess": {"dest": archive_dest},
    }
    try:
        deployments = runner_deployments(values, set(only) or None)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    from prefect import serve

    serve(*deployments)
