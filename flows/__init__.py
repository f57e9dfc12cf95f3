"""Prefect flows for Folio's three jobs: nightly archive digitization (:mod:`flows.archive`),
scheduled invoice ingestion (:mod:`flows.invoices`) and ad hoc reprocessing (:mod:`flows.reprocess`).

The flows plan, shard, call the Ray runner and report; inference runs in Ray
actors, never inside Prefect's task runner. Deployments and schedules are in
``prefect.yaml`` (and :mod:`flows.deployments` for ``folio flows serve``).
"""

import os

# Folio runs on air-gapped clusters: the embedded Prefect server must not try to phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
