"""Fine-tuning the recognizer on a collection's own transcriptions (``folio train``).

The PP-OCR recognition model is converted to torch (onnx2torch, after the same graph
rewrites the torch engine makes) and trained with a CTC loss on line images and their
text. Its classification head is first cut to the classes ``recognition.charset``
allows (887 of 18,710 with ``latin``: smaller, faster to train) and given a class for
every character the ground truth has and the model lacks (historical glyphs like ``ꝛ``),
placed before the space, which PP-OCR keeps last.

Every weight the training changes is an initializer of the ONNX graph: onnx2torch copies
each into a tensor of its own, found again by its bytes before training. The trained
model is therefore the shipped graph with new initializer values and the new charset
in its ``character`` metadata: every engine and every graph edit Folio makes
(:func:`~pipeline.models.graph.select_classes`, :func:`~pipeline.models.graph.append_best_class`)
work on it unchanged, and no ONNX export of a torch module is involved.

Lines go through the recognizer's own preprocessing (:func:`~pipeline.models.recognition.resize_to_height`,
padding to ``recognition.width_step``), so the model trains on what it will read, and
batches are made of lines of similar width. Augmentation blurs, adds noise, rotates by
up to 1.5 degrees and stretches lines by up to 15%.

:func:`fit` runs the epochs, keeps the best validation CER's weights, stops after
``patience`` epochs without improvement, and saves a checkpoint after each epoch to
resume from. :mod:`pipeline.runner.ray_train` runs the same epochs on a Ray cluster,
data-parallel.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import RecognitionConfig
from pipeline.errors import ModelError
from pipeline.models.graph import flush_denormals, head, output_logits, select_classes
from pipeline.models.recognition import (
    CTCDecoder,
    batch_tensor,
    normalise,
    padded_width,
    plan_buckets,
    resize_to_height,
)
from pipeline.models.zoo import ModelFile, files_sha256, load_onnx

__all__ = ["LineSample", "TrainOptions", "Recognizer", "EpochResult", "FitResult", "fit", "split_by_group",
           "batches_of", "cer_counts", "onnx_readings", "read_lines", "schedule", "train_epoch", "train_loop",
           "validation_cer",
           "MODEL_FILE", "CHECKPOINT_FILE", "REPORT_FILE"]

log = logging.getLogger(__name__)

#: What ``folio train`` writes into its output folder.
MODEL_FILE = "recognizer.onnx"
CHECKPOINT_FILE = "checkpoint.pt"
REPORT_FILE = "training.json"


@dataclass(frozen=True)
class LineSample:
    """One line to train or validate on: an RGB image of the line alone, its text, and the document it
    comes from (a split keeps each document on one side)."""

    image: np.ndarray
    text: str
    group: str


@dataclass(frozen=True)
class TrainOptions:
    """How to train; see ``folio train --help`` for when to change each."""

    epochs: int = 15
    batch_size: int = 8
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    #: Epochs without a better validation CER before stopping.
    patience: int = 4
    augment: bool = True
    #: Share of the network's weight tensors, in the graph's order from the input, kept as shipped: the
    #: early layers see strokes and edges, which a new collection shares with the training data.
    freeze: float = 0.5
    seed: int = 0
    threads: int = 2


@dataclass
class EpochResult:
    epoch: int
    loss: float
    val_cer: float
    seconds: float


def _torch():
    """torch and onnx2torch's ``convert`` (the torch engine's import, with its warning filter)."""
    from pipeline.models.torch_engine import import_torch

    torch, _, convert = import_torch()
    return torch, convert


def _key(array: np.ndarray) -> tuple:
    return array.shape, str(array.dtype), hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


class Recognizer:
    """The recognition model as a trainable torch module, tied to the ONNX graph it came from.

    Args:
        base: the model file to start from (the shipped one, or an earlier fine-tuned one).
        texts: the ground truth's texts; characters the charset lacks get classes of their own.
        charset: ``recognition.charset``: the head keeps the classes it allows.
        freeze: share of the weight tensors, from the input, not trained.
    """

    def __init__(self, base: ModelFile, texts: Iterable[str], charset: str = "latin", freeze: float = 0.5):
        from onnx import numpy_helper

        from pipeline.models.torch_engine import network_stride, rewrite_graph

        torch, convert = _torch()
        self.base = base
        proto = load_onnx(base)
        flush_denormals(proto)
        metadata = {p.key: p.value for p in proto.metadata_props}
        decoder = CTCDecoder.from_metadata(metadata, charset)
        kept = decoder.kept_classes()
        if kept is not None:
            select_classes(proto, kept)
            decoder = decoder.restricted(kept)
        known = list(decoder.characters[1:-1])
        have = set(known) | {" "}
        added = sorted({ch for text in texts for ch in text if ch not in have and ch.isprintable()})
        if added:
            _, _, weight, bias = head(proto)
            w, b = numpy_helper.to_array(weight), numpy_helper.to_array(bias)
            rng = np.random.default_rng(0)
            new_w = rng.normal(0.0, float(w.std()), (w.shape[0], len(added))).astype(w.dtype)
            new_b = np.full(len(added), float(np.percentile(b[1:-1], 10)), b.dtype)  # rare until trained
            weight.CopyFrom(numpy_helper.from_array(np.concatenate([w[:, :-1], new_w, w[:, -1:]], 1), weight.name))
            bias.CopyFrom(numpy_helper.from_array(np.concatenate([b[:-1], new_b, b[-1:]]), bias.name))
            for value in list(proto.graph.output) + list(proto.graph.value_info):
                dims = value.type.tensor_type.shape.dim
                if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value == w.shape[1]:
                    dims[-1].dim_value = w.shape[1] + len(added)
        self.charset: list[str] = known + added
        self.added = added
        self.allowed = charset
        for prop in proto.metadata_props:
            if prop.key == "character":
                prop.value = "\n".join(self.charset)
        self.proto = proto  # the graph the trained model is written into
        trainable = copy.deepcopy(proto)
        output_logits(trainable)
        rewrite_graph(trainable)
        self.multiple = network_stride(trainable)[1]
        by_bytes: dict[tuple, list[str]] = {}
        written = {t.name for t in proto.graph.initializer}  # not the Constant nodes rewrite_graph turned into some
        for tensor in trainable.graph.initializer:
            array = numpy_helper.to_array(tensor)
            if array.dtype == np.float32 and array.size > 1 and tensor.name in written:
                by_bytes.setdefault(_key(array), []).append(tensor.name)
        order = {t.name: i for i, t in enumerate(trainable.graph.initializer)}
        module = convert(trainable)
        # Every float tensor of the module that is one initializer of the graph, by its bytes.
        self.initializer_of: dict[str, str] = {}
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            names = by_bytes.get(_key(tensor.detach().cpu().numpy()), [])
            if len(names) == 1 and not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                self.initializer_of[name] = names[0]
        # Buffers onnx2torch made of initializers (MatMul and Add operands) become parameters to train.
        for name in list(self.initializer_of):
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            if attr in owner._buffers:
                value = owner._buffers.pop(attr)
                owner.register_parameter(attr, torch.nn.Parameter(value.clone()))
        ranked = sorted(self.initializer_of, key=lambda n: order[self.initializer_of[n]])
        frozen = set(ranked[: int(len(ranked) * min(max(freeze, 0.0), 1.0))])
        _, _, weight, bias = head(self.proto)
        head_names = {weight.name, bias.name}
        for name, param in module.named_parameters():
            # the head is always trained: new characters have nothing else to learn from
            param.requires_grad_(name in self.initializer_of and
                                 (name not in frozen or self.initializer_of[name] in head_names))
        module.eval()  # batch norm keeps its statistics; the inference graph has no dropout
        self.module = module
        self.index = {ch: i + 1 for i, ch in enumerate(self.charset)}
        self.space = len(self.charset) + 1
        self.decoder = CTCDecoder(self.charset)

    # -- data --------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Class indices of a text (blank 0, characters 1.., the space last); unknown characters dropped."""
        return [self.space if ch == " " else self.index[ch] for ch in " ".join(text.split())
                if ch == " " or ch in self.index]

    def tensors(self, images: Sequence[np.ndarray], config: RecognitionConfig):
        """A batch as the recognizer makes it, and each line's share of the padded width."""
        torch = _torch()[0]
        resized = [normalise(resize_to_height(image, config.image_height)) for image in images]
        step = math.lcm(config.width_step, self.multiple)
        width = max(padded_width(r.shape[1], config.min_width, step) for r in resized)
        batch = batch_tensor(resized, config.image_height, width)
        return torch.from_numpy(batch).to(self.device), [r.shape[1] / width for r in resized]

    @property
    def device(self):
        return next(self.module.parameters()).device

    # -- weights -----------------------------------------------------------------------------------

    def trainable(self) -> list:
        return [p for p in self.module.parameters() if p.requires_grad]

    def state(self) -> dict[str, Any]:
        """The trained tensors by module name (what a checkpoint keeps)."""
        return {name: tensor.detach().clone() for name, tensor in self.module.state_dict().items()
                if name in self.initializer_of}

    def load_state(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state, strict=False)

    def write(self, path: Path) -> ModelFile:
        """The graph with the module's current weights and the new charset, saved as an ONNX file."""
        import onnx
        from onnx import numpy_helper

        proto = copy.deepcopy(self.proto)
        tensors = {t.name: t for t in proto.graph.initializer}
        for name, value in self.module.state_dict().items():
            target = self.initializer_of.get(name)
            if target is not None:
                array = value.detach().cpu().numpy().astype(numpy_helper.to_array(tensors[target]).dtype)
                tensors[target].CopyFrom(numpy_helper.from_array(array, target))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
        return ModelFile(path.name, path, files_sha256(path))

    # -- reading -----------------------------------------------------------------------------------

    def read(self, samples: Sequence[LineSample], config: RecognitionConfig) -> list[str]:
        """Greedy CTC readings of the lines by the torch module, batched as the recognizer batches them."""
        torch = _torch()[0]

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return torch.softmax(self.module(torch.from_numpy(batch).to(self.device)), dim=2).cpu().numpy()

        return read_lines(run, self.decoder, samples, config)


def read_lines(run: Callable[[np.ndarray], np.ndarray], decoder: CTCDecoder, samples: Sequence[LineSample],
               config: RecognitionConfig) -> list[str]:
    """Greedy CTC readings of the lines by ``run`` (a batch in, ``(N, T, C)`` probabilities out), with the
    recognizer's preprocessing and batching (each line padded to its own width rounded to ``width_step``)."""
    resized = [normalise(resize_to_height(s.image, config.image_height)) for s in samples]
    texts = [""] * len(samples)
    for batch in plan_buckets([r.shape[1] for r in resized], config.batch_size, config.max_batch_pixels,
                              config.width_step, config.image_height, config.min_width):
        width = padded_width(resized[batch[0]].shape[1], config.min_width, config.width_step)
        probs = run(batch_tensor([resized[i] for i in batch], config.image_height, width))
        for i, reading in zip(batch, decoder(probs)):
            texts[i] = reading.text
    return texts


def onnx_readings(model: ModelFile, samples: Sequence[LineSample], config: RecognitionConfig) -> list[str]:
    """The lines as ONNX Runtime reads them with the model file (the check of an exported model)."""
    from pipeline.config import EngineConfig
    from pipeline.models.engine import create_engine
    from pipeline.models.zoo import model_metadata

    engine = create_engine(model, EngineConfig(name="onnxruntime"))
    return read_lines(engine, CTCDecoder.from_metadata(model_metadata(model)), samples, config)


# -- data helpers ----------------------------------------------------------------------------------


def split_by_group(samples: Sequence[LineSample], fraction: float, seed: int = 0
                   ) -> tuple[list[LineSample], list[LineSample]]:
    """(train, validation): whole documents held out, about ``fraction`` of the lines, at random."""
    groups = sorted({s.group for s in samples})
    if len(groups) < 2:
        raise ValueError("a validation split by document needs lines from two documents or more "
                         "(or give a validation set)")
    random.Random(seed).shuffle(groups)
    target, held, count = fraction * len(samples), set(), 0
    sizes = {g: sum(1 for s in samples if s.group == g) for g in groups}
    for g in groups:
        if count >= target or len(held) == len(groups) - 1:
            break
        held.add(g)
        count += sizes[g]
    return [s for s in samples if s.group not in held], [s for s in samples if s.group in held]


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A line image as a slightly different scan of it: blur, noise, a small rotation, a stretch."""
    out = image
    h, w = out.shape[:2]
    if rng.random() < 0.5:
        scale = rng.uniform(0.85, 1.15)
        out = cv2.resize(out, (max(1, int(round(w * scale))), h), interpolation=cv2.INTER_LINEAR)
        h, w = out.shape[:2]
    if rng.random() < 0.3:
        angle = rng.uniform(-1.5, 1.5)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out = cv2.warpAffine(out, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < 0.3:
        noise = rng.normal(0.0, rng.uniform(3.0, 10.0), out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return out


def batches_of(samples: Sequence[LineSample], size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of lines of similar width (less padding), in random order."""
    order = sorted(range(len(samples)), key=lambda i: samples[i].image.shape[1] / max(samples[i].image.shape[0], 1))
    batches = [order[k : k + size] for k in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def cer_counts(predictions: Sequence[str], samples: Sequence[LineSample]) -> tuple[int, int]:
    """(character edit errors, characters) of the readings against the lines' texts, spacing aside
    as ``folio eval`` compares them."""
    from rapidfuzz.distance import Levenshtein

    errors = chars = 0
    for pred, sample in zip(predictions, samples):
        truth = " ".join(sample.text.split())
        errors += Levenshtein.distance(" ".join(pred.split()), truth)
        chars += len(truth)
    return errors, chars


# -- training --------------------------------------------------------------------------------------


def train_epoch(recognizer: Recognizer, module, optimizer, samples: Sequence[LineSample],
                batches: Sequence[Sequence[int]], config: RecognitionConfig, rng: np.random.Generator | None,
                on_batch: Callable[[float], None] | None = None, scheduler=None) -> float:
    """One pass over ``batches`` of ``samples`` (``module``: the recognizer's, or a data-parallel wrapper
    of it); returns the mean CTC loss. ``scheduler`` steps after every batch."""
    torch = _torch()[0]
    total, count = 0.0, 0
    for batch in batches:
        images = [augment(samples[i].image, rng) if rng is not None else samples[i].image for i in batch]
        targets = [recognizer.encode(samples[i].text) for i in batch]
        keep = [k for k, t in enumerate(targets) if t]
        if not keep:
            continue
        x, shares = recognizer.tensors([images[k] for k in keep], config)
        logits = module(x)  # (N, T, C)
        frames = logits.shape[1]
        log_probs = torch.log_softmax(logits.float(), dim=2).transpose(0, 1)
        lengths = torch.tensor([max(1, min(frames, math.ceil(frames * shares[k]))) for k in range(len(keep))])
        flat = torch.tensor([c for k in keep for c in targets[k]], dtype=torch.long, device=logits.device)
        target_lengths = torch.tensor([len(targets[k]) for k in keep])
        loss = torch.nn.functional.ctc_loss(log_probs, flat, lengths, target_lengths, blank=0,
                                            reduction="mean", zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], 5.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach()) * len(keep)
        count += len(keep)
        if on_batch is not None:
            on_batch(float(loss.detach()))
    return total / max(count, 1)


def schedule(steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The learning rate's factor at each step: up from a tenth over the first epoch (a pretrained
    model's first large steps undo what it knows), then down along a cosine to a tenth at the end."""
    warmup = max(1, steps_per_epoch)
    total = max(warmup + 1, steps_per_epoch * epochs)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

    return factor


@dataclass
class FitResult:
    """What :func:`fit` did: each epoch, the baseline and best validation CER, and where it stopped."""

    history: list[EpochResult] = field(default_factory=list)
    baseline_cer: float = 0.0
    best_cer: float = 0.0
    best_epoch: int = 0
    stopped_early: bool = False
    resumed_from: int = 0
    seconds: float = 0.0


def fit(recognizer: Recognizer, train: Sequence[LineSample], val: Sequence[LineSample], config: RecognitionConfig,
        options: TrainOptions, checkpoint: Path | None = None,
        progress: Callable[[str, int, int, dict], None] | None = None) -> FitResult:
    """Train ``recognizer`` in place on this machine, ending with its best epoch's weights.

    Args:
        checkpoint: saved after every epoch (:func:`train_loop`'s state); when the file exists,
            training resumes from it.
        progress: as :func:`train_loop`'s.
    """
    torch = _torch()[0]
    saved = None
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        log.info("resuming from %s after epoch %d", checkpoint, len(saved["history"]))

    def save(state: dict) -> None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, checkpoint)

    return train_loop(recognizer, train, val, config, options, saved=saved,
                      save=save if checkpoint is not None else None, progress=progress)


def train_loop(recognizer: Recognizer, train: Sequence[LineSample], val: Sequence[LineSample],
               config: RecognitionConfig, options: TrainOptions, *, module=None, rank: int = 0, world: int = 1,
               saved: dict | None = None, save: Callable[[dict], None] | None = None,
               progress: Callable[[str, int, int, dict], None] | None = None) -> FitResult:
    """The epochs of a training run, on one machine or as one of ``world`` data-parallel workers: train,
    validate, keep the best weights, stop after ``options.patience`` epochs without a better validation
    CER, and end with the best weights loaded.

    Args:
        module: what the batches go through: the recognizer's module (the default) or a data-parallel
            wrapper of it.
        rank / world: this worker's place among ``world`` workers; each epoch's batches are dealt
            round-robin, as many to each, and every worker computes the same validation CER.
        saved: a state ``save`` was given, to resume from (the same base model and charset).
        save: called after every epoch with the state to resume from: weights, optimizer, scheduler,
            best weights, history, baseline and best CER, charset, base model, seconds so far.
        progress: called as ``(phase, step, total, info)``: ``("batch", k, n, {"loss"})`` and
            ``("epoch", epoch, epochs, {"loss", "val_cer", "best_cer"})``.
    """
    torch = _torch()[0]
    torch.manual_seed(options.seed)
    torch.set_num_threads(max(1, options.threads))
    module = module if module is not None else recognizer.module
    optimizer = torch.optim.AdamW(recognizer.trainable(), lr=options.learning_rate, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train) / options.batch_size / world)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(steps_per_epoch, options.epochs))
    result = FitResult()
    start = 1
    best_state = recognizer.state()
    t0 = time.perf_counter()
    if saved is not None:
        if saved.get("charset") != recognizer.charset or saved.get("base") != recognizer.base.sha256:
            raise ModelError("the checkpoint was made from another model or charset; remove it to start again")
        recognizer.load_state(saved["state"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best_state = saved["best_state"]
        result.history = [EpochResult(**e) for e in saved["history"]]
        result.baseline_cer, result.best_cer, result.best_epoch = saved["baseline"], saved["best"], saved["best_epoch"]
        start = result.resumed_from = len(result.history) + 1
    else:
        result.baseline_cer = result.best_cer = validation_cer(recognizer, val, config)
    waited = sum(1 for e in result.history if e.epoch > result.best_epoch)
    for epoch in range(start, options.epochs + 1):
        if waited >= options.patience:
            result.stopped_early = True
            break
        e0 = time.perf_counter()
        batches = batches_of(train, options.batch_size, random.Random(options.seed * 1000 + epoch))
        if len(batches) < world:
            batches = (batches * world)[:world]
        batches = batches[rank : len(batches) - len(batches) % world : world]
        rng = np.random.default_rng(options.seed * 1000 + epoch + 7919 * rank) if options.augment else None
        steps = iter(range(1, len(batches) + 1))

        def on_batch(loss: float) -> None:
            if progress is not None:
                progress("batch", next(steps), len(batches), {"loss": loss})

        loss = train_epoch(recognizer, module, optimizer, train, batches, config, rng, on_batch, scheduler)
        val_cer = validation_cer(recognizer, val, config)
        result.history.append(EpochResult(epoch, loss, val_cer, time.perf_counter() - e0))
        if val_cer < result.best_cer:
            result.best_cer, result.best_epoch, best_state = val_cer, epoch, recognizer.state()
            waited = 0
        else:
            waited += 1
        if progress is not None:
            progress("epoch", epoch, options.epochs, {"loss": loss, "val_cer": val_cer, "best_cer": result.best_cer})
        if save is not None:
            save({"state": recognizer.state(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "best_state": best_state,
                  "history": [asdict(e) for e in result.history], "baseline": result.baseline_cer,
                  "best": result.best_cer, "best_epoch": result.best_epoch, "charset": recognizer.charset,
                  "base": recognizer.base.sha256, "seconds": time.perf_counter() - t0})
    recognizer.load_state(best_state)
    result.seconds = time.perf_counter() - t0
    return result


def validation_cer(recognizer: Recognizer, val: Sequence[LineSample], config: RecognitionConfig) -> float:
    """The recognizer's CER on the validation lines, characters compared exactly (``ſ`` is not ``s``)."""
    errors, chars = cer_counts(recognizer.read(val, config), val)
    return errors / max(chars, 1)


def report(destination: Path, **fields: Any) -> None:
    """Write the training report (JSON) atomically."""
    tmp = destination.with_name(destination.name + ".tmp")
    tmp.write_text(json.dumps(fields, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__")
                              else str(o)))
    os.replace(tmp, destination)
