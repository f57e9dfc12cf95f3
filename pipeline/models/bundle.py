"""The PP-OCR models a worker loads once: which files a config uses, and the predictors built on them.

:func:`model_files` names the verified files by role (what the ``models``
column records and the fingerprint hashes); :class:`OcrModels` builds the
detector, the recognizer and the line classifiers on them, once per process,
for the dewarp and OCR stages to share.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import FolioConfig
from pipeline.models.detection import TextDetector
from pipeline.models.engine import create_engine
from pipeline.models.recognition import ALTERNATIVES, LineClassifier, TextRecognizer, charset_classes
from pipeline.models.zoo import ModelFile, resolve_model

__all__ = ["OcrModels", "detection_batch_pages", "model_files"]

#: Pages per detection call on a GPU when ``detection.batch_pages`` is null.
GPU_DETECTION_BATCH = 16


def detection_batch_pages(config: FolioConfig, engine) -> int:
    """``detection.batch_pages``, or by default 16 on an engine that computes on CUDA, else 1."""
    if config.detection.batch_pages is not None:
        return config.detection.batch_pages
    return GPU_DETECTION_BATCH if str(getattr(engine, "device", "cpu")).startswith("cuda") else 1


def model_files(config: FolioConfig) -> dict[str, ModelFile]:
    """The verified model files a config uses, by role.

    Raises:
        ModelError: a file is missing or its bytes are not the expected ones.
    """
    d = config.engine.model_dir
    files = {
        "detection": resolve_model(config.detection.model, d),
        "recognition": resolve_model(config.recognition.model, d),
    }
    if config.classifier.enabled:
        files["classifier"] = resolve_model(config.classifier.model, d)
    if config.dewarp.enabled and config.dewarp.orientation:  # the dewarp step's quick way-up check
        files["orientation"] = resolve_model(config.classifier.model, d)
    return files


@dataclass
class OcrModels:
    """The loaded models of one worker.

    Attributes:
        files: the model files by role.
        detector: text lines on a page.
        recognizer: text of line crops.
        classifier: the 0/180 degree line classifier, when ``classifier.enabled``.
        orientation: the same model for the dewarp step's way-up check (the classifier itself when
            both are on), when dewarping checks orientation.
    """

    files: dict[str, ModelFile]
    detector: TextDetector
    recognizer: TextRecognizer
    classifier: LineClassifier | None = None
    orientation: LineClassifier | None = None

    @classmethod
    def load(cls, config: FolioConfig) -> OcrModels:
        """Build every model ``config`` uses on the engine it names.

        With a restricted ``recognition.charset`` the recognition model's head computes only
        the classes it allows, and the engine returns each frame's best class (and, for the
        lexicon, the next-best ones) rather than every class's probability.

        Raises:
            ModelError: a model is missing or cannot be loaded.
        """
        files = model_files(config)
        det_engine = create_engine(files["detection"], config.engine)
        detector = TextDetector(det_engine, config.detection, detection_batch_pages(config, det_engine))
        rec = files["recognition"]
        recognizer = TextRecognizer(
            create_engine(rec, config.engine, charset_classes(rec, config.recognition.charset), best_class=True,
                          alternatives=ALTERNATIVES if config.recognition.lexicon else 0),
            config.recognition,
        )
        classifier = (
            LineClassifier(create_engine(files["classifier"], config.engine), config.classifier)
            if "classifier" in files else None
        )
        orientation = None
        if "orientation" in files:
            orientation = classifier or LineClassifier(create_engine(files["orientation"], config.engine),
                                                       config.classifier)
        return cls(files, detector, recognizer, classifier, orientation)
