"""The contract every layer shares: planned documents, the page model, what flows between stages,
and the tally of a run.

The page model is the one representation of a page from recognition to every
output::

    Page (doc_id, page_index, width, height, dpi, dewarp: what dewarping did, text_source)
      blocks: Block (kind, polygon)
        lines: Line (text, confidence, polygon, source)
          words: Word (text, confidence, polygon)

Polygons are four (x, y) corners, clockwise from the top-left one, in pixels
of the original page image, whatever dewarping did; the one exception is a
page between the stages of one OCR worker, which carries the ``geometry`` of
the dewarped image it was read from until the last step maps it back
(``Page.geometry``). Parquet stores the model nested in ``pages.lines``
(:mod:`pipeline.schema` converts, in one place); the exports and the invoice
fields read it.

A run is a stream of items: a :class:`SourceDocument` per input (what reading
and decoding it found), a :class:`PageImage` per decoded page on its way to
OCR, and a :class:`Page` per page that is done (read, or failed). The runners
move items between stages; on Ray they cross processes as they are.

Every class here is a plain dataclass: picklable, and with no behaviour
beyond what follows from its fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "BLOCK_KINDS",
    "TEXT_SOURCES",
    "Polygon",
    "Box",
    "DocumentRef",
    "Word",
    "Line",
    "Block",
    "Dewarp",
    "PageTimings",
    "Page",
    "PageImage",
    "Failure",
    "FIELDS",
    "REQUIRED_FIELDS",
    "Field",
    "LineItem",
    "DocumentFields",
    "SourceDocument",
    "Item",
    "DoneIndex",
    "RunTally",
    "bounding_polygon",
    "polygon_box",
    "box_polygon",
]

#: Four (x, y) corners, clockwise from the top-left one.
Polygon = tuple[tuple[float, float], ...]


#: An axis-aligned box: (x0, y0, x1, y1), left, top, right, bottom.
Box = tuple[float, float, float, float]


def polygon_box(polygon: Polygon) -> Box:
    """The axis-aligned box around a polygon."""
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return min(xs), min(ys), max(xs), max(ys)


def box_polygon(box: Box) -> Polygon:
    """A box's four corners, clockwise from the top-left one."""
    x0, y0, x1, y1 = box
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def bounding_polygon(polygons: list[Polygon] | tuple[Polygon, ...]) -> Polygon | None:
    """The axis-aligned rectangle around some polygons (None for none)."""
    points = [p for poly in polygons for p in poly]
    return box_polygon(polygon_box(points)) if points else None


@dataclass(frozen=True)
class DocumentRef:
    """One input object, as planned before it is read.

    Attributes:
        uri: full local path or ``s3://bucket/key``.
        size: size in bytes when the listing knows it.
        etag: object-store ETag (or a local mtime-based stand-in) when known.
    """

    uri: str
    size: int | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Word:
    """One word of a line: characters between spaces, as the recognizer read them.

    Attributes:
        text: the word, without spaces.
        confidence: mean probability of its characters, 0..1.
        polygon: where its characters are, from the recognizer's frames and the ink.
        in_text: whether the word is in its line's text; False for a word with a character read below
            ``recognition.min_word_confidence``, kept (``recognition.low_confidence_words: keep``) for
            the exports that want every word read.
    """

    text: str
    confidence: float
    polygon: Polygon
    in_text: bool = True


#: Where a page's text comes from: OCR of its pixels, the PDF's own text (read from the file), or
#: both (the file's text plus OCR of the page's image regions).
TEXT_SOURCES = ("ocr", "pdf", "pdf+ocr")


@dataclass(frozen=True)
class Line:
    """One line of text: recognised, or read from a PDF's text.

    Attributes:
        text: the line's characters.
        confidence: mean probability of the characters the line's text is made of, 0..1 (1.0 for
            text read from the file).
        polygon: the line's quadrilateral.
        words: the line's words, left to right (with words left out of its text, see :class:`Word`).
        source: ``ocr`` (recognised on the page's pixels) or ``pdf`` (the file's own text).
    """

    text: str
    confidence: float
    polygon: Polygon
    words: tuple[Word, ...] = ()
    source: str = "ocr"

    @property
    def text_words(self) -> tuple[Word, ...]:
        """The words the line's text is made of (those ``in_text``)."""
        return tuple(w for w in self.words if w.in_text)


#: What a block can be: body text, a heading (a block of few lines much taller than the page's
#: text), a running header or footer, a page number, and marginalia (notes in a margin beside the
#: text; the layout stage does not find them yet, imported ground truth may have them).
BLOCK_KINDS = ("text", "heading", "header", "footer", "page-number", "marginalia")


@dataclass(frozen=True)
class Block:
    """Lines that belong together (a paragraph, a column), in reading order.

    Attributes:
        lines: the block's lines in reading order.
        kind: what the block is, one of :data:`BLOCK_KINDS`.
    """

    lines: tuple[Line, ...]
    kind: str = "text"

    @property
    def polygon(self) -> Polygon | None:
        """The rectangle around the block's lines."""
        return bounding_polygon([line.polygon for line in self.lines])


@dataclass(frozen=True)
class Dewarp:
    """What dewarping did to a page (the ``pages`` columns of the same names).

    Attributes:
        rotation: clockwise quarter turn (0, 90, 180, 270) that made the page upright.
        skew_deg: text angle removed, counterclockwise positive as displayed; 0.0 when left alone.
        quad: the page's corners in original pixels when its outline was found and flattened.
        curl_corrected: whether curved text lines were straightened.
        note: why a step left the page alone (not written to Parquet).
    """

    rotation: int = 0
    skew_deg: float = 0.0
    quad: Polygon | None = None
    curl_corrected: bool = False
    note: str | None = None


@dataclass(frozen=True)
class PageTimings:
    """Milliseconds spent on a page: decoding, dewarping, detection (which includes dewarping in
    the ``timings_ms.detect`` column) and its share of the batch's recognition."""

    decode: float | None = None
    dewarp: float | None = None
    detect: float | None = None
    recognize: float | None = None


class MapsToOriginal(Protocol):
    """What a page's ``geometry`` does: map (N, 4, 2) polygons of the image it was read from to
    original pixels (:class:`pipeline.imaging.dewarp.PageGeometry`)."""

    def map_quads(self, quads: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Page:
    """One page: what was read on it, or why it could not be.

    Attributes:
        key: the input it belongs to (its URI: inputs with identical bytes share a ``doc_id``).
        doc_id: the document's id.
        page_index: 0-based page number.
        width / height: the original page image's size in pixels (None for a page that was not decoded).
        dpi: resolution the decoder knows or rendered at.
        dewarp: what dewarping did.
        blocks: the page's text in reading order.
        text: the page's text in reading order.
        status: ``ok`` or ``error``.
        error_code / error_message: why the page failed.
        timings: where the page's time went.
        text_source: where its text comes from, one of :data:`TEXT_SOURCES`.
        unread_regions: text regions the detector found on the page that recognition read no text
            in (nothing, or below ``recognition.min_confidence``, or only words below
            ``recognition.min_word_confidence``): text the page's lines do not have.
        geometry: between the stages of one OCR worker only: the map from the dewarped image
            the polygons refer to back to original pixels; None once they are in original pixels.
    """

    key: str
    doc_id: str
    page_index: int
    width: int | None = None
    height: int | None = None
    dpi: float | None = None
    dewarp: Dewarp = Dewarp()
    blocks: tuple[Block, ...] = ()
    text: str = ""
    status: str = "ok"
    error_code: str | None = None
    error_message: str | None = None
    timings: PageTimings = PageTimings()
    text_source: str = "ocr"
    unread_regions: int = 0
    geometry: Any = field(default=None, compare=False, repr=False)

    @property
    def lines(self) -> list[Line]:
        """Every line, in reading order."""
        return [line for block in self.blocks for line in block.lines]

    def iter_lines(self) -> Iterator[tuple[int, int, Line]]:
        """``(block_index, line_index, line)`` for every line, in reading order."""
        index = 0
        for b, block in enumerate(self.blocks):
            for line in block.lines:
                yield b, index, line
                index += 1

    @property
    def mean_confidence(self) -> float | None:
        """Mean line confidence; None for a page without lines."""
        lines = self.lines
        return float(np.mean([line.confidence for line in lines])) if lines else None

    def replace(self, **changes) -> Page:
        return dataclasses.replace(self, **changes)


@dataclass
class PageImage:
    """A decoded page on its way to OCR.

    Attributes:
        key / doc_id / page_index: which page of which input.
        image: RGB uint8 (H, W, 3) pixels; the dewarp stage replaces them by the flattened page.
        dpi: resolution the decoder knows or rendered at.
        width / height: the original image's size (kept when dewarping changes ``image``).
        dewarp: what dewarping did (set by the dewarp stage).
        geometry: the map from ``image`` back to the original pixels (set by the dewarp stage;
            None while ``image`` is the original).
        timings: decoding and dewarping times so far.
        text_source: ``ocr``, or ``pdf+ocr`` for a PDF page whose text is read from the file
            except in its image regions, which are all of ``image`` that is not white.
        text_layer: the lines the file's text gives (``pdf+ocr``), in the pixels of ``image``.
        ocr_regions: where the page's image regions are (``pdf+ocr``).
    """

    key: str
    doc_id: str
    page_index: int
    image: np.ndarray
    dpi: float | None = None
    width: int = 0
    height: int = 0
    dewarp: Dewarp = field(default_factory=Dewarp)
    geometry: Any = None
    timings: PageTimings = field(default_factory=PageTimings)
    text_source: str = "ocr"
    text_layer: tuple[Line, ...] = ()
    ocr_regions: tuple[Polygon, ...] = ()

    def __post_init__(self) -> None:
        shape = np.shape(self.image)
        if not self.width and not self.height and len(shape) >= 2:
            self.height, self.width = int(shape[0]), int(shape[1])

    def failed(self, code: str, message: str, **timings) -> Page:
        """This page as an error :class:`Page`."""
        return Page(self.key, self.doc_id, self.page_index, self.width, self.height, self.dpi, self.dewarp,
                    status="error", error_code=code, error_message=message,
                    timings=dataclasses.replace(self.timings, **timings), text_source=self.text_source)


#: The fields an invoice, receipt or similar document can have (``fields.field``), in the order they are listed.
FIELDS = ("supplier_name", "supplier_address", "supplier_tax_id", "customer_name", "document_number",
          "document_date", "due_date", "period_start", "period_end", "currency", "subtotal", "tax", "total")
#: A document without one of these, or with one below ``fields.min_confidence``, needs review.
REQUIRED_FIELDS = ("supplier_name", "document_date", "total")


@dataclass(frozen=True)
class Field:
    """One field of a document, with its evidence.

    Attributes:
        name: one of :data:`FIELDS`.
        value: normalised: ISO 8601 dates, amounts as decimal strings without thousands separators
            (``1234.56``), ISO 4217 currency codes, names and addresses as printed (spaces normalised).
        raw_text: the text it was read from, as printed.
        confidence: 0..1, calibrated: of fields given 0.9, about nine in ten are right.
        page_index: the page it is on.
        polygon: the box around the words it came from, in original-page pixels.
        method: what produced it (e.g. ``label``: the value beside its label; ``largest-amount``).
    """

    name: str
    value: str
    raw_text: str
    confidence: float
    page_index: int
    polygon: Polygon | None
    method: str


@dataclass(frozen=True)
class LineItem:
    """One line of a document's table of goods or services.

    Attributes:
        index: 0-based position in the document.
        description: what was sold, as printed.
        quantity / unit_price / amount: decimal strings, None where the line does not say.
        confidence: 0..1.
        page_index / polygon: where the line is.
    """

    index: int
    description: str
    quantity: str | None
    unit_price: str | None
    amount: str | None
    confidence: float
    page_index: int
    polygon: Polygon | None


@dataclass(frozen=True)
class DocumentFields:
    """What the fields stage found in one document.

    Attributes:
        fields: the fields found (a field not found is absent), in :data:`FIELDS` order.
        line_items: the table lines, in order.
        review: why a person should look at it (empty: no reason); each reason is a short code,
            e.g. ``missing:total``, ``totals_mismatch``.
    """

    fields: tuple[Field, ...] = ()
    line_items: tuple[LineItem, ...] = ()
    review: tuple[str, ...] = ()

    def get(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class Failure:
    """Why a document failed: an ``error_code``, its message, and whether a rerun may succeed."""

    code: str
    message: str
    retryable: bool = False


@dataclass
class SourceDocument:
    """What reading and decoding one input found; it follows the input's pages in the stream.

    Attributes:
        key: the input's URI (unique within a run).
        doc_id: sha256 of its bytes; for an input whose bytes were not read, of its URI, ETag and size.
        etag / size: from the listing or the read.
        mime: detected type.
        page_count: pages the document has.
        pages_seen: pages the stream carries for it (decoded or failed).
        decoded: False when its pages were not wanted (already done, or a twin of another input).
        failure: why the whole document failed, or None.
        read_ms / decode_ms: time spent reading and decoding it.
    """

    key: str
    doc_id: str
    etag: str | None = None
    size: int = 0
    mime: str | None = None
    page_count: int = 0
    pages_seen: int = 0
    decoded: bool = True
    failure: Failure | None = None
    read_ms: float = 0.0
    decode_ms: float = 0.0


#: What flows between stages.
Item = SourceDocument | PageImage | Page


@dataclass(frozen=True)
class DoneIndex:
    """What earlier runs already wrote under one destination (read by :mod:`pipeline.output`).

    Attributes:
        rows: ``(doc_id, config_fingerprint)`` to a summary of its documents row.
        uris: ``(doc_id, config_fingerprint, source_uri)`` triples already recorded.
        etags: ``(source_uri, source_etag, config_fingerprint)`` of the inputs done, so a
            planner can leave out unchanged objects without downloading them.
    """

    rows: dict[tuple[str, str], dict] = field(default_factory=dict)
    uris: frozenset[tuple[str, str, str]] = frozenset()
    etags: frozenset[tuple[str, str, str]] = frozenset()

    def row(self, doc_id: str, fingerprint: str) -> dict | None:
        return self.rows.get((doc_id, fingerprint))

    def has_uri(self, doc_id: str, fingerprint: str, uri: str) -> bool:
        return (doc_id, fingerprint, uri) in self.uris

    def has_object(self, uri: str, etag: str | None, fingerprint: str) -> bool:
        """Whether the object at ``uri`` with this ETag was already done under ``fingerprint``."""
        return etag is not None and (uri, etag, fingerprint) in self.etags


@dataclass
class RunTally:
    """What one run (or the runs of a flow) did: the counts a runner keeps as it writes, and the
    same counts read back from Parquet (:func:`pipeline.output.catalog.run_stats`).

    Attributes:
        documents: ``documents`` rows written.
        skipped: inputs the destination already held under this configuration.
        pages: ``pages`` rows written; ``page_errors`` of them failed.
        ok / partial / errors: documents by status; ``errors_by_code`` counts the failed ones by code.
        seconds: wall time.
        mean_confidence: mean of the pages' mean line confidence (pages with text).
        lowest_confidence: the documents with the lowest mean confidence (``doc_id``,
            ``source_uri``, ``mean_confidence``), lowest first.
        needs_review: the documents the fields stage flagged (``doc_id``, ``source_uri``, ``reasons``).
        fields_found: fields found, by field name (runs with ``fields.enabled``).
        run_id / dest / fingerprint / manifest: which run, when the tally is one run's.
    """

    documents: int = 0
    skipped: int = 0
    pages: int = 0
    page_errors: int = 0
    ok: int = 0
    partial: int = 0
    errors: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    mean_confidence: float | None = None
    lowest_confidence: list[dict] = field(default_factory=list)
    needs_review: list[dict] = field(default_factory=list)
    fields_found: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    dest: str | None = None
    fingerprint: str | None = None
    manifest: str | None = None

    def add_document(self, status: str, error_code: str | None) -> None:
        """Count one ``documents`` row."""
        self.documents += 1
        if status == "ok":
            self.ok += 1
            return
        if status == "partial":
            self.partial += 1
        else:
            self.errors += 1
        self.errors_by_code[error_code] = self.errors_by_code.get(error_code, 0) + 1

    @property
    def failed(self) -> int:
        """Documents whose status is ``error`` or ``partial``."""
        return self.partial + self.errors

    @property
    def error_rate(self) -> float:
        return self.failed / self.documents if self.documents else 0.0

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0
