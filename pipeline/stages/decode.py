"""The decode stage: one planned input in, its items out: a :class:`~pipeline.types.PageImage` per
decoded page (or an error :class:`~pipeline.types.Page` for a page that would not decode), then the
input's :class:`~pipeline.types.SourceDocument`.

Nothing raises for a bad input: a read or decode failure is the source
document's ``failure``, a bad page an error page. An input larger than
``decode.max_file_bytes`` is refused from the size the listing (or the object
store, or ``stat``) gives, before a byte of it is read.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator

from pipeline.config import FolioConfig
from pipeline.errors import FileTooLarge, FolioError
from pipeline.io.decode import open_document
from pipeline.io.storage import Storage, get_storage
from pipeline.types import DocumentRef, Failure, Item, Page, PageImage, PageTimings, SourceDocument

__all__ = ["DecodeStage", "unread_doc_id"]

log = logging.getLogger(__name__)


def unread_doc_id(ref: DocumentRef) -> str:
    """The ``doc_id`` of an input whose bytes were not read: a hash of its URI, ETag and size, so it
    changes when the object does."""
    return hashlib.sha256(f"{ref.uri}\n{ref.etag or ''}\n{ref.size or 0}".encode()).hexdigest()


class DecodeStage:
    """Read, hash and decode inputs (a Ray decode task, or the local runner's loop)."""

    def __init__(self, config: FolioConfig):
        self.config = config
        self._storages: dict[bool, Storage] = {}

    def _storage(self, uri: str) -> Storage:
        remote = "://" in uri
        if remote not in self._storages:
            self._storages[remote] = get_storage(uri, self.config.storage)
        return self._storages[remote]

    def __call__(self, ref: DocumentRef, wanted: Callable[[str, str], bool] | None = None) -> Iterator[Item]:
        """The items of one input: its pages, then its :class:`~pipeline.types.SourceDocument`.

        Args:
            ref: the input.
            wanted: ``wanted(doc_id, uri)``; when it says no (already done, or a duplicate of
                another input) the pages are not decoded.
        """
        limit = self.config.decode.max_file_bytes
        t0 = time.perf_counter()
        try:
            if ref.size is not None and ref.size > limit:
                raise FileTooLarge(f"file is {ref.size} bytes, larger than decode.max_file_bytes={limit}")
            data = self._storage(ref.uri).read(ref.uri, max_bytes=limit)
        except Exception as e:  # noqa: BLE001 - an input that cannot be read is its own row
            error = e if isinstance(e, FolioError) else FolioError(f"unexpected {type(e).__name__} reading: {e}")
            if not isinstance(e, FolioError):
                log.exception("unexpected error reading %s", ref.uri)
            # No bytes, so no content hash: the id comes from what the listing knows.
            yield SourceDocument(ref.uri, unread_doc_id(ref), ref.etag, ref.size or 0,
                                 failure=Failure(error.code, error.message, error.retryable))
            return
        doc = SourceDocument(ref.uri, hashlib.sha256(data).hexdigest(), ref.etag, len(data),
                             read_ms=(time.perf_counter() - t0) * 1000)
        if wanted is not None and not wanted(doc.doc_id, ref.uri):
            doc.decoded = False
            yield doc
            return
        decode_ms = 0.0
        t1 = time.perf_counter()
        try:
            with open_document(data, self.config.decode) as document:
                del data
                doc.mime, doc.page_count = document.mime, document.page_count
                for index, image, dpi, error in document.pages():
                    ms = (time.perf_counter() - t1) * 1000
                    decode_ms += ms
                    doc.pages_seen += 1
                    if error is not None:
                        yield Page(ref.uri, doc.doc_id, index, status="error", error_code=error.code,
                                   error_message=error.message, timings=PageTimings(decode=ms))
                    else:
                        yield PageImage(ref.uri, doc.doc_id, index, image, dpi, timings=PageTimings(decode=ms))
                    t1 = time.perf_counter()
        except FolioError as e:
            doc.failure = Failure(e.code, e.message, e.retryable)
        except Exception as e:  # noqa: BLE001 - a decoder bug must cost one document, not the run
            log.exception("unexpected error decoding %s", ref.uri)
            err = FolioError(f"unexpected {type(e).__name__} while decoding: {e}")
            doc.failure = Failure(err.code, err.message, err.retryable)
        doc.decode_ms = decode_ms
        yield doc
