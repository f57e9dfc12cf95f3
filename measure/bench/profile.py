"""Where a timed Folio run spends its time, by part: decode, dewarp, detection, recognition,
post-processing, layout, write.

:class:`RunProfile` wraps what a bench worker runs, in that process only (no
production code pays for it): the decode stage's generator, each step of the
page stage, the engines of the OCR models, and the Parquet writer. An engine
call counts for ``detection`` or ``recognition`` (the line classifiers count
as recognition); the rest of a step's time is its own part (``dewarp``,
``layout``), and the OCR step's rest is ``post_processing`` (resizing and
padding, DB boxes, crops, CTC decoding, word boxes). Parts run in several
threads at once (decode ahead, OCR threads), so they are thread-seconds:
their sum can exceed the wall time, and the bench reports each per page and
as a share of the sum. On CUDA an engine call ends when its output has
reached the host, so engine time is the GPU's work plus its launch and copy.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["PARTS", "RunProfile"]

#: The parts, in the order a page meets them.
PARTS = ("decode", "dewarp", "detection", "recognition", "post_processing", "layout", "write")


class _TimedEngine:
    """An engine whose calls add to a part (and to the calling thread's engine time)."""

    def __init__(self, engine, part: str, profile: RunProfile):
        self._engine = engine
        self._part = part
        self._profile = profile

    def __call__(self, inputs):
        t0 = time.perf_counter()
        try:
            return self._engine(inputs)
        finally:
            self._profile._engine_time(self._part, time.perf_counter() - t0)

    def __getattr__(self, name):  # model, classes, best_class, device, metadata(), ...
        return getattr(self._engine, name)


class RunProfile:
    """Thread-seconds per part of the runs made while :meth:`installed`."""

    def __init__(self):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._lock = threading.Lock()
        self._local = threading.local()

    def add(self, part: str, seconds: float) -> None:
        with self._lock:
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def _engine_time(self, part: str, seconds: float) -> None:
        self.add(part, seconds)
        self._local.engine = getattr(self._local, "engine", 0.0) + seconds

    def instrument(self, stage):
        """Time the steps of a page stage (:class:`~pipeline.stages.factory.PageStage`) and the engines
        of its OCR models; returns the stage."""
        for name, step in getattr(stage, "steps", []):
            models = getattr(step, "models", None)
            if models is not None and hasattr(models, "detector"):
                self._wrap_engines(models)
        stage.steps = [(name, self._timed_step(name, step)) for name, step in getattr(stage, "steps", [])]
        return stage

    def _wrap_engines(self, models) -> None:
        for holder, part in ((models.detector, "detection"), (models.recognizer, "recognition"),
                             (models.classifier, "recognition"), (models.orientation, "recognition")):
            if holder is not None and not isinstance(holder.engine, _TimedEngine):
                holder.engine = _TimedEngine(holder.engine, part, self)

    def _timed_step(self, name: str, step: Callable) -> Callable:
        part = "post_processing" if name == "ocr" else name

        def timed(batch):
            engines0 = getattr(self._local, "engine", 0.0)
            t0 = time.perf_counter()
            try:
                return step(batch)
            finally:
                engines = getattr(self._local, "engine", 0.0) - engines0
                self.add(part, time.perf_counter() - t0 - engines)

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[RunProfile]:
        """Time the decode stage and the Parquet writer of every run made inside the block."""
        from pipeline.output.parquet import DatasetWriter
        from pipeline.stages.decode import DecodeStage

        decode, write = DecodeStage.__call__, DatasetWriter.write_shard
        profile = self

        def timed_decode(stage, ref, wanted=None):
            items = decode(stage, ref, wanted=wanted)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    profile.add("decode", time.perf_counter() - t0)
                    return
                profile.add("decode", time.perf_counter() - t0)
                yield item

        def timed_write(writer, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return write(writer, *args, **kwargs)
            finally:
                profile.add("write", time.perf_counter() - t0)

        DecodeStage.__call__, DatasetWriter.write_shard = timed_decode, timed_write
        try:
            yield self
        finally:
            DecodeStage.__call__, DatasetWriter.write_shard = decode, write

    def per_page(self, pages: int) -> dict[str, float]:
        """Milliseconds per page of each part."""
        return {part: round(s * 1000 / max(pages, 1), 2) for part, s in self.seconds.items()}
