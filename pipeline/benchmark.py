"""Running OCR systems over labelled sets: ``folio eval`` and ``folio bench``.

Three systems behind one small interface, :class:`System`:

- ``folio``: Folio's own stage (whatever engine the config names), pages in
  batches of ``runner.batch_pages`` so recognition is batched across pages;
- ``rapidocr``: RapidOCR's own ``RapidOCR()`` call, one page at a time (the
  same PP-OCR models, their pre/post-processing);
- ``tesseract``: the ``tesseract`` CLI, one process per page.

``folio eval`` scores one system. ``folio bench`` times every system on the
same pages, one after the other, each in a fresh subprocess so its peak RSS is
its own, the repeats interleaved, and reports the ratios Folio / peer. With
``--device cuda`` Folio runs the torch engine on the GPU, and its result adds
the GPU's utilisation (sampled every 200 ms through NVML, or ``nvidia-smi``
when pynvml is not installed) and its peak memory.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import FolioConfig
from pipeline.datasets import GtPage, read_dataset
from pipeline.decode import open_document
from pipeline.evaluate import PageScore, score_page, summarize

__all__ = ["System", "make_system", "null_stage", "evaluate", "detect_format", "bench", "merge_runs", "cuda_problem",
           "SYSTEMS"]

log = logging.getLogger(__name__)

SYSTEMS = ("folio", "rapidocr", "tesseract")
#: What ``folio bench`` can time: the systems, plus Folio's Ray runner.
BENCH_SYSTEMS = (*SYSTEMS, "folio-ray")

#: A recognised line: polygon (4 points in page pixels), text, confidence.
Line = tuple[Sequence[Sequence[float]], str, float]


@dataclass
class PagePrediction:
    lines: list[Line]
    text: str


class System:
    """An OCR system under evaluation: images in, lines and page text out."""

    name: str = "system"

    def predict(self, images: Sequence[np.ndarray]) -> list[PagePrediction]:
        raise NotImplementedError

    @property
    def batch(self) -> int:
        return 1


class FolioSystem(System):
    name = "folio"

    def __init__(self, config: FolioConfig):
        from pipeline.stages import create_stage

        self.config = config
        self.stage = create_stage(config)

    @property
    def batch(self) -> int:
        return self.config.runner.batch_pages

    def predict(self, images):
        images_col = np.empty(len(images), dtype=object)
        for i, im in enumerate(images):
            images_col[i] = im
        out = self.stage(
            {"doc_id": np.array(["eval"] * len(images), object), "page_index": np.arange(len(images)), "image": images_col}
        )
        preds = []
        for i in range(len(images)):
            lines = [(l["polygon"], l["text"], l["confidence"]) for l in (out["lines"][i] or [])]
            preds.append(PagePrediction(lines, out["text"][i] or ""))
        return preds


class RapidOcrSystem(System):
    """RapidOCR 3.x with its defaults; as many ONNX Runtime threads as cores Folio computes on
    (``runner.ocr_threads x engine.intra_op_threads``), for a fair comparison."""

    name = "rapidocr"

    def __init__(self, config: FolioConfig):
        try:
            from rapidocr import RapidOCR
        except ImportError as e:  # pragma: no cover
            raise RuntimeError("the rapidocr package is not installed: pip install rapidocr") from e
        threads = config.runner.ocr_threads * config.engine.intra_op_threads
        self.engine = RapidOCR(
            params={
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "Global.log_level": "error",
            }
        )

    def predict(self, images):
        preds = []
        for image in images:
            # RapidOCR takes OpenCV's BGR order
            result = self.engine(np.ascontiguousarray(image[:, :, ::-1]))
            if result.boxes is None or result.txts is None:
                preds.append(PagePrediction([], ""))
                continue
            lines = [(np.asarray(b).tolist(), t, float(s)) for b, t, s in zip(result.boxes, result.txts, result.scores)]
            preds.append(PagePrediction(lines, "\n".join(result.txts)))
        return preds


class TesseractSystem(System):
    """The ``tesseract`` CLI (``OMP_THREAD_LIMIT=1``), line boxes from its TSV output."""

    name = "tesseract"

    def __init__(self, config: FolioConfig, lang: str = "eng"):
        if shutil.which("tesseract") is None:
            raise RuntimeError("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")
        self.lang = lang

    def predict(self, images):
        from PIL import Image

        preds = []
        env = dict(os.environ, OMP_THREAD_LIMIT="1")
        for image in images:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp, "page.png")
                Image.fromarray(image).save(path)
                proc = subprocess.run(
                    ["tesseract", str(path), "stdout", "-l", self.lang, "tsv"],
                    capture_output=True, text=True, env=env, check=False,
                )
            preds.append(_parse_tsv_lines(proc.stdout))
        return preds


def _parse_tsv_lines(tsv: str) -> PagePrediction:
    from pipeline.models.tesseract import parse_tsv

    quads, texts, confidences = parse_tsv(tsv)
    lines = [(q.tolist(), t, c) for q, t, c in zip(quads, texts, confidences)]
    return PagePrediction(lines, "\n".join(texts))


def null_stage(config: FolioConfig):
    """An OCR stage that reads nothing: every page gets the same 40 lines of text, at once.

    For measuring the runners alone (scheduling, transfer, assembly, writing,
    the driver's memory over a long run) without the models' time:
    ``folio bench DIR --systems folio-ray --set plugins.stage=pipeline.benchmark:null_stage``.
    """
    from pipeline.stages import STAGE_COLUMNS, stage_result

    def run(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [np.asarray(image) for image in batch["image"]]
        out: dict[str, list] = {k: [None] * len(images) for k in STAGE_COLUMNS}
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            step = h / 40
            lines = [
                {"polygon": [[0.0, k * step], [float(w), k * step], [float(w), (k + 1) * step], [0.0, (k + 1) * step]],
                 "text": f"line {k} of a page the null stage did not read", "confidence": 1.0, "block_index": 0,
                 "line_index": k}
                for k in range(40)
            ]
            out["width"][i], out["height"][i], out["lines"][i] = w, h, lines
            out["text"][i] = "\n".join(line["text"] for line in lines)
            out["mean_confidence"][i], out["status"][i] = 1.0, "ok"
            out["detect_ms"][i] = out["recognize_ms"][i] = 0.0
        return stage_result(batch, out)

    return run


def make_system(name: str, config: FolioConfig) -> System:
    if name == "folio":
        return FolioSystem(config)
    if name == "rapidocr":
        return RapidOcrSystem(config)
    if name == "tesseract":
        return TesseractSystem(config)
    raise ValueError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}")


def _load_page(sample: GtPage, config: FolioConfig, cache: dict) -> tuple[np.ndarray, float | None]:
    path = sample.image_path
    if path not in cache:
        cache.clear()  # one open document at a time
        cache[path] = open_document(path.read_bytes(), config.decode)
    return cache[path].page(sample.page_index)


def evaluate(
    system: System, samples: Sequence[GtPage], config: FolioConfig, progress: bool = False
) -> tuple[dict, list[PageScore]]:
    """OCR every sample with ``system`` and score it.

    Timing covers the system's OCR call only (not reading or decoding the file),
    the same way for every system; batched systems share a batch's time equally.

    Returns:
        The :func:`~pipeline.evaluate.summarize` dict and the per-page scores.
    """
    cache: dict = {}
    scores: list[PageScore] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), unit="page", desc=f"eval {system.name}", file=sys.stderr)
    try:
        for start in range(0, len(samples), system.batch):
            chunk = samples[start : start + system.batch]
            images = [_load_page(s, config, cache)[0] for s in chunk]
            t0 = time.perf_counter()
            preds = system.predict(images)
            seconds = (time.perf_counter() - t0) / len(chunk)
            for sample, image, pred in zip(chunk, images, preds):
                size = (image.shape[1], image.shape[0])
                scores.append(
                    score_page(sample, [(l[0], l[1]) for l in pred.lines], pred.text, seconds, pred_size=size)
                )
            if bar is not None:
                bar.update(len(chunk))
    finally:
        for doc in cache.values():
            doc.close()
        if bar is not None:
            bar.close()
    return summarize(scores), scores


def detect_format(path: str | os.PathLike) -> str | None:
    """Guess a labelled set's format from its layout; None for a plain folder of documents."""
    root = Path(path)
    if (root / "annotations").is_dir() and (root / "images").is_dir():
        return "funsd"
    if (root / "box").is_dir() and (root / "img").is_dir():
        return "sroie"
    if any(root.rglob("*.gt.txt")):
        return "lines"
    if any(root.rglob("*.xml")):
        return "alto"
    for f in root.glob("*.json"):
        try:
            if "pages" in json.loads(f.read_text()):
                return "synth"
        except (ValueError, OSError):
            continue
    return None


# -- bench ---------------------------------------------------------------------------------------

def _peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


def _bench_worker(args: dict) -> dict:
    """Time one system on the pages (runs in its own process; see :func:`bench`)."""
    from pipeline.config import load_config

    config = load_config(args.get("config"), args.get("overrides") or {})
    samples = _samples(args["path"], args.get("format"), args.get("limit"))
    system_name = args["system"]
    repeat = args["repeat"]
    times: list[float] = []
    result: dict = {"system": system_name, "pages": len(samples), "started": time.time()}
    if system_name == "folio-ray":
        # The Ray runner end to end on a local Ray: decode tasks, OCR actor pool, driver assembly.
        # Ray itself is started before the timing (a cluster is up before a job); actor start-up
        # and model loading are part of every run, as they are in production.
        from pipeline.runner.ray_data import ray_init, run_ray
        from pipeline.types import DocumentRef

        refs = [DocumentRef(str(f)) for f in sorted({s.image_path for s in samples})]
        ray_init(config.ray.address)
        sampler = _RaySampler()
        with tempfile.TemporaryDirectory() as dest:
            run_ray(refs[:1], dest, config, force=True, progress=False)  # warm-up: worker processes, imports
        sampler.start()
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as dest:
                sampler.resume()
                t0 = time.perf_counter()
                run_ray(refs, dest, config, force=True, progress=False)
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
    elif system_name == "folio":
        # Folio's local runner end to end: read, decode, OCR, assemble, write Parquet.
        from pipeline.runner.local import run_local
        from pipeline.stages import create_stage
        from pipeline.types import DocumentRef

        # Against the peers, the models load once, outside the timing, like the peers' models. Against
        # the Ray runner (`models_in_run`), each timed run loads them itself, as `folio run` does and as
        # every Ray run does in its actors: what is left between the two is Ray's own cost.
        models_in_run = bool(args.get("models_in_run"))
        result["models_loaded_in_timing"] = models_in_run
        stage = create_stage(config)
        if samples:
            cache: dict = {}
            warm = _load_page(samples[0], config, cache)[0]
            stage({"doc_id": np.array(["warm"], object), "page_index": np.array([0]),
                   "image": np.array([warm, None], object)[:1]})
            for doc in cache.values():
                doc.close()
        # With models_in_run, only the run's own copy of the models is in memory while it is timed.
        factory = create_stage if models_in_run else (lambda c, ready=stage: ready)
        del stage
        files = sorted({s.image_path for s in samples})
        refs = [DocumentRef(str(f)) for f in files]
        gpu = _GpuSampler.for_config(config)
        if gpu is not None:
            gpu.start()
        cpu: list[float] = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as dest:
                c0, t0 = time.process_time(), time.perf_counter()
                run_local(refs, dest, config, force=True, progress=False, stage_factory=factory)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                texts = _texts_from_output(dest)
        if gpu is not None:
            result.update(gpu.stop())
        result.update(_runner_scores(samples, texts))
        result["cpu_seconds_by_role"] = {"driver": statistics.median(cpu)}
    else:
        system = make_system(system_name, config)
        cache: dict = {}
        images = [_load_page(s, config, cache)[0] for s in samples]
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
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def cuda_problem() -> str | None:
    """Why Folio cannot run on CUDA here, or None when it can (imports torch)."""
    from pipeline.models.torch_engine import torch_available

    if not torch_available():
        return "torch is not installed; install the torch extra: pip install 'folio[torch]'"
    import torch

    if not torch.cuda.is_available():
        return (
            f"torch sees no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    return None


class _GpuSampler:
    """GPU utilisation and memory in a background thread, every 200 ms.

    Through NVML (``pynvml``, from the nvidia-ml-py package) when it imports,
    else an ``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
    -lms 200`` process; with neither, only torch's own peak allocation is
    reported. ``stop()`` returns the figures for the bench result.
    """

    INTERVAL_S = 0.2

    def __init__(self, torch_device: str):
        import threading

        import torch

        self._torch = torch
        self.device = torch.device(torch_device)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        # NVML and nvidia-smi number the GPUs physically; torch counts the visible ones.
        visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        self.nvml_index = int(visible[index]) if index < len(visible) and visible[index].strip().isdigit() else index
        self.util: list[float] = []
        self.mem_mb: list[float] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._proc: subprocess.Popen | None = None

    @classmethod
    def for_config(cls, config: FolioConfig) -> _GpuSampler | None:
        """A sampler when the config runs the torch engine on CUDA, else None."""
        from pipeline.models.engine import resolve_engine_name
        from pipeline.models.torch_engine import resolve_device

        if resolve_engine_name(config.engine) != "torch":
            return None
        device = resolve_device(config.engine)
        return cls(device) if device.startswith("cuda") else None

    def start(self) -> None:
        self._torch.cuda.synchronize(self.device)
        self._torch.cuda.reset_peak_memory_stats(self.device)
        self._thread.start()

    def _run(self) -> None:
        try:
            import pynvml
        except ImportError:
            pynvml = None
        if pynvml is not None:
            try:
                pynvml.nvmlInit()
                handle = pynvml.nvmlDeviceGetHandleByIndex(self.nvml_index)
            except pynvml.NVMLError as e:
                log.warning("bench: NVML unavailable (%s); trying nvidia-smi", e)
            else:
                self.source = "nvml"
                try:
                    while not self._stop.wait(self.INTERVAL_S):
                        self.util.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                        self.mem_mb.append(pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20)
                finally:
                    pynvml.nvmlShutdown()
                return
        if shutil.which("nvidia-smi") is None:
            log.warning("bench: neither pynvml nor nvidia-smi is available; GPU utilisation not sampled")
            return
        self.source = "nvidia-smi"
        self._proc = subprocess.Popen(
            ["nvidia-smi", f"--id={self.nvml_index}", "--query-gpu=utilization.gpu,memory.used",
             "--format=csv,noheader,nounits", f"-lms={int(self.INTERVAL_S * 1000)}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and all(p.replace(".", "", 1).isdigit() for p in parts):
                self.util.append(float(parts[0]))
                self.mem_mb.append(float(parts[1]))

    def stop(self) -> dict:
        self._torch.cuda.synchronize(self.device)
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
        self._thread.join(timeout=5)
        if self._proc is not None:
            self._proc.wait(timeout=5)
        return {
            "gpu_name": self._torch.cuda.get_device_name(self.device),
            "gpu_sampler": self.source,
            "gpu_util_mean_pct": statistics.fmean(self.util) if self.util else None,
            "gpu_util_max_pct": max(self.util) if self.util else None,
            "gpu_mem_peak_mb": max(self.mem_mb) if self.mem_mb else None,
            "torch_peak_allocated_mb": self._torch.cuda.max_memory_allocated(self.device) / 2**20,
        }


class _RaySampler:
    """Memory and CPU time of the Ray processes this benchmark started, read from /proc twice a
    second (Linux).

    Only descendants of this process count (Ray's workers are children of the
    raylet this driver started), so other Ray jobs on the machine do not
    leak in. Per role (``ocr`` actors, ``decode`` tasks and idle workers, the
    ``driver``): the peak and median RssAnon (the process's own memory; VmHWM
    also counts object-store pages a worker has mapped, shared with every
    other reader) and the peaks over the first and last quarters of the run,
    which show whether memory grows with the run's length. Per run and role,
    also ``ray`` (Ray's own processes): the CPU seconds used (:meth:`cpu_summary`).
    """

    def __init__(self):
        import threading

        self.root = os.getpid()
        self.peak_mb = 0.0
        self.private_peak_mb = 0.0
        self.series: dict[str, list[float]] = {}
        # CPU seconds per role, one dict per run; per process, the reading taken as the run began
        # (none for a process started during the run) and the latest one.
        self.cpu_runs: list[dict[str, float]] = []
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._active = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def resume(self) -> None:
        """Sample from now on (a run starts)."""
        with self._lock:
            self._cpu_start = {pid: p["cpu"] for pid, p in self._scan().items()}
            self._cpu_last = {}
        self._active.set()

    def pause(self) -> None:
        """Stop sampling until :meth:`resume` (a run has ended), and add up the run's CPU seconds."""
        self._active.clear()
        with self._lock:
            self._cpu_last.update((pid, (p["role"], p["cpu"])) for pid, p in self._scan().items())
            run: dict[str, float] = {}
            for pid, (role, seconds) in self._cpu_last.items():
                run[role] = run.get(role, 0.0) + seconds - self._cpu_start.get(pid, 0.0)
            self.cpu_runs.append(run)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _scan(self) -> dict[int, dict]:
        """This process and its descendants: pid -> role, RssAnon and VmHWM (MiB), CPU seconds (user +
        system). Roles: ``driver``, ``ocr``, ``decode`` (decode tasks and idle workers), ``ray``."""
        parents, found = {}, {}
        tick = os.sysconf("SC_CLK_TCK")
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                stat = (proc / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                status = dict(l.split(":", 1) for l in (proc / "status").read_text().splitlines() if ":" in l)
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                pid = int(proc.name)
                parents[pid] = int(fields[1])
                found[pid] = {
                    "cmd": cmd, "cpu": (int(fields[11]) + int(fields[12])) / tick,
                    "anon": int(status.get("RssAnon", "0 kB").split()[0]) / 1024,
                    "hwm": int(status.get("VmHWM", "0 kB").split()[0]) / 1024,
                }
            except (OSError, ValueError, IndexError):
                continue
        out = {}
        for pid, p in found.items():
            if pid == self.root:
                p["role"] = "driver"
            elif self._descends(pid, parents):
                cmd = p["cmd"]
                p["role"] = ("ray" if not cmd.startswith("ray::") else "ocr" if "OcrRecords" in cmd
                             else "decode" if ("decode" in cmd or "IDLE" in cmd) else "ray")
            else:
                continue
            out[pid] = p
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if not self._active.is_set():
                continue
            with self._lock:
                procs = self._scan()
                if self._active.is_set():
                    self._cpu_last.update((pid, (p["role"], p["cpu"])) for pid, p in procs.items())
            sample: dict[str, float] = {}
            for pid, p in procs.items():
                role = p["role"]
                if role == "ray":
                    continue
                if role != "driver":
                    self.peak_mb = max(self.peak_mb, p["hwm"])
                    self.private_peak_mb = max(self.private_peak_mb, p["anon"])
                sample[role] = max(sample.get(role, 0.0), p["anon"])
            for role, mb in sample.items():
                self.series.setdefault(role, []).append(mb)

    def _descends(self, pid: int, parents: dict[int, int]) -> bool:
        for _ in range(64):
            pid = parents.get(pid, 0)
            if pid == self.root:
                return True
            if pid <= 1:
                return False
        return False

    def cpu_summary(self) -> dict[str, float]:
        """Per role, the median over the runs of the CPU seconds (user + system) it used during a run:
        ``driver`` (this process), ``decode`` and ``ocr`` (Ray workers), ``ray`` (Ray's own processes:
        GCS, raylet, Ray Data's and the run's bookkeeping actors). A process that ended during a run
        counts up to its last sample, taken at most 0.5 s before it ended."""
        return _median_by_key(self.cpu_runs)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per role: ``first`` (the first sample: what the process held as the run began), ``peak``,
        ``median``, ``first_quarter_peak``, ``last_quarter_peak``, ``tenth_peaks`` (the peak of each
        tenth of the samples, in order: the shape of the curve) (MiB, RssAnon)."""
        out = {}
        for role, values in self.series.items():
            q = max(1, len(values) // 4)
            cuts = [len(values) * i // 10 for i in range(11)]
            tenths = [values[a:max(b, a + 1)] for a, b in zip(cuts, cuts[1:])]
            out[role] = {"first": values[0], "peak": max(values), "median": statistics.median(values),
                         "first_quarter_peak": max(values[:q]), "last_quarter_peak": max(values[-q:]),
                         "tenth_peaks": [max(t) for t in tenths if t], "samples": len(values)}
        return out


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


def _samples(path: str, fmt: str | None, limit: int | None) -> list[GtPage]:
    fmt = fmt or detect_format(path)
    if fmt is None:
        # a plain folder of documents: every page of every file, no ground truth
        from pipeline.config import DecodeConfig
        from pipeline.runner.common import plan

        samples = []
        for ref in plan(path, exclude=("*.json",)):
            try:
                with open_document(Path(ref.uri).read_bytes(), DecodeConfig()) as doc:
                    n = doc.page_count
            except Exception as e:  # noqa: BLE001 - unreadable files are left out of a benchmark, with a note
                log.warning("bench: leaving out %s: %s", ref.uri, e)
                continue
            samples.extend(GtPage(f"{ref.uri}#{i}", Path(ref.uri), i, None, None, (), ()) for i in range(n))
        return samples[:limit] if limit else samples
    return read_dataset(fmt, path, limit)


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
                [sys.executable, "-m", "pipeline.benchmark", json.dumps(args)], capture_output=True, text=True,
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


def _median_by_key(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key of any of ``dicts``, the median of its values, a dict without the key counting 0."""
    keys = sorted({key for d in dicts for key in d})
    return {key: statistics.median(d.get(key, 0.0) for d in dicts) for key in keys}


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
        out["cpu_seconds_by_role"] = _median_by_key(cpu)
    memory = [r["ray_memory_by_role_mb"] for r in runs if r.get("ray_memory_by_role_mb")]
    if memory:  # per role, the run where it peaked highest
        out["ray_memory_by_role_mb"] = {role: max((m[role] for m in memory if role in m), key=lambda v: v["peak"])
                                        for role in sorted({role for m in memory for role in m})}
    return out


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


if __name__ == "__main__":  # bench worker entry point: one system, one process
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(_bench_worker(json.loads(sys.argv[1]))))
