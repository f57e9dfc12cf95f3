"""ALTO 4.4: one XML file per page, the format library and newspaper archives ingest.

Coordinates are whole pixels of the original page image (``MeasurementUnit``
``pixel``), rounded and clipped to the page. Each block is a ``TextBlock`` whose
kind is a ``Tags/LayoutTag`` it refers to (``TAGREFS``); each line a ``TextLine``
with its ``BASELINE`` (the bottom edge of its polygon); each word a ``String``
with its confidence (``WC``), an ``SP`` between words. Where dewarping changed
the page the boxes cannot say where a skewed or curved word lies, so lines and
words also carry their exact polygon (``Shape/Polygon``).

The pixel helpers here (:func:`pixel_box`, :func:`pixel_points`, ...) are shared
by the PAGE-XML and hOCR writers, so that every format rounds and clips alike.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from pipeline.output.exports import BLOCK_KINDS, ExportDocument
from pipeline.types import Page, Polygon

__all__ = ["alto", "pixel_box", "pixel_points", "baseline_points", "dewarped", "source_image_name",
           "timestamp", "confidence", "xml_text"]

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_XSD = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Characters XML 1.0 does not allow (control characters other than tab and newlines, lone surrogates,
# U+FFFE/U+FFFF): a recognizer should never produce them, and a file that holds one cannot be parsed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_NCNAME = re.compile(r"[^A-Za-z0-9_.-]")
# Paged types: their file name alone does not say which page an export is.
_PAGED_MIMES = ("application/pdf", "image/tiff")
# Tags are written in the order of BLOCK_KINDS, kinds it does not know after them by name.
_KIND_ORDER = {kind: i for i, kind in enumerate(BLOCK_KINDS)}


def _clip(value: float, limit: int | None) -> int:
    v = round(value)
    if v < 0:
        return 0
    if limit and v > limit:
        return limit
    return v


def pixel_box(polygon: Polygon, width: int | None, height: int | None) -> tuple[int, int, int, int]:
    """The whole-pixel rectangle ``(x0, y0, x1, y1)`` around a polygon, clipped to the page.

    Args:
        polygon: corners in original pixels.
        width / height: the page's size; a falsy size leaves that axis unclipped above.
    """
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return (_clip(min(xs), width), _clip(min(ys), height), _clip(max(xs), width), _clip(max(ys), height))


def pixel_points(polygon: Polygon, width: int | None, height: int | None) -> list[tuple[int, int]]:
    """A polygon's corners in whole pixels, clipped to the page."""
    return [(_clip(x, width), _clip(y, height)) for x, y in polygon]


def baseline_points(polygon: Polygon, width: int | None, height: int | None) -> list[tuple[int, int]]:
    """Where a line's text rests: the bottom edge of its polygon, bottom-left to bottom-right, in pixels.

    Polygons run clockwise from the top-left corner, so the bottom edge is the last corner to the
    one before it.
    """
    if len(polygon) < 4:
        x0, _, x1, y1 = pixel_box(polygon, width, height)
        return [(x0, y1), (x1, y1)]
    return pixel_points((polygon[-1], polygon[-2]), width, height)


def dewarped(page: Page) -> bool:
    """Whether dewarping changed the page, so boxes alone misplace its words."""
    d = page.dewarp
    return d.quad is not None or bool(d.curl_corrected) or d.skew_deg != 0 or bool(d.rotation)


def source_image_name(doc: ExportDocument, page: Page) -> str:
    """The image a page was read from: the source's file name, with ``#page=N`` (1-based) for pages of
    a PDF or TIFF or of any source with more than one page."""
    name = doc.source_uri.rstrip("/").rsplit("/", 1)[-1] or doc.name
    known = [p.page_index for p in doc.pages] + list(doc.failed_pages)
    if doc.mime in _PAGED_MIMES or max(known, default=0) > 0:
        return f"{name}#page={page.page_index + 1}"
    return name


def timestamp(when: dt.datetime | None) -> str | None:
    """``processed_at`` as an XML Schema dateTime in UTC (``2024-05-01T12:00:00Z``); naive means UTC."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when.isoformat(timespec="seconds") + "Z"


def confidence(value: float) -> str:
    """A 0..1 confidence as a short decimal (``0.9531``, ``1``), clamped to 0..1."""
    v = min(max(float(value), 0.0), 1.0)
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (escaping is the serializer's job)."""
    return _NOT_XML.sub("", text) if _NOT_XML.search(text) else text


def _points_attr(points: list[tuple[int, int]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def _box_attrs(box: tuple[int, int, int, int]) -> dict[str, str]:
    x0, y0, x1, y1 = box
    return {"HPOS": str(x0), "VPOS": str(y0), "WIDTH": str(x1 - x0), "HEIGHT": str(y1 - y0)}


def _tag_id(kind: str) -> str:
    return "LAYOUT_" + _NOT_NCNAME.sub("_", kind)


def _description(doc: ExportDocument, page: Page) -> ET.Element:
    desc = ET.Element("Description")
    ET.SubElement(desc, "MeasurementUnit").text = "pixel"
    source = ET.SubElement(desc, "sourceImageInformation")
    ET.SubElement(source, "fileName").text = xml_text(source_image_name(doc, page))
    step = ET.SubElement(desc, "Processing", {"ID": "FOLIO_OCR"})
    ET.SubElement(step, "processingCategory").text = "contentGeneration"
    when = timestamp(doc.processed_at)
    if when is not None:
        ET.SubElement(step, "processingDateTime").text = when
    ET.SubElement(step, "processingStepDescription").text = f"engine {doc.engine}"
    for model in doc.models:
        ET.SubElement(step, "processingStepDescription").text = (
            f"{model.get('role') or 'model'} model {model.get('name')} sha256:{model.get('sha256')}")
    ET.SubElement(step, "processingStepSettings").text = f"config_fingerprint={doc.config_fingerprint}"
    software = ET.SubElement(step, "processingSoftware")
    ET.SubElement(software, "softwareName").text = "Folio"
    ET.SubElement(software, "softwareVersion").text = doc.pipeline_version
    ET.SubElement(software, "applicationDescription").text = f"Folio batch OCR, engine {doc.engine}"
    return desc


def alto(doc: ExportDocument, page: Page) -> bytes:
    """One page as an ALTO 4.4 file (UTF-8, valid against ``alto-4-4.xsd``).

    Args:
        doc: the document the page belongs to (its provenance goes into ``Description``).
        page: the page, its polygons in original pixels.

    Returns:
        The file's bytes; the same page always gives the same bytes.
    """
    w, h = page.width, page.height
    exact = dewarped(page)
    n = page.page_index + 1
    root = ET.Element("alto", {"xmlns": ALTO_NS, "xmlns:xsi": XSI_NS,
                               "xsi:schemaLocation": f"{ALTO_NS} {ALTO_XSD}", "SCHEMAVERSION": "4.4"})
    root.append(_description(doc, page))
    blocks = [block for block in page.blocks if block.lines]
    kinds = sorted({block.kind for block in blocks}, key=lambda k: (_KIND_ORDER.get(k, len(_KIND_ORDER)), k))
    if kinds:
        tags = ET.SubElement(root, "Tags")
        for kind in kinds:
            ET.SubElement(tags, "LayoutTag", {"ID": _tag_id(kind), "LABEL": kind})
    layout = ET.SubElement(root, "Layout")
    size = {"WIDTH": str(w), "HEIGHT": str(h)} if w and h else {}
    page_el = ET.SubElement(layout, "Page", {"ID": f"P{n}", **size, "PHYSICAL_IMG_NR": str(n),
                                             "PROCESSINGREFS": "FOLIO_OCR"})
    # The print space is the whole page: Folio does not tell margins from the text area.
    space = ET.SubElement(page_el, "PrintSpace", {"HPOS": "0", "VPOS": "0", **size})
    sub = ET.SubElement
    for b, block in enumerate(blocks, 1):
        block_id = f"P{n}_B{b}"
        attrs = {"ID": block_id, **_box_attrs(pixel_box([p for line in block.lines for p in line.polygon], w, h)),
                 "TAGREFS": _tag_id(block.kind)}
        block_el = sub(space, "TextBlock", attrs)
        for i, line in enumerate(block.lines, 1):
            line_id = f"{block_id}_L{i}"
            line_box = pixel_box(line.polygon, w, h)
            attrs = {"ID": line_id, **_box_attrs(line_box),
                     "BASELINE": _points_attr(baseline_points(line.polygon, w, h))}
            line_el = sub(block_el, "TextLine", attrs)
            if exact:
                sub(sub(line_el, "Shape"), "Polygon", {"POINTS": _points_attr(pixel_points(line.polygon, w, h))})
            # Rows written before words existed have lines without words: the line is one String.
            words = [(word.text, word.confidence, word.polygon) for word in line.words] or [
                (line.text, line.confidence, line.polygon)]
            previous = None
            for k, (text, conf, polygon) in enumerate(words, 1):
                box = pixel_box(polygon, w, h)
                if previous is not None:
                    sub(line_el, "SP", {"HPOS": str(min(previous, box[0])), "VPOS": str(line_box[1]),
                                        "WIDTH": str(max(box[0] - previous, 0))})
                attrs = {"ID": f"{line_id}_W{k}", **_box_attrs(box), "CONTENT": xml_text(text),
                         "WC": confidence(conf)}
                string = sub(line_el, "String", attrs)
                if exact:
                    sub(sub(string, "Shape"), "Polygon", {"POINTS": _points_attr(pixel_points(polygon, w, h))})
                previous = box[2]
    ET.indent(root, "  ")  # an element a line costs a few percent and makes the file readable and diffable
    return (XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")
