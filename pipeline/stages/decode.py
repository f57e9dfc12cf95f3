"""The decode stage: one planned input in, its items out: a :class:`~pipeline.types.PageImage` per
decoded page (or an error :class:`~pipeline.types.Page` for a page that would not decode), then the
input's :class:`~pipeline.types.SourceDocument`.

A PDF page whose text the file holds (``decode.pdf_text: auto``) is read here,
not rendered: it leaves as a finished :class:`~pipeline.types.Page`
(``text_source`` ``pdf``), in reading order, and skips OCR.

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
from pipeline.io.decode import MIME_PDF, open_document
from pipeline.io.storage import Storage, get_storage
from pipeline.stages.layout import order_lines
from pipeline.stages.textlayer import ocr_window
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
                pages = self._pdf_pages(ref.uri, doc.doc_id, document) \
                    if document.mime == MIME_PDF and self.config.decode.pdf_text == "auto" else \
                    (self._image_page(ref.uri, doc.doc_id, *page) for page in document.pages())
                for item in pages:
                    ms = (time.perf_counter() - t1) * 1000
                    decode_ms += ms
                    doc.pages_seen += 1
                    if isinstance(item, PageImage):
                        item.timings = PageTimings(decode=ms)
                    else:
                        item = item.replace(timings=PageTimings(decode=ms))
                    yield item
                    t1 = time.perf_counter()
        except FolioError as e:
            doc.failure = Failure(e.code, e.message, e.retryable)
        except Exception as e:  # noqa: BLE001 - a decoder bug must cost one document, not the run
            log.exception("unexpected error decoding %s", ref.uri)
            err = FolioError(f"unexpected {type(e).__name__} while decoding: {e}")
            doc.failure = Failure(err.code, err.message, err.retryable)
        doc.decode_ms = decode_ms
        yield doc

    @staticmethod
    def _image_page(key: str, doc_id: str, index: int, image, dpi, error: FolioError | None) -> Page | PageImage:
        if error is not None:
            return Page(key, doc_id, index, status="error", error_code=error.code, error_message=error.message)
        return PageImage(key, doc_id, index, image, dpi)

    def _pdf_pages(self, key: str, doc_id: str, document) -> Iterator[Page | PageImage]:
        """A PDF's pages with ``decode.pdf_text: auto``: a page whose text the file holds is read from it
        (a finished :class:`~pipeline.types.Page`, nothing rendered); of a page with image regions besides,
        the window around them goes to OCR, its text attached; any other page is rendered for OCR as a
        scan (:mod:`pipeline.io.pdftext` decides)."""
        for index in range(document.page_count):
            try:
                layer = document.text_layer(index)
                if layer.source == "pdf":
                    blocks, text = order_lines(layer.lines, layer.height, self.config.layout.reading_order)
                    yield Page(key, doc_id, index, layer.width, layer.height, layer.dpi, blocks=blocks, text=text,
                               text_source="pdf")
                    continue
                log.debug("page %d of %s goes to OCR (%s): %s", index, key, layer.source, layer.reason)
                image, dpi = document.page(index)
            except FolioError as e:
                yield self._image_page(key, doc_id, index, None, None, e)
                continue
            if layer.source == "pdf+ocr":
                window, shift = ocr_window(image, layer.ocr_regions)
                yield PageImage(key, doc_id, index, window, dpi, width=image.shape[1], height=image.shape[0],
                                geometry=shift, text_source="pdf+ocr", text_layer=layer.lines,
                                ocr_regions=layer.ocr_regions)
            else:
                yield PageImage(key, doc_id, index, image, dpi)
