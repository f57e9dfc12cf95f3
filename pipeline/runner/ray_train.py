"""``folio train --runner ray``: the same training on a Ray cluster with Ray Train, data-parallel.

Each worker (one per GPU, or ``--workers`` on CPUs) builds the same
:class:`~pipeline.models.training.Recognizer` from the same base model and texts,
wraps its module in PyTorch's DistributedDataParallel (``ray.train.torch.prepare_model``)
and runs the local run's epochs (:func:`~pipeline.models.training.train_loop`) on its
share of each epoch's batches (those of the local run, dealt round-robin, so every
worker takes as many steps). Gradients are averaged
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

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.config import FolioConfig
from pipeline.models.training import EpochResult, FitResult, LineSample, Recognizer, TrainOptions, train_loop
from pipeline.runner.ray_data import ray_init

__all__ = ["fit_on_ray"]

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
    history = [EpochResult(**e) for e in saved["history"]]
    result = FitResult(history=history, baseline_cer=saved["baseline"], best_cer=saved["best"],
                       best_epoch=saved["best_epoch"], stopped_early=len(history) < options.epochs,
                       seconds=saved["seconds"])
    return result


def _worker_loop(cfg: dict) -> None:
    """One Ray Train worker: :func:`~pipeline.models.training.train_loop` on its share of each epoch's batches,
    the first worker reporting the state to resume from as a checkpoint after every epoch."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    options: TrainOptions = cfg["options"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    recognizer = Recognizer(cfg["base"], cfg["texts"], cfg["charset"], options.freeze)
    module = ray.train.torch.prepare_model(recognizer.module, move_to_device=True, parallel_strategy="ddp",
                                           parallel_strategy_kwargs={"find_unused_parameters": False})
    saved = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / _STATE_FILE, weights_only=False, map_location="cpu")

    def save(state: dict) -> None:
        last = state["history"][-1]
        metrics = {"epoch": last["epoch"], "loss": last["loss"], "val_cer": last["val_cer"], "best_cer": state["best"]}
        if rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / _STATE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def progress(phase: str, step: int, total: int, info: dict) -> None:
        if phase == "epoch" and rank == 0:  # Ray forwards a worker's output to the driver's console
            print(f"epoch {step}/{total}: loss {info['loss']:.3f}, validation CER {info['val_cer']:.4f} "
                  f"(best {info['best_cer']:.4f})", flush=True)

    train_loop(recognizer, ray.get(cfg["train"]), ray.get(cfg["val"]), cfg["recognition"], options, module=module,
               rank=rank, world=world, saved=saved, save=save, progress=progress)
