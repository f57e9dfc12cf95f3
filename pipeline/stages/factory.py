"""The page stage an OCR worker runs, built from the config in one place.

:func:`create_page_stage` turns ``engine.name`` (or ``plugins.stage``) into a
:class:`PageStage`: the stages one worker runs on a batch of decoded pages, in
order, and a last step that maps every polygon to original pixels:

- ``onnxruntime``, ``torch`` (and ``auto``, resolved by the run): dewarp
  (with ``dewarp.enabled``), OCR and layout, sharing one set of models;
- ``tesseract``: the Tesseract stage, then layout;
- ``plugins.stage`` (``module:callable``): the user's factory builds a stage
  that takes the place of all of them (custom engines, fault injection in tests).

A ``pdf+ocr`` page (a PDF page whose text is read from the file, except in
its image regions) gets the file's lines back as soon as a step has read it
(:func:`~pipeline.stages.textlayer.merge_text_layer`), before layout.

A stage that raises on a batch is run again page by page, and a page it
raises on becomes that page's error row: whatever fails, the other pages of
the batch go on.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence

from pipeline.config import FolioConfig
from pipeline.errors import ConfigError, FolioError
from pipeline.imaging.geometry import page_to_original
from pipeline.models.zoo import ModelFile
from pipeline.stages.textlayer import merge_text_layer
from pipeline.types import Page, PageImage

__all__ = ["PageStage", "create_page_stage", "stage_models"]

log = logging.getLogger(__name__)

#: A stage of the page stage: a batch of page images or pages in, one item each out, in order.
Step = Callable[[Sequence], list]


class PageStage:
    """Named steps run in order on a batch of :class:`~pipeline.types.PageImage` objects, giving one
    :class:`~pipeline.types.Page` each, its polygons in original pixels.

    Attributes:
        steps: ``(name, step)`` pairs; each step takes the pages still going (failed ones skip
            the steps after their failure) and returns one item for each, in order.
        models: the model files the steps load, by role.
    """

    def __init__(self, steps: Sequence[tuple[str, Step]], models: dict[str, ModelFile] | None = None):
        self.steps = list(steps)
        self.models = dict(models or {})

    def __call__(self, pages: Sequence[PageImage]) -> list[Page]:
        items: list = list(pages)
        for name, step in self.steps:
            going = [i for i, item in enumerate(items) if not (isinstance(item, Page) and item.status != "ok")]
            if not going:
                break
            for i, out in zip(going, _run_step(name, step, [items[i] for i in going])):
                if isinstance(items[i], PageImage) and isinstance(out, Page):  # read: join the file's text
                    out = merge_text_layer(items[i], out)
                items[i] = out
        done = []
        for item in items:
            if isinstance(item, PageImage):  # no step made a page of it
                item = item.failed(FolioError.code, "the page stage returned no page for it")
            done.append(_finish(item))
        return done


def _run_step(name: str, step: Step, batch: list) -> list:
    """``step(batch)``; on an exception, each item alone, and the items it still raises on failed."""
    try:
        out = list(step(batch))
        if len(out) != len(batch):
            raise RuntimeError(f"the {name} stage returned {len(out)} items for {len(batch)}")
        return out
    except Exception as e:  # noqa: BLE001 - whatever a stage raises is its pages' rows, never the batch's
        if len(batch) == 1:
            log.warning("the %s stage failed on page %s of %s", name, batch[0].page_index, batch[0].key,
                        exc_info=not isinstance(e, FolioError))
            return [_failed(batch[0], name, e)]
        log.warning("the %s stage failed on a batch of %d pages (%s: %s); running them one by one",
                    name, len(batch), type(e).__name__, e)
        return [out for item in batch for out in _run_step(name, step, [item])]


def _failed(item: PageImage | Page, name: str, error: Exception) -> Page:
    if isinstance(error, FolioError):
        code, message = error.code, error.message
    else:
        code, message = FolioError.code, f"unexpected {type(error).__name__} in the {name} stage: {error}"
    if isinstance(item, PageImage):
        return item.failed(code, message)
    return item.replace(status="error", error_code=code, error_message=message, blocks=(), text="", geometry=None)


def _finish(page: Page) -> Page:
    """The page with its polygons in original pixels; a page that cannot be mapped fails."""
    try:
        return page_to_original(page)
    except Exception as e:  # noqa: BLE001 - one page's row
        log.warning("mapping page %s of %s to original pixels failed", page.page_index, page.key, exc_info=True)
        return _failed(page, "dewarp", e)


def create_page_stage(config: FolioConfig) -> Callable[[Sequence[PageImage]], list[Page]]:
    """The page stage ``plugins.stage`` or ``engine.name`` names; the one place a name becomes a stage.

    Raises:
        ConfigError: an unknown engine, or a plugin that cannot be loaded.
        ModelError: a model the engine needs is missing or cannot be loaded.
    """
    if config.plugins.stage:
        stage = _plugin_factory(config.plugins.stage)(config)
        return PageStage([("plugin", stage)], getattr(stage, "models", None))
    name = config.engine.name
    if name == "tesseract":
        from pipeline.stages.layout import LayoutStage
        from pipeline.stages.tesseract import TesseractStage

        tesseract = TesseractStage(config)
        return PageStage([("tesseract", tesseract), ("layout", LayoutStage(config.layout.reading_order))],
                         tesseract.models)
    if name in ("onnxruntime", "torch", "auto"):
        from pipeline.models.bundle import OcrModels
        from pipeline.stages.dewarp import DewarpStage
        from pipeline.stages.layout import LayoutStage
        from pipeline.stages.ocr import OcrStage

        models = OcrModels.load(config)
        steps: list[tuple[str, Step]] = []
        if config.dewarp.enabled:
            steps.append(("dewarp", DewarpStage(config, models)))
        steps += [("ocr", OcrStage(config, models)), ("layout", LayoutStage(config.layout.reading_order))]
        return PageStage(steps, models.files)
    raise ConfigError(f"unknown engine {name!r}")


def _plugin_factory(path: str):
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"plugins.stage must be module:callable, got {path!r}")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"plugins.stage {path!r} cannot be loaded: {e}") from e
    if not callable(factory):
        raise ConfigError(f"plugins.stage {path!r} is not callable")
    return factory


def stage_models(config: FolioConfig) -> dict[str, ModelFile]:
    """The models a run with ``config`` uses, by role, without loading them: those of the page stage of
    ``create_page_stage(config)``, and the fields stage's calibration table (``fields.enabled``).

    Raises:
        ModelError: a model file, the tesseract program or its language data is missing.
    """
    if config.engine.name == "tesseract":
        from pipeline.models.tesseract import tesseract_model_info

        models = tesseract_model_info(config)
    else:
        from pipeline.models.bundle import model_files

        models = model_files(config)
    if config.fields.enabled:
        from pipeline.stages.fields import calibration_model

        models = {**models, "fields": calibration_model()}
    return models
