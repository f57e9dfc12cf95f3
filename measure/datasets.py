"""Readers of labelled evaluation sets, turned into one ground-truth shape.

Every reader returns :class:`GtPage` objects: the image file to OCR, the page
inside it, the coordinate frame of the ground truth, line-level ground truth
(text + polygon, for CER and detection) and the page's bag of GT words.

Formats (``FORMATS``):

- ``funsd``: ``images/<id>.png`` + ``annotations/<id>.json`` (``form[]`` entities
  with ``box``/``text``/``words[]``). Entities are used as GT lines; words come
  from the word annotations.
- ``sroie``: ``img/<id>.jpg`` + ``box/<id>.csv`` with rows
  ``x1,y1,x2,y2,x3,y3,x4,y4,transcript`` (the transcript is everything after the
  8th comma and may itself contain commas or quotes, so no CSV parser is used).
- ``alto``: page images with ALTO XML (any namespace version), paired through
  ``Description/sourceImageInformation/fileName``, falling back to the same stem.
  HTR-United transcription markup is undone: ``~~~`` (a handwritten word) goes to
  ``ignore_words``; a leading ``_`` (underlined) and ``^`` (superscript) are dropped.
- ``page``: page images with PAGE-XML (any version; ``Page/@imageFilename``, the image
  beside the XML or in a sibling ``img/``), from ``page/`` where the set has one;
  regions in the ``ReadingOrder``'s order, line-level ``TextEquiv`` text.
- ``lines``: line images (``.png``/``.tif``...) beside ``<name>.gt.txt``; one GT
  line covering the whole image (recognition only).
- ``synth``: Folio's synthetic documents, ``*.json`` with ``doc``, ``file``,
  ``format``, ``dpi`` and ``pages[]`` (``page_index``, ``width``, ``height``,
  ``text``, ``lines[]`` of ``{text, polygon}``); one sample per page.

GT lines with empty text (FUNSD checkbox/logo entities, ALTO lines that are
untranscribed or only handwritten) are kept: the scorer treats them as
"don't care" regions (see :mod:`measure.scoring`).

Samples are sorted by ``sample_id`` (natural order, so ``doc#2`` < ``doc#10``).
Malformed files or rows are skipped with a logged warning; an empty set is an
empty list, not an error.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

__all__ = ["GtLine", "GtPage", "FORMATS", "read_dataset"]

log = logging.getLogger(__name__)

Polygon = tuple[tuple[float, float], ...]

FORMATS = ("funsd", "sroie", "alto", "page", "lines", "synth", "pdf-text")

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# OCR-D line GT sometimes ships binarised/normalised variants beside the raw image.
_LINE_IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bin.png", ".nrm.png")
_HANDWRITTEN = "~~~"


@dataclass(frozen=True)
class GtLine:
    """One ground-truth text line.

    Attributes:
        text: transcription (may be empty: a "don't care" region).
        polygon: 3+ (x, y) points in the GT coordinate frame, None when unknown.
    """

    text: str
    polygon: Polygon | None


@dataclass(frozen=True)
class GtPage:
    """One labelled page.

    Attributes:
        sample_id: stable id, e.g. the FUNSD file stem or ``"<doc>#<page>"``.
        image_path: the file to OCR.
        page_index: page inside ``image_path`` (0 for single images).
        width: width of the GT coordinate frame (pixels, or ALTO's unit), if known.
            Predictions made at another scale are rescaled by the scorer.
        height: height of the GT coordinate frame, if known.
        lines: line-level GT for CER and detection.
        words: the page's GT word tokens (a bag of words).
        ignore_words: tokens left out of scoring (tapuscorpus ``~~~`` marks).
        word_boxes: GT words with their boxes, where the set has them (FUNSD), for scoring
            where a system puts its words.
        ordered: whether ``lines`` are in the page's reading order (ALTO, PAGE-XML and synthetic
            pages), so a reading-order score applies.
    """

    sample_id: str
    image_path: Path
    page_index: int
    width: int | None
    height: int | None
    lines: tuple[GtLine, ...]
    words: tuple[str, ...]
    ignore_words: tuple[str, ...] = ()
    word_boxes: tuple[GtLine, ...] = ()
    ordered: bool = False


def read_dataset(fmt: str, path: str | os.PathLike, limit: int | None = None) -> list[GtPage]:
    """Read a labelled set.

    Args:
        fmt: one of :data:`FORMATS`.
        path: the set's root folder (e.g. ``eval/funsd`` holding ``images/`` and
            ``annotations/``); ``alto``, ``lines`` and ``synth`` search it recursively.
        limit: keep only the first ``limit`` samples (after sorting).

    Returns:
        The pages, sorted by ``sample_id``.

    Raises:
        ValueError: unknown format or negative limit.
        FileNotFoundError: the folder (or a sub-folder the format requires) is missing.
    """
    if fmt not in _READERS:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{fmt} dataset folder not found: {root}")
    pages = sorted(_READERS[fmt](root), key=lambda p: _natural_key(p.sample_id))
    if not pages:
        log.warning("no %s samples found under %s", fmt, root)
    return pages if limit is None else pages[:limit]


# -- helpers -----------------------------------------------------------------


def _natural_key(s: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", s))


def _require_dir(root: Path, name: str, fmt: str, layout: str) -> Path:
    sub = root / name
    if not sub.is_dir():
        raise FileNotFoundError(f"{fmt} dataset at {root} has no {name}/ folder (expected {layout})")
    return sub


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        log.warning("cannot read image size of %s: %s", path, e)
        return None


def _find_image(folder: Path, stem: str, exts: Iterable[str] = _IMAGE_EXTS) -> Path | None:
    for ext in exts:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def _box_polygon(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _split_words(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for t in texts for w in t.split())


def _rel_id(path: Path, root: Path, suffix: str) -> str:
    rel = path.relative_to(root).as_posix()
    return rel[: -len(suffix)] if suffix and rel.endswith(suffix) else rel


# -- funsd ---------------------------------------------------------------------


def _read_funsd(root: Path) -> Iterator[GtPage]:
    layout = "images/<id>.png and annotations/<id>.json"
    ann_dir = _require_dir(root, "annotations", "funsd", layout)
    img_dir = _require_dir(root, "images", "funsd", layout)
    for ann in sorted(ann_dir.glob("*.json")):
        image = _find_image(img_dir, ann.stem)
        if image is None:
            log.warning("funsd: no image for %s in %s, skipped", ann.name, img_dir)
            continue
        try:
            form = json.loads(ann.read_text(encoding="utf-8-sig"))["form"]
            lines, words, boxes = [], [], []
            for entity in form:
                x0, y0, x1, y1 = (float(v) for v in entity["box"])
                lines.append(GtLine(str(entity.get("text", "")).strip(), _box_polygon(x0, y0, x1, y1)))
                words.extend(str(w.get("text", "")) for w in entity.get("words", ()))
                for w in entity.get("words", ()):
                    if w.get("box") and str(w.get("text", "")).strip():
                        boxes.append(GtLine(str(w["text"]).strip(), _box_polygon(*(float(v) for v in w["box"]))))
        except (ValueError, KeyError, TypeError) as e:
            log.warning("funsd: malformed annotation %s (%s), skipped", ann, e)
            continue
        size = _image_size(image)
        yield GtPage(
            sample_id=ann.stem,
            image_path=image,
            page_index=0,
            width=size[0] if size else None,
            height=size[1] if size else None,
            lines=tuple(lines),
            words=_split_words(words),
            word_boxes=tuple(boxes),
        )


# -- sroie ---------------------------------------------------------------------


def _read_sroie(root: Path) -> Iterator[GtPage]:
    layout = "img/<id>.jpg and box/<id>.csv"
    box_dir = _require_dir(root, "box", "sroie", layout)
    img_dir = _require_dir(root, "img", "sroie", layout)
    for csv in sorted(box_dir.glob("*.csv")):
        image = _find_image(img_dir, csv.stem)
        if image is None:
            log.warning("sroie: no image for %s in %s, skipped", csv.name, img_dir)
            continue
        lines = []
        text = csv.read_text(encoding="utf-8-sig", errors="replace")
        for lineno, row in enumerate(text.splitlines(), 1):
            if not row.strip():
                continue
            parts = row.split(",", 8)
            try:
                if len(parts) < 9:
                    raise ValueError(f"{len(parts)} fields, expected 8 coordinates and a transcript")
                coords = [float(v) for v in parts[:8]]
            except ValueError as e:
                log.warning("sroie: %s line %d malformed (%s), skipped: %r", csv.name, lineno, e, row[:80])
                continue
            polygon = tuple(zip(coords[0::2], coords[1::2]))
            lines.append(GtLine(parts[8].strip(), polygon))
        size = _image_size(image)
        yield GtPage(
            sample_id=csv.stem,
            image_path=image,
            page_index=0,
            width=size[0] if size else None,
            height=size[1] if size else None,
            lines=tuple(lines),
            words=_split_words(line.text for line in lines),
        )


# -- alto ----------------------------------------------------------------------


def _local(tag: str) -> str:
    """Tag name without its namespace, so any ALTO version matches."""
    return tag.rsplit("}", 1)[-1]


def _children(elem: ET.Element, name: str) -> Iterator[ET.Element]:
    return (c for c in elem if _local(c.tag) == name)


def _descendants(elem: ET.Element, name: str) -> Iterator[ET.Element]:
    return (c for c in elem.iter() if _local(c.tag) == name)


def _first(elem: ET.Element, *path: str) -> ET.Element | None:
    for name in path:
        elem = next(_children(elem, name), None)
        if elem is None:
            return None
    return elem


def _num(elem: ET.Element, attr: str) -> float | None:
    value = elem.get(attr)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _alto_polygon(line: ET.Element) -> Polygon | None:
    poly = _first(line, "Shape", "Polygon")
    if poly is not None:
        # v4 writes "x y x y ...", older files "x,y x,y ...": accept both.
        nums = [float(v) for v in re.split(r"[\s,]+", poly.get("POINTS", "").strip()) if v]
        if len(nums) >= 6 and len(nums) % 2 == 0:
            return tuple(zip(nums[0::2], nums[1::2]))
    box = [_num(line, a) for a in ("HPOS", "VPOS", "WIDTH", "HEIGHT")]
    if all(v is not None for v in box):
        x, y, w, h = box
        return _box_polygon(x, y, x + w, y + h)
    return None


def _unmark(word: str) -> str:
    """Drop HTR-United markup: leading ``_`` (underlined), ``^`` (superscript)."""
    if len(word) > 1 and word[0] == "_" and word[1] != "_":
        word = word[1:]
    if len(word) > 1 and "^" in word:
        word = word.replace("^", "") or word
    return word


def _alto_image(xml: Path, root_el: ET.Element) -> Path | None:
    info = _first(root_el, "Description", "sourceImageInformation", "fileName")
    if info is not None and info.text and info.text.strip():
        name = info.text.strip()
        for cand in (xml.parent / name, xml.parent / Path(name.replace("\\", "/")).name):
            if cand.is_file():
                return cand
    return _find_image(xml.parent, xml.stem)


def alto_lines(doc: ET.Element) -> tuple[list[GtLine], list[str], list[str]]:
    """A parsed ALTO document's text lines in file order, its words, and the words left out of scoring
    (handwriting marks)."""
    lines, words, ignored = [], [], []
    for line in _descendants(doc, "TextLine"):
        line_words = []
        for child in line:
            tag = _local(child.tag)
            if tag == "HYP" and line_words:  # printed end-of-line hyphen
                line_words[-1] += child.get("CONTENT", "")
                continue
            if tag != "String":
                continue
            for word in child.get("CONTENT", "").split():
                if _HANDWRITTEN in word:
                    ignored.append(word)
                else:
                    line_words.append(_unmark(word))
        lines.append(GtLine(" ".join(line_words), _alto_polygon(line)))
        words.extend(line_words)
    return lines, words, ignored


def alto_words(doc: ET.Element) -> list[GtLine]:
    """A parsed ALTO document's ``String`` elements with their boxes, in file order."""
    return [GtLine(s.get("CONTENT", ""), _alto_polygon(s)) for s in _descendants(doc, "String")
            if s.get("CONTENT", "").strip()]


def _read_alto(root: Path) -> Iterator[GtPage]:
    for xml in sorted(root.rglob("*.xml")):
        try:
            doc = ET.parse(xml).getroot()
        except ET.ParseError as e:
            log.warning("alto: cannot parse %s (%s), skipped", xml, e)
            continue
        if _local(doc.tag).lower() != "alto":
            log.debug("alto: %s is not an ALTO file, skipped", xml)
            continue
        image = _alto_image(xml, doc)
        if image is None:
            log.warning("alto: no image found for %s, skipped", xml)
            continue
        page = next(_descendants(doc, "Page"), None)
        width = _num(page, "WIDTH") if page is not None else None
        height = _num(page, "HEIGHT") if page is not None else None
        if width is None or height is None:
            size = _image_size(image)
            width, height = size if size else (None, None)
        lines, words, ignored = alto_lines(doc)
        yield GtPage(
            sample_id=_rel_id(xml, root, ".xml"),
            image_path=image,
            page_index=0,
            width=int(round(width)) if width is not None else None,
            height=int(round(height)) if height is not None else None,
            lines=tuple(lines),
            words=tuple(words),
            ignore_words=tuple(ignored),
            ordered=True,  # ALTO's TextLines come in reading order
        )


# -- page (PAGE-XML) -----------------------------------------------------------


def _page_points(element) -> Polygon | None:
    coords = next((c for c in element if _local(c.tag) == "Coords"), None)
    if coords is None:
        return None
    try:
        points = [tuple(float(v) for v in p.split(",")) for p in coords.get("points", "").split()]
    except ValueError:
        return None
    return tuple(points) if len(points) >= 3 else None


def _page_text(element) -> str:
    """The element's own TextEquiv/Unicode (not its words')."""
    for equiv in (c for c in element if _local(c.tag) == "TextEquiv"):
        for uni in equiv:
            if _local(uni.tag) == "Unicode":
                return " ".join((uni.text or "").split())
    return ""


def _read_page(root: Path) -> Iterator[GtPage]:
    """PAGE-XML ground truth (any version): regions in the ``ReadingOrder``'s order (those it leaves out
    after, in document order), each region's lines in document order, line-level text; the image named
    by ``Page/@imageFilename``, beside the XML or in a sibling ``img``/``images`` folder."""
    import xml.etree.ElementTree as ET

    # A set with its ground truth in page/ (other folders beside it may hold a peer's output in PAGE
    # too, as newspapers_nzz's abbyy_server11/ does) is read from there only.
    gt = root / "page" if (root / "page").is_dir() else root
    for xml in sorted(gt.rglob("*.xml")):
        try:
            doc = ET.parse(xml).getroot()
        except ET.ParseError as e:
            log.warning("page: %s is not XML (%s), skipped", xml, e)
            continue
        if _local(doc.tag) != "PcGts":
            continue
        page = next((e for e in doc if _local(e.tag) == "Page"), None)
        if page is None:
            continue
        name = page.get("imageFilename", "")
        image = next((d / Path(name).name for d in (xml.parent, xml.parent.parent / "img", xml.parent.parent / "images",
                                                     xml.parent / "img") if (d / Path(name).name).is_file()), None)
        if image is None:
            log.warning("page: no image %r for %s, skipped", name, xml)
            continue
        regions = {r.get("id"): r for r in page.iter() if _local(r.tag) == "TextRegion"}
        order = [(int(ref.get("index", "0")), ref.get("regionRef")) for ref in page.iter()
                 if _local(ref.tag) == "RegionRefIndexed"]
        ordered = [rid for _, rid in sorted(order) if rid in regions]
        ordered += [rid for rid in regions if rid not in ordered]
        lines = []
        for rid in ordered:
            for line in (e for e in regions[rid] if _local(e.tag) == "TextLine"):
                lines.append(GtLine(_page_text(line), _page_points(line)))
        width, height = page.get("imageWidth"), page.get("imageHeight")
        yield GtPage(
            sample_id=_rel_id(xml, root, ".xml"),
            image_path=image,
            page_index=0,
            width=int(width) if width else None,
            height=int(height) if height else None,
            lines=tuple(lines),
            words=_split_words(line.text for line in lines),
            ordered=bool(order),
        )


# -- lines ---------------------------------------------------------------------


def _read_lines(root: Path) -> Iterator[GtPage]:
    for gt in sorted(root.rglob("*.gt.txt")):
        stem = gt.name[: -len(".gt.txt")]
        image = _find_image(gt.parent, stem, _LINE_IMAGE_EXTS)
        if image is None:
            log.warning("lines: no image beside %s, skipped", gt)
            continue
        size = _image_size(image)
        if size is None:
            continue
        text = " ".join(gt.read_text(encoding="utf-8-sig", errors="replace").split())
        w, h = size
        yield GtPage(
            sample_id=_rel_id(gt, root, ".gt.txt"),
            image_path=image,
            page_index=0,
            width=w,
            height=h,
            lines=(GtLine(text, _box_polygon(0.0, 0.0, float(w), float(h))),),
            words=tuple(text.split()),
        )


# -- synth ---------------------------------------------------------------------


def _synth_polygon(raw) -> Polygon | None:
    if not raw:
        return None
    if all(isinstance(v, (int, float)) for v in raw):  # flat [x0, y0, x1, y1, ...]
        if len(raw) == 4:
            return _box_polygon(*(float(v) for v in raw))
        raw = list(zip(raw[0::2], raw[1::2]))
    points = tuple((float(p[0]), float(p[1])) for p in raw)
    return points if len(points) >= 3 else None


def _read_synth(root: Path) -> Iterator[GtPage]:
    for path in sorted(root.rglob("*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8-sig"))
            if not isinstance(meta, dict) or "pages" not in meta or "file" not in meta:
                log.debug("synth: %s is not a synthetic-document record, skipped", path)
                continue
            image = path.parent / meta["file"]
            doc = str(meta.get("doc") or path.stem)
            pages = []
            for page in meta["pages"]:
                lines = tuple(
                    GtLine(str(ln.get("text", "")), _synth_polygon(ln.get("polygon")))
                    for ln in page.get("lines", ())
                )
                words = _split_words(ln.text for ln in lines) if lines else _split_words([page.get("text", "")])
                index = int(page.get("page_index", len(pages)))
                pages.append(
                    GtPage(
                        sample_id=f"{doc}#{index}",
                        image_path=image,
                        page_index=index,
                        width=int(page["width"]) if page.get("width") is not None else None,
                        height=int(page["height"]) if page.get("height") is not None else None,
                        lines=lines,
                        words=words,
                        ordered=True,  # drawn in reading order
                    )
                )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            log.warning("synth: malformed record %s (%s), skipped", path, e)
            continue
        if not image.is_file():
            log.warning("synth: %s names %s, which does not exist; skipped", path, image)
            continue
        yield from pages


def _read_pdf_text(root: Path) -> Iterator[GtPage]:
    """Every page of every PDF under ``root``, its words what PDFium extracts from the file's own text
    (pypdfium2's ``get_text_bounded``, a hyphen that ends a line as printed): the reference a born-digital
    page read from the file must match.
    Lines are the extraction's lines in the file's order (not a reading order), without boxes."""
    import pypdfium2 as pdfium

    for path in sorted(root.rglob("*.pdf"), key=lambda p: _natural_key(str(p))):
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as e:
            log.warning("pdf-text: %s cannot be opened (%s), skipped", path, e)
            continue
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                # PDFium marks a hyphen that ends a line with U+0002 and joins the lines: the page shows "-"
                text = textpage.get_text_bounded().replace("\x02", "-\n")
                textpage.close()
                page.close()
                lines = tuple(GtLine(line.strip(), None) for line in text.splitlines() if line.strip())
                yield GtPage(f"{_rel_id(path, root, '.pdf')}#{index}", path, index, None, None, lines,
                             _split_words([text]))
        finally:
            pdf.close()


_READERS = {
    "funsd": _read_funsd,
    "sroie": _read_sroie,
    "alto": _read_alto,
    "page": _read_page,
    "lines": _read_lines,
    "synth": _read_synth,
    "pdf-text": _read_pdf_text,
}
