"""One exception tree for Folio, with machine-readable codes.

Every failure that can happen to a single document is a :class:`FolioError`
subclass carrying a stable ``code`` (written to the ``error_code`` column) and
a ``retryable`` flag (a rerun may succeed: storage hiccups, not corrupt files).
Foreign exceptions (PIL, pypdfium2, ONNX Runtime, boto3) are translated at the
edge with ``raise ... from e`` so the cause stays in the traceback, and they are
turned into row status values by the stages (:mod:`pipeline.stages`).
"""

from __future__ import annotations

__all__ = [
    "FolioError",
    "InputError",
    "EmptyFile",
    "UnsupportedFormat",
    "CorruptFile",
    "EncryptedPdf",
    "ImageTooLarge",
    "TooManyPages",
    "FileTooLarge",
    "StorageError",
    "ModelError",
    "ConfigError",
    "OcrError",
    "WorkerLost",
    "ClusterUnavailable",
    "RETRYABLE_CODES",
]


class FolioError(Exception):
    """Base class of every error Folio raises on purpose.

    Attributes:
        code: stable snake_case identifier written to ``error_code``.
        retryable: whether running again could succeed without changing the input.
    """

    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InputError(FolioError):
    """The document itself cannot be processed; retrying will not help."""

    code = "bad_input"


class EmptyFile(InputError):
    code = "empty_file"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class CorruptFile(InputError):
    """Truncated or malformed file. ``code`` is ``corrupt_pdf`` or ``corrupt_image``."""

    code = "corrupt_file"


class EncryptedPdf(InputError):
    code = "encrypted_pdf"


class ImageTooLarge(InputError):
    """Pixel count over ``decode.max_pixels`` (decompression-bomb guard)."""

    code = "image_too_large"


class TooManyPages(InputError):
    code = "too_many_pages"


class FileTooLarge(InputError):
    code = "file_too_large"


class StorageError(FolioError):
    """Reading or writing the object store failed."""

    code = "storage_error"
    retryable = True


class ModelError(FolioError):
    """A model file is missing, corrupt (sha256 mismatch) or cannot be loaded."""

    code = "model_error"


class ConfigError(FolioError):
    code = "config_error"


class OcrError(FolioError):
    """Detection or recognition failed on a page."""

    code = "ocr_failed"
    retryable = True


class WorkerLost(FolioError):
    """The OCR worker died on this page every time it was tried (killed for memory, a crash in
    native code). Not retried by a rerun: reprocess it deliberately, e.g. with more memory."""

    code = "worker_lost"


class ClusterUnavailable(FolioError):
    """The Ray cluster a run was pointed at cannot be used: nothing answers at its address, it refused
    this process (token authentication, a Ray version it does not match), or it has no room for the
    run's actors. The whole run fails (exit code 3); the message says what to set or check."""

    code = "cluster_unavailable"
    retryable = True


#: Error codes whose documents are retried by a rerun instead of being skipped.
RETRYABLE_CODES = frozenset({StorageError.code, OcrError.code, FolioError.code})
