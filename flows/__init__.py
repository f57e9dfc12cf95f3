"""Prefect flows for Folio's three jobs: nightly archive digitization (:mod:`flows.archive`),
scheduled invoice ingestion (:mod:`flows.invoices`) and ad hoc reprocessing (:mod:`flows.reprocess`).

The flows plan, shard, call the Ray runner and report; inference runs in Ray
actors, never inside Prefect's task runner. Deployments and schedules are in
``prefect.yaml`` (and :mod:`flows.deployments` for ``folio flows serve``).
"""
