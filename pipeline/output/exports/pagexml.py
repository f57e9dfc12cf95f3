"""PAGE-XML 2019-07-15: one XML file per page, the format of OCR-D, Transkribus, eScriptorium and Kraken.

Each block is a ``TextRegion`` whose ``type`` says what it is (a heading, a
running header, ...), listed in reading order in ``ReadingOrder``; each line a
``TextLine`` with its exact polygon and baseline, its words and its text; each
region ends with its text, lines joined by newlines. Coordinates are whole
pixels of the original page image, rounded and clipped to the page (PAGE points
cannot be negative). Elements follow the order of the schema's sequences.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.output.exports import ExportDocument
from pipeline.output.exports.alto import (
    XML_DECLARATION,
    baseline_points,
    confidence,
    pixel_points,
    source_image_name,
    timestamp,
    xml_text,
)
from pipeline.types import Page, Polygon

__all__ = ["page_xml", "REGION_TYPES"]

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
PAGE_XSD = f"{PAGE_NS}/pagecontent.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

#: ``TextRegion/@type`` of each block kind (a kind not listed is ``other``).
REGION_TYPES = {
    "text": "paragraph",
    "heading": "heading",
    "header": "header",
    "footer": "footer",
    "page-number": "page-number",
    "marginalia": "marginalia",
}

# PAGE requires a creation date; a document without processed_at gets the epoch, which says "unknown"
# without making the file depend on when it was written.
_UNKNOWN_TIME = "1970-01-01T00:00:00Z"


def _points(points: list[tuple[int, int]]) -> str:
    # The schema's points need at least two pairs; a degenerate polygon repeats its only one.
    if len(points) < 2:
        points = points * 2 if points else [(0, 0), (0, 0)]
    return " ".join(f"{x},{y}" for x, y in points)


def _coords(parent: ET.Element, polygon: Polygon, width: int | None, height: int | None) -> None:
    ET.SubElement(parent, "Coords", {"points": _points(pixel_points(polygon, width, height))})


def _text_equiv(parent: ET.Element, text: str, conf: float | None) -> None:
    equiv = ET.SubElement(parent, "TextEquiv", {} if conf is None else {"conf": confidence(conf)})
    ET.SubElement(equiv, "Unicode").text = xml_text(text)


def _metadata(doc: ExportDocument) -> ET.Element:
    meta = ET.Element("Metadata")
    ET.SubElement(meta, "Creator").text = f"Folio {doc.pipeline_version}"
    when = timestamp(doc.processed_at) or _UNKNOWN_TIME
    ET.SubElement(meta, "Created").text = when
    ET.SubElement(meta, "LastChange").text = when
    models = "; ".join(f"{m.get('role') or 'model'} {m.get('name')} sha256:{m.get('sha256')}" for m in doc.models)
    ET.SubElement(meta, "Comments").text = (
        f"engine: {doc.engine}; models: {models or 'none'}; config_fingerprint: {doc.config_fingerprint}")
    return meta


def page_xml(doc: ExportDocument, page: Page) -> bytes:
    """One page as a PAGE-XML 2019-07-15 file (UTF-8, valid against ``pagecontent-2019-07-15.xsd``).

    Args:
        doc: the document the page belongs to (its provenance goes into ``Metadata``).
        page: the page, its polygons in original pixels.

    Returns:
        The file's bytes; the same page always gives the same bytes.
    """
    w, h = page.width, page.height
    root = ET.Element("PcGts", {"xmlns": PAGE_NS, "xmlns:xsi": XSI_NS,
                                "xsi:schemaLocation": f"{PAGE_NS} {PAGE_XSD}"})
    root.append(_metadata(doc))
    attrs = {"imageFilename": xml_text(source_image_name(doc, page)), "imageWidth": str(w or 0),
             "imageHeight": str(h or 0)}
    if page.dpi:
        dpi = f"{float(page.dpi):g}"
        attrs.update(imageXResolution=dpi, imageYResolution=dpi, imageResolutionUnit="PPI")
    page_el = ET.SubElement(root, "Page", attrs)
    blocks = [block for block in page.blocks if block.lines]
    if blocks:
        group = ET.SubElement(ET.SubElement(page_el, "ReadingOrder"), "OrderedGroup", {"id": "ro_1"})
        for b in range(1, len(blocks) + 1):
            ET.SubElement(group, "RegionRefIndexed", {"index": str(b - 1), "regionRef": f"r{b}"})
    sub = ET.SubElement
    for b, block in enumerate(blocks, 1):
        region_id = f"r{b}"
        region = sub(page_el, "TextRegion", {"id": region_id, "type": REGION_TYPES.get(block.kind, "other")})
        _coords(region, block.polygon, w, h)
        for i, line in enumerate(block.lines, 1):
            line_id = f"{region_id}_l{i}"
            line_el = sub(region, "TextLine", {"id": line_id})
            _coords(line_el, line.polygon, w, h)
            sub(line_el, "Baseline", {"points": _points(baseline_points(line.polygon, w, h))})
            for k, word in enumerate(line.words, 1):
                word_el = sub(line_el, "Word", {"id": f"{line_id}_w{k}"})
                _coords(word_el, word.polygon, w, h)
                _text_equiv(word_el, word.text, word.confidence)
            _text_equiv(line_el, line.text, line.confidence)
        mean = sum(line.confidence for line in block.lines) / len(block.lines)
        _text_equiv(region, "\n".join(line.text for line in block.lines), mean)
    ET.indent(root, "  ")  # an element a line costs a few percent and makes the file readable and diffable
    return (XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")
