"""``folio train --runner ray``: the same training on a Ray cluster with Ray Train, data-parallel.

Each worker (one per GPU, or ``--workers`` on CPUs) builds the same
:class:`~pipeline.models.training.Recognizer` from the same base model and texts,
wraps its module in PyTorch's DistributedDataParallel (``ray.train.torch.prepare_model``)
and trains on its share of each epoch's batches (the batches are those of the local
run, dealt round-robin, so every worker takes as many steps). Gradients are averaged
across workers at every step; the learning-rate schedule, early stopping and the
validation CER are the local run's, every worker computing the same validation CER
so they stop together. The first worker reports a checkpoint (weights, optimizer,
best weights, history) after each epoch; a worker that fails is restarted from it
(``FailureConfig(max_failures=2)``), and the driver loads the best weights from the
last one.

Ray Train keeps its last two checkpoints under ``<output>/ray``; on a cluster of several
machines that folder must be on storage every node sees.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.config import FolioConfig
from pipeline.models.training import (
    EpochResult,
    FitResult,
    LineSample,
    Recognizer,
    TrainOptions,
    batches_of,
    schedule,
    train_epoch,
    validation_cer,
)
from pipeline.runner.ray_data import ray_init

__all__ = ["fit_on_ray"]

log = logging.getLogger(__name__)

_STATE_FILE = "state.pt"


def fit_on_ray(recognizer: Recognizer, train: Sequence[LineSample], val: Sequence[LineSample], config: FolioConfig,
               options: TrainOptions, workers: int | None, storage: Path,
               progress: Callable[[str], None] | None = None) -> FitResult:
    """Train ``recognizer`` on the cluster of ``ray.address`` (a local one when unset), in place, ending
    with the best epoch's weights, as :func:`~pipeline.models.training.fit` does locally."""
    import ray
    import torch
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    said = ray_init(config.ray.address, connect_timeout_s=config.ray.connect_timeout_s, log_to_driver=True)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = workers or max(1, gpus)
    use_gpu = gpus >= count
    cpus = float(max(1, options.threads))
    if progress is not None:
        progress(f"folio train: Ray Train on {said}, {count} worker(s) on "
                 f"{'a GPU each' if use_gpu else f'{cpus:g} CPU(s) each'}")
    loop_config = {
        "base": recognizer.base, "texts": [s.text for s in [*train, *val]], "charset": recognizer.allowed,
        "options": options, "recognition": config.recognition,
        "train": ray.put(list(train)), "val": ray.put(list(val)),
    }
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=count, use_gpu=use_gpu,
                                     resources_per_worker=None if use_gpu else {"CPU": cpus}),
        run_config=RunConfig(name="folio-train", storage_path=str(storage.resolve()),
                             failure_config=FailureConfig(max_failures=2),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    outcome = trainer.fit()
    if outcome.checkpoint is None:
        raise RuntimeError(f"Ray Train ended without a checkpoint: {outcome.error}")
    with outcome.checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder) / _STATE_FILE, weights_only=False, map_location="cpu")
    recognizer.load_state(saved["best_state"])
    result = FitResult(history=[EpochResult(**e) for e in saved["history"]], baseline_cer=saved["baseline"],
                       best_cer=saved["best"], best_epoch=saved["best_epoch"], stopped_early=saved["stopped_early"],
                       seconds=saved["seconds"])
    return result


def _worker_loop(cfg: dict) -> None:
    """One Ray Train worker: the local epochs on this worker's share of the batches."""
    import time

    import ray
    import ray.train
    import ray.train.torch
    import torch

    options: TrainOptions = cfg["options"]
    recognition = cfg["recognition"]
    train: list[LineSample] = ray.get(cfg["train"])
    val: list[LineSample] = ray.get(cfg["val"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(options.seed)
    torch.set_num_threads(max(1, options.threads))
    recognizer = Recognizer(cfg["base"], cfg["texts"], cfg["charset"], options.freeze)
    module = ray.train.torch.prepare_model(recognizer.module, move_to_device=True, parallel_strategy="ddp",
                                           parallel_strategy_kwargs={"find_unused_parameters": False})
    optimizer = torch.optim.AdamW(recognizer.trainable(), lr=options.learning_rate, weight_decay=options.weight_decay)
    per_worker = max(1, math.ceil(len(train) / options.batch_size / world))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(per_worker, options.epochs))
    history: list[dict] = []
    best_state = recognizer.state()
    start, waited, t0 = 1, 0, time.perf_counter()
    saved_checkpoint = ray.train.get_checkpoint()
    if saved_checkpoint is not None:
        with saved_checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / _STATE_FILE, weights_only=False, map_location="cpu")
        recognizer.load_state(saved["state"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best_state, history = saved["best_state"], saved["history"]
        baseline, best, best_epoch = saved["baseline"], saved["best"], saved["best_epoch"]
        start = len(history) + 1
        waited = sum(1 for e in history if e["epoch"] > best_epoch)
    else:
        baseline = best = validation_cer(recognizer, val, recognition)
        best_epoch = 0
    stopped = False
    for epoch in range(start, options.epochs + 1):
        if waited >= options.patience:
            stopped = True
            break
        e0 = time.perf_counter()
        batches = batches_of(train, options.batch_size, random.Random(options.seed * 1000 + epoch))
        if len(batches) < world:
            batches = (batches * world)[:world]
        mine = batches[rank : len(batches) - len(batches) % world : world]
        rng = np.random.default_rng(options.seed * 1000 + epoch + 7919 * rank) if options.augment else None
        loss = train_epoch(recognizer, module, optimizer, train, mine, recognition, rng, None, scheduler)
        val_cer = validation_cer(recognizer, val, recognition)
        history.append(asdict(EpochResult(epoch, loss, val_cer, time.perf_counter() - e0)))
        if val_cer < best:
            best, best_epoch, best_state, waited = val_cer, epoch, recognizer.state(), 0
        else:
            waited += 1
        metrics = {"epoch": epoch, "loss": loss, "val_cer": val_cer, "best_cer": best}
        if rank == 0:  # Ray forwards a worker's output to the driver's console
            print(f"epoch {epoch}/{options.epochs}: loss {loss:.3f}, validation CER {val_cer:.4f} (best {best:.4f})",
                  flush=True)
        state = {"state": recognizer.state(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "best_state": best_state, "history": history, "baseline": baseline, "best": best,
                 "best_epoch": best_epoch, "stopped_early": False, "seconds": time.perf_counter() - t0}
        _report(metrics, state if rank == 0 else None)
    if stopped and rank == 0:
        log.info("stopped early after epoch %d", len(history))
    # A last report says where training stopped, with the same weights.
    state = {"state": recognizer.state(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "best_state": best_state, "history": history, "baseline": baseline, "best": best,
             "best_epoch": best_epoch, "stopped_early": stopped, "seconds": time.perf_counter() - t0}
    _report({"epoch": len(history), "best_cer": best, "done": True}, state if rank == 0 else None)


def _report(metrics: dict, state: dict | None) -> None:
    import ray.train
    import torch

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / _STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
