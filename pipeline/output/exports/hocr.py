"""hOCR 1.2: the whole document as one XHTML file, the format PDF text layers and search tools read.

A ``div.ocr_page`` per page (its ``ppageno`` is the 0-based page index, as the
spec numbers the front cover 0), a ``div.ocr_carea`` holding one ``p.ocr_par``
per block in reading order, a ``span.ocr_line`` per line and a
``span.ocrx_word`` per word. Layout lives in each element's ``title``
properties, ``; ``-separated as hOCR tools split them: ``bbox`` in whole
pixels of the original page image, the line's ``baseline`` (slope, and offset
from the bottom-left corner of its box, as Tesseract writes them), ``x_size``
(line height) and ``x_wconf`` (word confidence, 0-100). Every element carries
one class only: the Internet Archive's hOCR tools compare the whole attribute.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.output.exports import ExportDocument
from pipeline.output.exports.alto import (
    XML_DECLARATION,
    baseline_points,
    pixel_box,
    source_image_name,
    xml_text,
)
from pipeline.types import Polygon

__all__ = ["hocr", "CAPABILITIES"]

XHTML_NS = "http://www.w3.org/1999/xhtml"
DOCTYPE = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
           '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n')

#: What the writer can produce (the ``ocr-capabilities`` meta the spec requires).
CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf"


def _num(value: float, places: int) -> str:
    """A decimal without exponent or trailing zeros (the hOCR tools' patterns allow no exponent)."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _bbox(box: tuple[int, int, int, int]) -> str:
    return f"bbox {box[0]} {box[1]} {box[2]} {box[3]}"


def _line_title(polygon: Polygon, box: tuple[int, int, int, int], width: int | None, height: int | None) -> str:
    """``bbox``, ``baseline`` and ``x_size`` of a line.

    The baseline is the bottom edge of the line's polygon as ``y = slope * x + offset`` in image
    pixels (y down), with the bottom-left corner of the line's box as the origin.
    """
    (bx0, by0), (bx1, by1) = baseline_points(polygon, width, height)
    slope = (by1 - by0) / (bx1 - bx0) if bx1 != bx0 else 0.0
    offset = by0 + slope * (box[0] - bx0) - box[3]
    if len(polygon) >= 4:
        # The mean of the left and right edges: the line's height however it is skewed.
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = polygon[0], polygon[1], polygon[-2], polygon[-1]
        size = (((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5 + ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5) / 2
    else:
        size = box[3] - box[1]
    return f"{_bbox(box)}; baseline {_num(slope, 3)} {_num(offset, 3)}; x_size {_num(size, 2)}"


def _wconf(value: float) -> int:
    return min(max(round(float(value) * 100), 0), 100)


def _image(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hocr(doc: ExportDocument) -> bytes:
    """The document as one hOCR 1.2 (XHTML) file, its pages in page order.

    Args:
        doc: the document; its failed pages are left out (their ``ppageno`` is missing).

    Returns:
        The file's bytes (UTF-8); the same document always gives the same bytes.
    """
    root = ET.Element("html", {"xmlns": XHTML_NS})
    head = ET.SubElement(root, "head")
    head.text = "\n"
    title_el = ET.SubElement(head, "title")
    title_el.text, title_el.tail = xml_text(doc.name) or doc.doc_id, "\n"
    meta = [("ocr-system", f"Folio {doc.pipeline_version}"),
            ("ocr-capabilities", CAPABILITIES),
            ("ocr-number-of-pages", str(len(doc.pages))),
            ("folio-engine", doc.engine),
            ("folio-models", "; ".join(f"{m.get('role') or 'model'} {m.get('name')} sha256:{m.get('sha256')}"
                                       for m in doc.models)),
            ("folio-config-fingerprint", doc.config_fingerprint)]
    ET.SubElement(head, "meta", {"http-equiv": "Content-Type", "content": "text/html;charset=utf-8"}).tail = "\n"
    for name, content in meta:
        ET.SubElement(head, "meta", {"name": name, "content": xml_text(content)}).tail = "\n"
    root.text = head.tail = "\n"
    body = ET.SubElement(root, "body")
    body.text = body.tail = "\n"
    sub = ET.SubElement
    for page in doc.pages:
        w, h, n = page.width, page.height, page.page_index
        title = f"image {_image(xml_text(source_image_name(doc, page)))}; bbox 0 0 {w or 0} {h or 0}; ppageno {n}"
        if page.dpi:
            title += f"; scan_res {round(page.dpi)} {round(page.dpi)}"
        page_el = sub(body, "div", {"class": "ocr_page", "id": f"page_{n + 1}", "title": title})
        page_el.text = page_el.tail = "\n"
        line_no = word_no = 0
        for b, block in enumerate((block for block in page.blocks if block.lines), 1):
            box = _bbox(pixel_box([p for line in block.lines for p in line.polygon], w, h))
            area = sub(page_el, "div", {"class": "ocr_carea", "id": f"block_{n + 1}_{b}", "title": box})
            par = sub(area, "p", {"class": "ocr_par", "id": f"par_{n + 1}_{b}", "title": box})
            area.text = area.tail = par.text = par.tail = "\n"
            for line in block.lines:
                line_no += 1
                line_box = pixel_box(line.polygon, w, h)
                line_el = sub(par, "span", {"class": "ocr_line", "id": f"line_{n + 1}_{line_no}",
                                            "title": _line_title(line.polygon, line_box, w, h)})
                line_el.tail = "\n"
                # Rows written before words existed have lines without words: the line is one word.
                words = [(word.text, word.confidence, word.polygon) for word in line.words] or [
                    (line.text, line.confidence, line.polygon)]
                word_el = None
                for text, conf, polygon in words:
                    text = xml_text(text)
                    if not text:
                        continue  # an empty ocrx_word has no text node, which hOCR readers reject
                    word_no += 1
                    if word_el is not None:
                        word_el.tail = " "
                    word_el = sub(line_el, "span", {"class": "ocrx_word", "id": f"word_{n + 1}_{word_no}",
                                                    "title": f"{_bbox(pixel_box(polygon, w, h))}; "
                                                             f"x_wconf {_wconf(conf)}"})
                    word_el.text = text
    return (XML_DECLARATION + DOCTYPE + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")
