"""One system timed on the pages, in a process of its own: ``python -m measure.bench.worker ARGS``
(ARGS a JSON object) prints the result as JSON on its last line. :func:`measure.bench.core.bench`
starts one per system and round."""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from measure.bench.profile import RunProfile
from measure.bench.samplers import GpuSampler, RaySampler, peak_rss_mb
from measure.datasets import GtPage
from measure.evaluate import load_page, load_samples
from measure.scoring import score_page, summarize
from measure.systems import make_system
from pipeline.config import load_config
from pipeline.run import run
from pipeline.runner.ray_data import ray_init
from pipeline.stages.factory import create_page_stage
from pipeline.types import DocumentRef, PageImage

__all__ = ["run_worker"]


def run_worker(args: dict) -> dict:
    """Time one system on the pages (in its own process; see :func:`measure.bench.core.bench`)."""
    overrides = dict(args.get("overrides") or {})
    if args["system"] == "folio-ocr":
        overrides["decode.pdf_text"] = "ocr"
    config = load_config(args.get("config"), overrides)
    samples = load_samples(args["path"], args.get("format"), args.get("limit"))
    system_name = args["system"]
    repeat = args["repeat"]
    times: list[float] = []
    result: dict = {"system": system_name, "pages": len(samples), "started": time.time()}
    if system_name == "folio-ray":
        # The Ray runner end to end on a local Ray: decode tasks, OCR actor pool, driver assembly.
        # Ray itself is started before the timing (a cluster is up before a job); actor start-up
        # and model loading are part of every run, as they are in production.
        refs = [DocumentRef(str(f)) for f in sorted({s.image_path for s in samples})]
        ray_init(config.ray.address)
        sampler = RaySampler()
        with tempfile.TemporaryDirectory() as dest:
            run(refs[:1], dest, config, runner="ray", force=True, progress=False)  # warm-up: workers, imports
        sampler.start()
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as dest:
                sampler.resume()
                t0 = time.perf_counter()
                run(refs, dest, config, runner="ray", force=True, progress=False)
                times.append(time.perf_counter() - t0)
                sampler.pause()  # reading the output back for scoring is the benchmark's memory, not the run's
                texts = _texts_from_output(dest)
        sampler.stop()
        result.update(_runner_scores(samples, texts))
        result["ray_workers_peak_rss_mb"] = sampler.peak_mb
        result["ray_workers_peak_private_mb"] = sampler.private_peak_mb
        result["ray_memory_by_role_mb"] = sampler.summary()
        result["models_loaded_in_timing"] = True
        result["cpu_seconds_by_role"] = sampler.cpu_summary()
    elif system_name in ("folio", "folio-ocr"):
        # Folio's local runner end to end: read, decode, OCR, assemble, write Parquet. folio-ocr reads
        # PDFs as scans (decode.pdf_text: ocr): on born-digital PDFs, their scanned twins, in the same run.
        # Against the peers, the models load once, outside the timing, like the peers' models. Against
        # the Ray runner (`models_in_run`), each timed run loads them itself, as `folio run` does and as
        # every Ray run does in its actors: what is left between the two is Ray's own cost.
        models_in_run = bool(args.get("models_in_run"))
        result["models_loaded_in_timing"] = models_in_run
        stage = create_page_stage(config)
        if samples:
            cache: dict = {}
            warm = load_page(samples[0], config, cache)[0]
            stage([PageImage("warm", "warm", 0, warm)])
            for doc in cache.values():
                doc.close()
        # With models_in_run, only the run's own copy of the models is in memory while it is timed.
        profile = RunProfile()
        ready = None if models_in_run else profile.instrument(stage)

        def factory(c):
            return ready if ready is not None else profile.instrument(create_page_stage(c))

        del stage
        files = sorted({s.image_path for s in samples})
        refs = [DocumentRef(str(f)) for f in files]
        gpu = GpuSampler.for_config(config)
        if gpu is not None:
            gpu.start()
        cpu: list[float] = []
        with profile.installed():
            for _ in range(repeat):
                with tempfile.TemporaryDirectory() as dest:
                    c0, t0 = time.process_time(), time.perf_counter()
                    run(refs, dest, config, force=True, progress=False, stage_factory=factory)
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                    texts = _texts_from_output(dest)
        if gpu is not None:
            result.update(gpu.stop())
        result.update(_runner_scores(samples, texts))
        result["cpu_seconds_by_role"] = {"driver": statistics.median(cpu)}
        # Cores busy while the run was timed: this process's CPU time over the wall time.
        result["cpu_cores_used"] = statistics.median(c / t for c, t in zip(cpu, times))
        result["time_ms_per_page"] = profile.per_page(result["pages"] * repeat)
    else:
        system = make_system(system_name, config)
        cache: dict = {}
        images = [load_page(s, config, cache)[0] for s in samples]
        if images:
            system.predict(images[:1])  # warm-up: RapidOCR loads its models on the first call
        for _ in range(repeat):
            t0 = time.perf_counter()
            if system_name == "tesseract":
                workers = int(args.get("tesseract_processes") or 1)
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    preds = [p for ps in pool.map(lambda im: system.predict([im]), images) for p in ps]
            else:
                preds = system.predict(images)
            times.append(time.perf_counter() - t0)
        if samples and samples[0].words:
            result["word_f1"] = _bag_f1(samples, [p.text for p in preds])
    result["seconds"] = times
    result["pages_per_s"] = result["pages"] / statistics.median(times) if times else None
    result["peak_rss_mb"] = peak_rss_mb()
    return result




def _texts_from_output(dest: str) -> dict[tuple[str, int], str]:
    """Page text by (source URI, page index); inputs with the same bytes share their twin's pages."""
    import pyarrow.dataset as ds

    docs = ds.dataset(Path(dest, "documents"), partitioning="hive").to_table(columns=["doc_id", "source_uri"])
    pages = ds.dataset(Path(dest, "pages"), partitioning="hive").to_table(columns=["doc_id", "page_index", "text"])
    by_doc: dict[str, list[tuple[int, str]]] = {}
    for r in pages.to_pylist():
        by_doc.setdefault(r["doc_id"], []).append((r["page_index"], r["text"] or ""))
    return {
        (d["source_uri"], index): text for d in docs.to_pylist() for index, text in by_doc.get(d["doc_id"], [])
    }


def _runner_scores(samples: Sequence[GtPage], texts: dict[tuple[str, int], str]) -> dict:
    """Pages and word F1 of a runner's output: every input page it answered for counts
    (inputs with identical bytes are OCR'd once and share their twin's text)."""
    out: dict = {"pages": len(texts)}
    scored = [s for s in samples if (str(s.image_path), s.page_index) in texts]
    if samples and samples[0].words:
        out["word_f1"] = _bag_f1(scored, [texts[(str(s.image_path), s.page_index)] for s in scored])
    return out


def _bag_f1(samples: Sequence[GtPage], texts: Sequence[str]) -> float:
    scores = [score_page(s, [], t, 0.0) for s, t in zip(samples, texts)]
    return summarize(scores)["word_f1"]


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run_worker(json.loads(sys.argv[1]))))
