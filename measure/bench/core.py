"""``folio bench``: time OCR systems on the same pages, each run in a fresh process.

:func:`bench` runs every system once per round, in turn, each in its own
subprocess (:mod:`measure.bench.worker`), so its peak RSS is its own and a
machine that drifts during the benchmark weighs on every system alike;
:func:`merge_runs` joins a system's runs, and the ratios Folio / peer are
taken within the same benchmark. :mod:`measure.bench.samplers` watches GPU
and Ray processes while a run is timed; :mod:`measure.bench.report` writes
the tables of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence

from measure.bench.report import machine_description
from measure.bench.samplers import median_by_key
from measure.systems import SYSTEMS

__all__ = ["BENCH_SYSTEMS", "bench", "merge_runs"]

log = logging.getLogger(__name__)

#: What ``folio bench`` can time: the systems, plus Folio's Ray runner.
BENCH_SYSTEMS = (*SYSTEMS, "folio-ray", "folio-ocr")


def bench(
    path: str,
    *,
    systems: Sequence[str] = SYSTEMS,
    repeat: int = 3,
    fmt: str | None = None,
    limit: int | None = None,
    config_path: str | None = None,
    overrides: dict | None = None,
    tesseract_processes: int = 2,
) -> dict:
    """Time each system on the same pages, each in a fresh subprocess, one after the other.

    The repeats are interleaved: round ``i`` runs every system once, in turn, each
    in its own subprocess, so a machine that slows down or speeds up during the
    benchmark (shared hosts drift by several percent an hour) weighs on every
    system alike instead of on whichever ran last; see :func:`merge_runs`.

    Returns:
        ``{"machine": ..., "path": ..., "results": [per-system dicts], "ratios": {...}}``.
    """
    names = []
    for system in systems:
        if system == "tesseract" and shutil.which("tesseract") is None:
            log.warning("bench: tesseract not installed, skipped")
            continue
        names.append(system)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(repeat):
        for system in names:
            args = {
                "system": system, "path": str(path), "format": fmt, "limit": limit, "repeat": 1,
                "config": config_path, "overrides": overrides or {}, "tesseract_processes": tesseract_processes,
                # Timed against the Ray runner, the local runner loads its models in each run too.
                "models_in_run": "folio-ray" in names,
            }
            proc = subprocess.run(
                [sys.executable, "-m", "measure.bench.worker", json.dumps(args)], capture_output=True, text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"bench worker for {system} failed:\n{proc.stderr[-3000:]}")
            runs[system].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = [merge_runs(runs[name]) for name in names]
    by_name = {r["system"]: r for r in results}
    ratios = {}
    if "folio" in by_name:
        for name, r in by_name.items():
            if name not in ("folio", "folio-ray") and r.get("pages_per_s"):
                ratios[f"folio/{name} pages_per_s"] = by_name["folio"]["pages_per_s"] / r["pages_per_s"]
        if by_name.get("folio-ray", {}).get("pages_per_s"):
            ratios["folio-ray/folio pages_per_s"] = by_name["folio-ray"]["pages_per_s"] / by_name["folio"]["pages_per_s"]
    return {"machine": machine_description(), "path": str(path), "repeat": repeat, "results": results, "ratios": ratios}


def merge_runs(runs: Sequence[dict]) -> dict:
    """One system's result from its single-repeat runs (:func:`bench` interleaves them with the other
    systems'): every timing, pages/s from their median; the peaks (RSS, workers', per-role memory) the
    highest any run reached; CPU seconds per role, the median; anything else, the median run's."""
    runs = sorted(runs, key=lambda r: statistics.median(r["seconds"]) if r.get("seconds") else 0.0)
    out = dict(runs[(len(runs) - 1) // 2])  # the median run (the lower one of an even count)
    out["seconds"] = [t for r in runs for t in r.get("seconds", [])]
    out["pages_per_s"] = out["pages"] / statistics.median(out["seconds"]) if out["seconds"] else None
    out["runs"] = len(runs)
    out["started"] = sorted(r["started"] for r in runs if "started" in r)  # when each run's worker began
    for key in ("peak_rss_mb", "ray_workers_peak_rss_mb", "ray_workers_peak_private_mb", "gpu_mem_peak_mb",
                "torch_peak_allocated_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = max(values)
    cpu = [r["cpu_seconds_by_role"] for r in runs if r.get("cpu_seconds_by_role")]
    if cpu:
        out["cpu_seconds_by_role"] = median_by_key(cpu)
    memory = [r["ray_memory_by_role_mb"] for r in runs if r.get("ray_memory_by_role_mb")]
    if memory:  # per role, the run where it peaked highest
        out["ray_memory_by_role_mb"] = {role: max((m[role] for m in memory if role in m), key=lambda v: v["peak"])
                                        for role in sorted({role for m in memory for role in m})}
    return out
