"""The benchmark's report: the machine it ran on, and the tables of ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from measure.bench.profile import PARTS

__all__ = ["machine_description", "bench_markdown", "update_markdown"]


def machine_description() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpus} CPUs ({model}), {mem_gb:.0f} GiB, Python {platform.python_version()}"


def bench_markdown(report: dict) -> str:
    """The benchmark table for docs/benchmarks.md."""
    lines = [
        f"Machine: {report['machine']}  ",
        f"Pages: `{report['path']}`, median of {report['repeat']} repeats.",
        "",
        "| system | pages | pages/s | peak RSS (MiB) | word F1 | Folio / system (pages/s) |",
        "|---|---|---|---|---|---|",
    ]
    folio = next((r for r in report["results"] if r["system"] == "folio"), None)
    for r in report["results"]:
        f1 = f"{r['word_f1']:.3f}" if r.get("word_f1") is not None else "n/a"
        ratio = ""
        if folio and r["system"] != "folio" and r["pages_per_s"]:
            ratio = f"{folio['pages_per_s'] / r['pages_per_s']:.2f}x"
        rss = f"{r['peak_rss_mb']:.0f}"
        if r.get("ray_workers_peak_rss_mb"):
            rss += (
                f" (driver); largest worker {r['ray_workers_peak_rss_mb']:.0f} incl. shared object store, "
                f"{r.get('ray_workers_peak_private_mb', 0):.0f} private"
            )
        lines.append(f"| {r['system']} | {r['pages']} | {r['pages_per_s']:.3f} | {rss} | {f1} | {ratio} |")
    for r in report["results"]:
        roles = r.get("ray_memory_by_role_mb")
        if roles:
            lines += ["", f"{r['system']}: private memory (RssAnon, MiB) of the processes of this run, by role, "
                      "sampled every 0.5 s while the runs ran (not while the benchmark read their output back); "
                      "first: the first sample; first/last quarter: the peaks over the first and last quarter "
                      "of the samples. The driver is the benchmark's own process, which also holds the ground "
                      "truth.", "",
                      "| role | first | peak | median | first quarter peak | last quarter peak | samples |",
                      "|---|---|---|---|---|---|---|"]
            for role in ("driver", "decode", "ocr"):
                m = roles.get(role)
                if m:
                    first = f"{m['first']:.0f}" if "first" in m else "n/a"
                    lines.append(f"| {role} | {first} | {m['peak']:.0f} | {m['median']:.0f} | "
                                 f"{m['first_quarter_peak']:.0f} | {m['last_quarter_peak']:.0f} | {m['samples']} |")
            tenths = [(role, roles[role]["tenth_peaks"]) for role in ("driver", "decode", "ocr")
                      if roles.get(role, {}).get("tenth_peaks")]
            if tenths:
                lines += ["", "Peak of each tenth of the run, in order:", ""]
                lines += [f"- {role}: {' '.join(f'{v:.0f}' for v in values)}" for role, values in tenths]
    timed_cold = [r["system"] for r in report["results"] if r.get("models_loaded_in_timing")]
    if timed_cold:
        others = "; the other systems load theirs before the timing" if len(timed_cold) < len(report["results"]) else ""
        lines.append(f"\n{' and '.join(timed_cold)}: each timed run loads its models (in the OCR actors on Ray), "
                     f"as `folio run` does{others}.")
    cpu_rows = [r for r in report["results"] if r.get("cpu_seconds_by_role")]
    if any(r["system"] == "folio-ray" for r in cpu_rows):  # where the runners' costs are compared
        roles = [role for role in ("driver", "decode", "ocr", "ray")
                 if any(role in r["cpu_seconds_by_role"] for r in cpu_rows)]
        lines += ["", "CPU seconds (user + system) per run, median over the repeats, by process: the "
                  "driver (the benchmark process; the local runner does all its work there), Ray's decode "
                  "tasks and OCR actors, and Ray's own processes (GCS, raylet, Ray Data's and the run's "
                  "bookkeeping actors).", "",
                  f"| system | {' | '.join(roles)} | total | wall (s) |", "|---|" + "---|" * (len(roles) + 2)]
        for r in cpu_rows:
            by_role = r["cpu_seconds_by_role"]
            cells = [f"{by_role[role]:.1f}" if role in by_role else "" for role in roles]
            wall = statistics.median(r["seconds"]) if r.get("seconds") else float("nan")
            lines.append(f"| {r['system']} | {' | '.join(cells)} | {sum(by_role.values()):.1f} | {wall:.1f} |")
    split = [r for r in report["results"] if r.get("time_ms_per_page")]
    if split:
        parts = [p for p in PARTS if any(r["time_ms_per_page"].get(p) for r in split)]
        lines += ["", "Where the time goes: thread-milliseconds per page by part (parts run in several threads "
                  "at once, so they can add up to more than the wall time), each part's share of their sum, and "
                  "the CPU cores the run kept busy (its CPU time over its wall time). Detection and recognition "
                  "are the engines' calls; post-processing is the rest of the OCR step (resizing, DB boxes, "
                  "crops, CTC decoding, word boxes).", "",
                  f"| system | {' | '.join(p.replace('_', '-') for p in parts)} | wall per page | CPU cores |",
                  "|---|" + "---|" * (len(parts) + 2)]
        for r in split:
            ms = r["time_ms_per_page"]
            total = sum(ms.get(p, 0.0) for p in parts) or 1.0
            cells = [f"{ms.get(p, 0.0):.1f} ({100 * ms.get(p, 0.0) / total:.0f}%)" for p in parts]
            wall = statistics.median(r["seconds"]) * 1000 / max(r["pages"], 1) if r.get("seconds") else float("nan")
            cores = f"{r['cpu_cores_used']:.1f}" if r.get("cpu_cores_used") is not None else "n/a"
            lines.append(f"| {r['system']} | {' | '.join(cells)} | {wall:.1f} ms | {cores} |")
    for r in report["results"]:
        if r.get("gpu_name"):
            util = r.get("gpu_util_mean_pct")
            util_text = (
                f"mean {util:.0f}% / max {r['gpu_util_max_pct']:.0f}% ({r['gpu_sampler']})"
                if util is not None else "not sampled"
            )
            peak = r.get("gpu_mem_peak_mb")
            lines.append(
                f"\n{r['system']} on {r['gpu_name']}: GPU utilisation {util_text}, peak GPU memory "
                f"{f'{peak:.0f} MiB' if peak is not None else 'n/a'} (device), "
                f"{r['torch_peak_allocated_mb']:.0f} MiB allocated by torch."
            )
    for key, value in report.get("ratios", {}).items():
        lines.append(f"\n{key}: **{value:.2f}x**")
    return "\n".join(lines) + "\n"


def update_markdown(path: str | os.PathLike, command: str, table: str) -> None:
    """Put ``table`` under the heading for ``command`` in ``path``, keeping the other commands' tables."""
    file = Path(path)
    header = "# Benchmarks\n\nEach table is regenerated by the `folio bench` command in its heading.\n"
    sections: dict[str, str] = {}
    if file.exists():
        parts = file.read_text().split("\n## ")
        header = parts[0].rstrip("\n") + "\n"  # keep what the file says before its first table
        for part in parts[1:]:
            title, _, body = part.partition("\n")
            sections[title] = body.strip("\n")
    sections[f"`{command}`"] = table.strip("\n")
    body = "".join(f"\n## {title}\n\n{text}\n" for title, text in sections.items())
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(header + body)
