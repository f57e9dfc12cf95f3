"""What the benchmark watches while a run is timed: the GPU (utilisation and memory, through NVML or
``nvidia-smi``), the memory and CPU time of the Ray processes a run starts (from /proc), and this
process's peak RSS."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import FolioConfig

__all__ = ["GpuSampler", "RaySampler", "cuda_problem", "median_by_key", "peak_rss_mb"]

log = logging.getLogger(__name__)


def median_by_key(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key of any of ``dicts``, the median of its values, a dict without the key counting 0."""
    keys = sorted({key for d in dicts for key in d})
    return {key: statistics.median(d.get(key, 0.0) for d in dicts) for key in keys}


def peak_rss_mb() -> float:
    """The highest resident memory of this process and of any child it waited for (MiB)."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


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


class GpuSampler:
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
    def for_config(cls, config: FolioConfig) -> GpuSampler | None:
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


class RaySampler:
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
                p["role"] = ("ray" if not cmd.startswith("ray::") else "ocr" if "OcrActor" in cmd
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
        return median_by_key(self.cpu_runs)

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
