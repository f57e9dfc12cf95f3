"""The three deployments and their schedules, as ``prefect.yaml`` declares them.

``prefect.yaml`` (repository root) is what ``prefect deploy --all`` reads to
register the deployments on a Prefect server with a work pool; this module
holds the same names, entrypoints and schedules for ``folio flows serve``,
which runs them in-process against the embedded server (or ``PREFECT_API_URL``).
A test checks that the two agree.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

__all__ = ["DeploymentSpec", "DEPLOYMENTS", "runner_deployments"]


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: a flow entrypoint with its schedule and default parameters.

    ``env`` maps a parameter to the environment variable its value comes from
    (``prefect.yaml`` writes it as ``{{ $VAR }}``).
    """

    name: str
    entrypoint: str  # path/to/file.py:flow_function, relative to the repository root
    description: str
    cron: str | None = None
    interval_s: int | None = None
    timezone: str = "UTC"
    env: dict[str, str] = field(default_factory=dict)

    def load_flow(self):
        path, _, attr = self.entrypoint.partition(":")
        module = path.removesuffix(".py").replace("/", ".")
        return getattr(importlib.import_module(module), attr)


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="archive-nightly",
        entrypoint="flows/archive.py:archive_flow",
        description="Nightly archive digitization: OCR what is new under the archive prefix.",
        cron="0 2 * * *",
        env={"source": "FOLIO_ARCHIVE_SOURCE", "dest": "FOLIO_ARCHIVE_DEST"},
    ),
    DeploymentSpec(
        name="invoices-15min",
        entrypoint="flows/invoices.py:invoices_flow",
        description="Invoice ingestion every 15 minutes, with a deadline and an error-rate alert.",
        interval_s=900,
        env={"source": "FOLIO_INVOICES_SOURCE", "dest": "FOLIO_INVOICES_DEST"},
    ),
    DeploymentSpec(
        name="reprocess",
        entrypoint="flows/reprocess.py:reprocess_flow",
        description="Reprocess a selection of documents with a given config (on demand, with parameters).",
        env={"dest": "FOLIO_ARCHIVE_DEST"},
    ),
)


def runner_deployments(values: dict[str, dict[str, str]] | None = None, only: set[str] | None = None) -> list:
    """RunnerDeployments for ``prefect.serve``.

    Args:
        values: per deployment name, parameter values that win over the environment.
        only: deployment names to build (default all).

    Raises:
        ValueError: a scheduled deployment lacks a required parameter (named, with its variable).
    """
    from prefect.schedules import Cron, Interval

    out = []
    for spec in DEPLOYMENTS:
        if only and spec.name not in only:
            continue
        params = {}
        for param, var in spec.env.items():
            value = (values or {}).get(spec.name, {}).get(param) or os.environ.get(var)
            if value:
                params[param] = value
            elif spec.cron or spec.interval_s:
                raise ValueError(f"deployment {spec.name}: no {param!r}; set {var} or pass it on the command line")
        schedules = []
        if spec.cron:
            schedules.append(Cron(spec.cron, timezone=spec.timezone))
        if spec.interval_s:
            schedules.append(Interval(spec.interval_s, timezone=spec.timezone))
        out.append(spec.load_flow().to_deployment(
            name=spec.name, description=spec.description, schedules=schedules or None, parameters=params,
            tags=["folio"],
        ))
    return out
