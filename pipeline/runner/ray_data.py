"""The Ray Data runner: the local runner's stages, fanned out over a Ray cluster.

The job::

    planned refs (driver)
      -> map_batches(decode stage)            CPU tasks, ``ray.decode_num_cpus`` each
      -> map_batches(OcrActor: page stage)    actor pool: models load once per actor;
                                              one GPU each when the cluster has GPUs,
                                              fractional CPUs otherwise
      -> iter_batches() -> assembler (driver) rows, Parquet shards, manifest

Items (:mod:`pipeline.types`) travel as they are, one object column per
batch; pages stream: Ray Data's executor bounds what is in flight, pixels stay
in the object store between decode tasks and OCR actors, and the driver only
ever sees finished pages (text and boxes). Per-document failures are items,
never exceptions, so Ray Data never drops a block; a dead actor is restarted
and its batch retried page by page (:class:`PageAttempts`), and the assembler
keeps each document and page once.

Only this module imports Ray.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.config import FolioConfig, RayConfig
from pipeline.errors import ClusterUnavailable, ConfigError, WorkerLost
from pipeline.models.engine import resolve_engine
from pipeline.stages.assemble import Assembler
from pipeline.stages.decode import DecodeStage
from pipeline.stages.factory import create_page_stage
from pipeline.types import DocumentRef, Item, PageImage

__all__ = ["run_ray", "ray_init", "connect", "wait_for_room", "decode_blocks", "OcrActor",
           "PageAttempts", "SharedOrAlone"]

log = logging.getLogger(__name__)


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise ConfigError("the Ray runner needs ray: pip install 'ray[data]'") from e
    return ray


def ray_init(address: str | None = None, num_cpus: int | None = None, connect_timeout_s: float = 10.0,
             log_to_driver: bool = False) -> str:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a Ray of this process's own on this
    machine; no-op when connected. ``log_to_driver``: the workers' output is printed here too.

    Joining an existing cluster: its address must answer within ``connect_timeout_s``
    (a TCP connection first, then Ray's own handshake), and where it uses token
    authentication (Ray's default since 2.59) this process authenticates with the
    cluster's token from ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names,
    or ``~/.ray/auth_token``, in that order (``RAY_AUTH_MODE`` set explicitly wins).

    Returns:
        What this process is connected to, and with which token (never the token itself).

    Raises:
        ClusterUnavailable: nothing answers at the address, the cluster refused this process
            (a missing or wrong token, a Ray version it does not match), or a token file named
            by ``RAY_AUTH_TOKEN_PATH`` cannot be read.
    """
    ray = _ray()
    if ray.is_initialized():
        return "Ray: the cluster this process is already connected to"
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {
        "ignore_reinit_error": True,
        "include_dashboard": False,
        "log_to_driver": log_to_driver,
        "logging_level": logging.WARNING,
    }
    if address is None:
        # "local": a Ray of its own, even where `ray start` left a cluster (or the record of a dead one)
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
        return "Ray: a local Ray on this machine"
    _check_reachable(address, connect_timeout_s)
    token = _use_cluster_token()
    waited = os.environ.get(_GCS_WAIT_ENV)
    if waited is None:  # Ray's own handshake retries once a second, 20 times by default
        os.environ[_GCS_WAIT_ENV] = str(max(1, math.ceil(connect_timeout_s)))
    try:
        ray.init(address=address, **kwargs)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError or its own errors here
        ray.shutdown()
        raise ClusterUnavailable(_refused(address, connect_timeout_s, token, e)) from e
    finally:
        if waited is None:
            os.environ.pop(_GCS_WAIT_ENV, None)
    said = f"Ray: the cluster at {address}" + (f", authenticated with the token from {token}" if token else "")
    log.info(said)
    return said


#: Ray's seconds (about one retry each) for a driver's handshake with the cluster's GCS.
_GCS_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"


def _check_reachable(address: str, timeout_s: float) -> None:
    """A TCP connection to the address's host and port (Ray itself waits far longer for one)."""
    target = address.split("://", 1)[-1].rstrip("/")
    if target in ("auto", "local") or ":" not in target:
        return  # Ray finds these itself
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except ValueError as e:
        raise ClusterUnavailable(f"the Ray address {address!r} has no port number (host:port, e.g. head:6379)") from e
    except OSError as e:
        why = e.strerror or type(e).__name__.replace("Error", "").lower() or str(e)
        raise ClusterUnavailable(
            f"nothing answers at the Ray address {address} ({why}, after at most {timeout_s:g} s): check the address "
            "(--address, ray.address, RAY_ADDRESS), that the cluster's head is up, and that this machine can "
            "reach its port"
        ) from e


def _use_cluster_token() -> str | None:
    """Turn token authentication on for this process when a token is at hand and ``RAY_AUTH_MODE``
    says nothing; say where the token comes from (None: no token, or token authentication off)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        return None
    source = None
    if os.environ.get("RAY_AUTH_TOKEN"):
        source = "RAY_AUTH_TOKEN"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        try:
            readable = bool(path.read_text().strip())
        except OSError as e:
            raise ClusterUnavailable(f"RAY_AUTH_TOKEN_PATH={path} cannot be read: {e.strerror or e}") from e
        if not readable:
            raise ClusterUnavailable(f"RAY_AUTH_TOKEN_PATH={path} is empty: it must hold the cluster's token")
        source = f"RAY_AUTH_TOKEN_PATH ({path})"
    else:
        default = Path.home() / ".ray" / "auth_token"
        if default.is_file() and default.stat().st_size > 0:
            source = str(default)
    if source is not None and mode is None:
        os.environ["RAY_AUTH_MODE"] = "token"
        _reload_ray_config()
    return source


def _reload_ray_config() -> None:
    """Make an already imported Ray see a changed ``RAY_AUTH_MODE``: it reads its config once, at import
    (what Ray's own ``ray.init`` does for a local cluster; a private API, so best effort)."""
    try:
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError) as e:  # pragma: no cover - another Ray version
        log.debug("cannot reload Ray's config: %s", e)


def _refused(address: str, timeout_s: float, token: str | None, error: Exception) -> str:
    why = " ".join(str(error).split())[:300] or type(error).__name__
    if "version" in why.lower():
        return (f"the Ray cluster at {address} runs another version of Ray or Python than this process ({why}): "
                "install the cluster's versions here")
    if token:
        hint = (f"it did not accept the token from {token}: give this process the cluster's own token "
                "(`ray get-auth-token` on the head prints it)")
    else:
        hint = ("if the cluster uses token authentication (Ray's default since 2.59), give this process its "
                "token: RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH naming a file that holds it, or ~/.ray/auth_token "
                "(`ray get-auth-token` on the head prints it)")
    return f"the Ray cluster at {address} did not let this process in within {timeout_s:g} s ({why}); {hint}"


def _actor_gpus(ray, rc: RayConfig) -> float:
    """GPUs per OCR actor: ``ray.ocr_num_gpus``, or where it is null 1 when the cluster has GPUs now, else 0."""
    if rc.ocr_num_gpus is not None:
        return rc.ocr_num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def connect(config: FolioConfig, address: str | None = None) -> tuple[FolioConfig, str]:
    """Connect to the run's cluster (:func:`ray_init`) and settle what the OCR actors compute on.

    ``ray.ocr_num_gpus: null`` becomes 1 when the cluster has GPUs now, else 0; then the engine
    is resolved (:func:`~pipeline.models.engine.resolve_engine`) for an actor that holds that
    many GPUs, never for the driver, which may run on a CPU-only head or flow pod: with a GPU,
    ``engine.name: auto`` is torch on ``cuda`` in float16 (unless ``engine.dtype`` says otherwise).
    A cluster whose GPU group is scaled to zero has no GPUs when the run starts; set
    ``ray.ocr_num_gpus: 1`` there, so the actors ask for GPUs (and the autoscaler adds them).

    Returns:
        The config with the actors' GPUs and engine resolved, and what :func:`ray_init` says it
        connected to.

    Raises:
        ClusterUnavailable: the cluster cannot be used.
    """
    ray = _ray()
    said = ray_init(address or config.ray.address, connect_timeout_s=config.ray.connect_timeout_s)
    gpus = _actor_gpus(ray, config.ray)
    if config.ray.ocr_num_gpus is None:
        config = config.model_copy(update={"ray": config.ray.model_copy(update={"ocr_num_gpus": gpus})})
    config = resolve_engine(config, cuda=gpus > 0)
    if gpus > 0 and config.engine.name == "onnxruntime":
        log.warning("each OCR actor holds %g GPU, but engine.name=onnxruntime computes on its CPUs: set "
                    "engine.name to auto or torch to compute on the GPU", gpus)
    return config, said


def wait_for_room(ray, actor: dict[str, float], task: dict[str, float], timeout_s: float) -> None:
    """Wait until the cluster has a node that can hold one OCR actor and room for a decode task beside it,
    asking an autoscaler for them meanwhile.

    Raises:
        ClusterUnavailable: there is no such room after ``timeout_s`` (Ray Data would wait forever).
    """
    actor = {k: v for k, v in actor.items() if v}
    task = {k: v for k, v in task.items() if v}
    deadline = time.monotonic() + timeout_s
    asked = False
    while True:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        if _room(nodes, actor, task):
            if asked:
                from ray.autoscaler.sdk import request_resources

                request_resources(bundles=[])  # what is there now is enough
            return
        if not asked:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[actor, task])  # an autoscaler adds nodes for them; elsewhere a no-op
            asked = True
        if time.monotonic() >= deadline:
            have = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(n.items()) if k in ("CPU", "GPU")) or "nothing"
                             for n in nodes) or "no node"
            raise ClusterUnavailable(
                f"the Ray cluster has no room for an OCR actor ({_bundle(actor)}) and a decode task "
                f"({_bundle(task)}) after {timeout_s:g} s; its nodes have: {have}. Lower ray.ocr_num_cpus, "
                "ray.ocr_num_gpus or ray.decode_num_cpus, add nodes, or raise ray.resources_timeout_s where "
                "the cluster autoscales"
            )
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _room(nodes: list[dict[str, float]], actor: dict[str, float], task: dict[str, float]) -> bool:
    fits = [all(node.get(k, 0.0) >= v for k, v in actor.items()) for node in nodes]
    if not any(fits):
        return False
    cpus = sum(node.get("CPU", 0.0) for node in nodes)
    return cpus >= actor.get("CPU", 0.0) + task.get("CPU", 0.0)


def _bundle(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in resources.items()) or "nothing"


def decode_blocks(documents: int, decode_tasks: int, docs_per_task: int) -> int:
    """How many blocks (so decode tasks) the planned documents are split into: enough to keep every
    decode task busy, and none holding more than ``docs_per_task`` documents, because a decode
    worker's memory grows with the documents its task reads."""
    if documents <= 0:
        return 1
    return max(min(documents, 4 * decode_tasks), -(-documents // docs_per_task))


def _column(items: list) -> dict[str, np.ndarray]:
    """A batch of items in Ray Data's numpy format: one column of Python objects."""
    column = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        column[i] = item
    return {"item": column}


def _decode_refs(batch: dict[str, np.ndarray], config: FolioConfig):
    """Decode task: planned refs in, their items out, a batch per item, so that a long document
    streams instead of landing in one block."""
    decode = DecodeStage(config)
    for uri, size, etag in zip(batch["uri"], batch["size"], batch["etag"]):
        ref = DocumentRef(str(uri), int(size) if size >= 0 else None, None if etag is None else str(etag))
        for item in decode(ref):
            yield _column([item])


class PageAttempts:
    """A small actor counting how often each page was handed to an OCR actor, in a batch and alone.

    A count above one means an actor died with the page (Ray Data retried its
    batch); :meth:`OcrActor.__call__` uses that to isolate and, at last,
    give up on a page. Finished pages are forgotten, so it stays small.
    """

    def __init__(self):
        self.counts: dict[tuple[str, str], int] = {}

    def begin(self, keys: list[str], mode: str) -> list[int]:
        out = []
        for key in keys:
            n = self.counts.get((mode, key), 0) + 1
            self.counts[(mode, key)] = n
            out.append(n)
        return out

    def end(self, keys: list[str]) -> None:
        for key in keys:
            self.counts.pop(("batch", key), None)
            self.counts.pop(("solo", key), None)


class SharedOrAlone:
    """Batches share an OCR process (``runner.ocr_threads``); a page run alone to isolate a crash has it
    to itself.

    When an actor dies, every batch it was running comes back, innocent ones too.
    Their pages are then run one at a time, and each such solo run counts towards
    ``ray.max_page_attempts``: were a poisonous page's solo run to overlap an
    innocent page's, the innocent page would die with it and be counted, and
    could end as a ``worker_lost`` row it did not cause. Solo runs wait until
    no batch is running and keep new batches waiting meanwhile.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self):
        with self._cond:
            self._waiting_alone += 1
            self._cond.wait_for(lambda: not self._alone and not self._shared)
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


class OcrActor:
    """The page stage in a Ray actor: the page images of a batch go through it, other items pass.

    A callable class in Ray Data's ``map_batches`` shape: the page stage (and its
    models) is built once per instance, i.e. once per actor.

    Ray Data retries the batch of an actor that died (killed for memory, a
    crash in native code) on a new actor. A batch that comes back is run one
    page at a time, and a page on which actors died ``ray.max_page_attempts``
    times alone becomes a ``worker_lost`` error row, so one poisonous page can
    neither take its batch down with it nor be retried forever.
    """

    def __init__(self, config: FolioConfig, attempts=None,
                 stage_factory: Callable[[FolioConfig], Callable] = create_page_stage):
        """
        Args:
            config: the run's configuration.
            attempts: the handle of the run's :class:`PageAttempts` actor (None: no isolation).
            stage_factory: builds the page stage.
        """
        self.stage = stage_factory(config)
        self.attempts = attempts
        self.max_page_attempts = config.ray.max_page_attempts
        self._isolation = SharedOrAlone()

    def process(self, items: list[Item]) -> list[Item]:
        """The batch with its page images replaced by the pages read on them."""
        pages = [item for item in items if isinstance(item, PageImage)]
        if not pages:
            return items
        return [item for item in items if not isinstance(item, PageImage)] + list(self.stage(pages))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = list(batch["item"])
        del batch
        out = self._guarded(items) if self.attempts is not None else self.process(items)
        del items
        result = _column(out)
        del out
        release_heap()
        return result

    def _guarded(self, items: list[Item]) -> list[Item]:
        ray = _ray()
        pages = [item for item in items if isinstance(item, PageImage)]
        if not pages:
            return items
        keys = [f"{p.doc_id}:{p.page_index}" for p in pages]
        try:
            tries = ray.get(self.attempts.begin.remote(keys, "batch"), timeout=60)
        except (ray.exceptions.RayError, TimeoutError) as e:
            # The counter is a convenience: losing it (its node died) must not lose the batch.
            log.warning("page-attempts actor unavailable (%s); running the batch without isolation", e)
            return self.process(items)
        if max(tries) <= 1:
            with self._isolation.shared():
                out = self.process(items)
            self.attempts.end.remote(keys)
            return out
        log.warning("a batch of %d pages is back after its OCR worker died: running its pages one by one", len(pages))
        out = [item for item in items if not isinstance(item, PageImage)]
        for page, key in zip(pages, keys):
            with self._isolation.alone():  # counted and run with nothing else in this process
                try:
                    solo = ray.get(self.attempts.begin.remote([key], "solo"), timeout=60)[0]
                except (ray.exceptions.RayError, TimeoutError):
                    solo = 1
                if solo > self.max_page_attempts:
                    error = WorkerLost(f"the OCR worker died on this page {solo - 1} times (killed for memory?)")
                    log.error("page %s: %s", key, error)
                    out.append(page.failed(error.code, error.message))
                else:
                    out.extend(self.process([page]))
                    # It read alone without killing the actor: innocent. Should a later page of this
                    # batch kill the actor, this one's rerun must not count towards giving up on it.
                    self.attempts.end.remote([key])
        self.attempts.end.remote(keys)
        return out


def release_heap() -> None:
    """Give freed heap pages back to the OS after a batch (glibc ``malloc_trim``; a no-op elsewhere).

    Pages and crops differ in size from batch to batch and glibc keeps freed
    chunks in its arenas; trimming after each batch lets a long-lived OCR
    actor's resident memory fall back between batches.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def run_ray(
    refs: Sequence[DocumentRef],
    config: FolioConfig,
    assembler: Assembler,
    *,
    address: str | None = None,
    stage_factory: Callable[[FolioConfig], Callable] = create_page_stage,
) -> None:
    """Run ``refs`` through the stages on Ray Data, every item ending in ``assembler`` (in the driver).

    Args:
        refs: the planned inputs.
        config: the run's configuration (``ray`` section: actor pool and task sizes; ``engine.name``
            resolved, see :func:`connect`).
        assembler: takes every page and source document.
        address: Ray cluster address (default ``ray.address``, ``RAY_ADDRESS``, else a local Ray).
        stage_factory: builds the page stage in each OCR actor (must be importable there).
    """
    if not refs:
        return
    ray = _ray()
    ray_init(address or config.ray.address, connect_timeout_s=config.ray.connect_timeout_s)
    from ray.data import DataContext
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts documents, pages and errors
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rc = config.ray
    gpus = _actor_gpus(ray, rc)  # connect() settled it; a caller that connected otherwise gets the same rule
    wait_for_room(ray, {"CPU": rc.ocr_num_cpus, "GPU": gpus}, {"CPU": rc.decode_num_cpus}, rc.resources_timeout_s)
    # Kept beside the driver, so losing a worker node does not lose the counts.
    attempts = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(PageAttempts).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    ).remote()
    decode_tasks = rc.max_decode_tasks
    if gpus > 0:  # a GPU reads pages faster than one CPU decodes them: feed each OCR actor
        gpu_actors = min(rc.ocr_actors, int(ray.cluster_resources().get("GPU", 0) // gpus) or 1)
        decode_tasks = max(decode_tasks, rc.decode_tasks_per_gpu * gpu_actors)
    # -1: the size is not known (from_items needs one type per column)
    rows = [{"uri": r.uri, "size": -1 if r.size is None else r.size, "etag": r.etag} for r in refs]
    blocks = decode_blocks(len(rows), decode_tasks, rc.docs_per_task)
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(
        _decode_refs, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy",
        num_cpus=rc.decode_num_cpus, compute=ray.data.TaskPoolStrategy(size=min(decode_tasks, blocks)),
    )
    ds = ds.map_batches(
        OcrActor,
        fn_constructor_kwargs={"config": config, "attempts": attempts, "stage_factory": stage_factory},
        batch_size=config.runner.batch_pages,
        batch_format="numpy",
        # Ray Data restarts dead actors and retries their batches without limit by default.
        # Each actor runs runner.ocr_threads batches at once in threads sharing its models, as the
        # local runner does.
        compute=ray.data.ActorPoolStrategy(
            min_size=1, max_size=rc.ocr_actors, max_concurrent_calls_per_actor=config.runner.ocr_threads,
            enable_true_multi_threading=config.runner.ocr_threads > 1,
        ),
        num_cpus=rc.ocr_num_cpus,
        num_gpus=gpus,
    )
    try:
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            for item in batch["item"]:
                assembler.add(item)
    finally:
        # The counts are this run's; left alive, every run a long-lived driver (a Prefect worker,
        # a notebook) makes would leave one more actor behind.
        ray.kill(attempts)
