"""OCR systems under evaluation, behind one small interface (:class:`System`): images in, lines,
words and page text out.

- ``folio``: Folio's page stage (whatever engine the config names), pages in
  batches of ``runner.batch_pages`` so recognition is batched across pages;
- ``rapidocr``: RapidOCR's own ``RapidOCR()`` call, one page at a time (the
  same PP-OCR models, their pre/post-processing);
- ``tesseract``: the ``tesseract`` CLI, one process per page, its TSV output;
- ``tesseract-alto`` / ``tesseract-pdf``: the same, read back from the ALTO file or the
  searchable PDF Tesseract writes itself (its own word boxes and reading order, as an
  archive would load them);
- ``folio-alto`` / ``folio-pdf``: Folio's pages written by its ALTO and searchable PDF/A
  exports and read back the same way, so the two systems' files are compared alike.

:func:`null_stage` is a page stage that reads nothing, for timing the runners alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import FolioConfig
from pipeline.types import Block, Line as PageLine, Page, PageImage, PageTimings

__all__ = ["SYSTEMS", "PagePrediction", "System", "FolioSystem", "FolioExportSystem", "RapidOcrSystem",
           "TesseractSystem", "make_system",
           "null_stage"]

SYSTEMS = ("folio", "rapidocr", "tesseract", "tesseract-alto", "tesseract-pdf", "folio-alto", "folio-pdf")

#: A recognised line: polygon (4 points in page pixels), text, confidence.
Line = tuple[Sequence[Sequence[float]], str, float]
#: A recognised word: polygon (4 points in page pixels), text.
Word = tuple[Sequence[Sequence[float]], str]


@dataclass
class PagePrediction:
    """What a system read on a page: its lines, its text, and its words where the system gives them."""

    lines: list[Line]
    text: str
    words: list[Word] = field(default_factory=list)


class System:
    """An OCR system under evaluation: images in, lines and page text out."""

    name: str = "system"

    def predict(self, images: Sequence[np.ndarray]) -> list[PagePrediction]:
        raise NotImplementedError

    @property
    def batch(self) -> int:
        return 1


class FolioSystem(System):
    name = "folio"

    def __init__(self, config: FolioConfig):
        from pipeline.stages.factory import create_page_stage

        self.config = config
        self.stage = create_page_stage(config)

    @property
    def batch(self) -> int:
        return self.config.runner.batch_pages

    def predict(self, images):
        pages = self.stage([PageImage("eval", "eval", i, image) for i, image in enumerate(images)])
        return [
            PagePrediction(
                [(line.polygon, line.text, line.confidence) for line in page.lines], page.text,
                [(word.polygon, word.text) for line in page.lines for word in line.words],
            )
            for page in pages
        ]


class FolioExportSystem(FolioSystem):
    """Folio's pages as its ALTO or searchable PDF/A export holds them, read back as Tesseract's are."""

    def __init__(self, config: FolioConfig, output: str):
        super().__init__(config)
        if output not in ("alto", "pdf"):
            raise ValueError(f"unknown export {output!r}")
        self.output = output
        self.name = f"folio-{output}"

    def predict(self, images):
        import dataclasses

        import cv2

        from pipeline import __version__
        from pipeline.output.exports import ExportDocument

        pages = self.stage([PageImage("eval", "eval", i, image) for i, image in enumerate(images)])
        preds = []
        for image, page in zip(images, pages):
            page = dataclasses.replace(page, page_index=0)
            doc = ExportDocument("eval", "eval.png", "eval", "image/png", __version__, "", self.config.engine.name,
                                 (), "eval", None, (page,))
            with tempfile.TemporaryDirectory() as tmp:
                if self.output == "alto":
                    from pipeline.output.exports.alto import alto

                    path = Path(tmp, "page.xml")
                    path.write_bytes(alto(doc, page))
                    preds.append(_read_alto_prediction(path))
                else:
                    from pipeline.output.exports.pdf import searchable_pdf

                    ok, png = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
                    path = Path(tmp, "page.pdf")
                    path.write_bytes(searchable_pdf(doc, png.tobytes()))
                    preds.append(_read_pdf_prediction(path, image.shape[1]))
        return preds


class RapidOcrSystem(System):
    """RapidOCR 3.x with its defaults; as many ONNX Runtime threads as cores Folio computes on
    (``runner.ocr_threads x engine.intra_op_threads``), for a fair comparison."""

    name = "rapidocr"

    def __init__(self, config: FolioConfig):
        try:
            from rapidocr import RapidOCR
        except ImportError as e:  # pragma: no cover
            raise RuntimeError("the rapidocr package is not installed: pip install rapidocr") from e
        threads = config.runner.ocr_threads * config.engine.intra_op_threads
        self.engine = RapidOCR(
            params={
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "Global.log_level": "error",
            }
        )

    def predict(self, images):
        preds = []
        for image in images:
            # RapidOCR takes OpenCV's BGR order
            result = self.engine(np.ascontiguousarray(image[:, :, ::-1]))
            if result.boxes is None or result.txts is None:
                preds.append(PagePrediction([], ""))
                continue
            lines = [(np.asarray(b).tolist(), t, float(s)) for b, t, s in zip(result.boxes, result.txts, result.scores)]
            preds.append(PagePrediction(lines, "\n".join(result.txts)))
        return preds


class TesseractSystem(System):
    """The ``tesseract`` CLI (``OMP_THREAD_LIMIT=1``), one process per page.

    ``output`` is what is read back: ``tsv`` (line boxes from its TSV), ``alto`` (its ALTO file)
    or ``pdf`` (the text layer of its searchable PDF, as PDFium extracts it).
    """

    def __init__(self, config: FolioConfig, lang: str = "eng", output: str = "tsv"):
        if shutil.which("tesseract") is None:
            raise RuntimeError("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")
        if output not in ("tsv", "alto", "pdf"):
            raise ValueError(f"unknown tesseract output {output!r}")
        self.lang = lang
        self.output = output
        self.name = "tesseract" if output == "tsv" else f"tesseract-{output}"

    def predict(self, images):
        from PIL import Image

        preds = []
        env = dict(os.environ, OMP_THREAD_LIMIT="1")
        for image in images:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp, "page.png")
                Image.fromarray(image).save(path, dpi=(300, 300))
                base = "stdout" if self.output == "tsv" else str(Path(tmp, "out"))
                proc = subprocess.run(
                    ["tesseract", str(path), base, "-l", self.lang, self.output],
                    capture_output=True, text=True, env=env, check=False,
                )
                if self.output == "tsv":
                    preds.append(_parse_tsv_lines(proc.stdout))
                elif proc.returncode != 0:
                    raise RuntimeError(f"tesseract failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
                elif self.output == "alto":
                    preds.append(_read_alto_prediction(Path(tmp, "out.xml")))
                else:
                    preds.append(_read_pdf_prediction(Path(tmp, "out.pdf"), image.shape[1]))
        return preds


def _read_alto_prediction(path: Path) -> PagePrediction:
    """An ALTO file's lines (file order), page text and word boxes."""
    import xml.etree.ElementTree as ET

    from measure.datasets import alto_lines, alto_words

    doc = ET.parse(path).getroot()
    lines = [line for line in alto_lines(doc)[0] if line.text and line.polygon]
    return PagePrediction([(line.polygon, line.text, 1.0) for line in lines], "\n".join(line.text for line in lines),
                          [(word.polygon, word.text) for word in alto_words(doc) if word.polygon])


def _read_pdf_prediction(path: Path, width_px: int) -> PagePrediction:
    """A searchable PDF's first page as PDFium extracts it, invisible text included: the text in the
    file's order, and its words and lines (split at PDFium's line breaks) in image pixels."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from pipeline.types import box_polygon

    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[0]
        width_pt, height_pt = page.get_size()
        scale = width_px / width_pt
        textpage = page.get_textpage()
        raw = textpage.raw
        lines: list[list[tuple[str, tuple]]] = [[]]
        word: list[tuple[str, tuple]] = []

        def end_word() -> None:
            if word:
                boxes = [b for _, b in word]
                lines[-1].append(("".join(c for c, _ in word),
                                  (min(b[0] for b in boxes), min(b[1] for b in boxes),
                                   max(b[2] for b in boxes), max(b[3] for b in boxes))))
                word.clear()

        for i in range(pdfium_c.FPDFText_CountChars(raw)):
            ch = chr(pdfium_c.FPDFText_GetUnicode(raw, i))
            if ch in "\r\n":
                end_word()
                if lines[-1]:
                    lines.append([])
            elif ch.isspace() or pdfium_c.FPDFText_IsGenerated(raw, i):
                end_word()
            else:
                left, bottom, right, top = textpage.get_charbox(i)
                word.append((ch, (left * scale, (height_pt - top) * scale, right * scale,
                                  (height_pt - bottom) * scale)))
        end_word()
        textpage.close()
        page.close()
    finally:
        pdf.close()
    out_lines, out_words = [], []
    for line in lines:
        if not line:
            continue
        box = (min(b[0] for _, b in line), min(b[1] for _, b in line),
               max(b[2] for _, b in line), max(b[3] for _, b in line))
        text = " ".join(t for t, _ in line)
        out_lines.append((box_polygon(box), text, 1.0))
        out_words.extend((box_polygon(b), t) for t, b in line)
    return PagePrediction(out_lines, "\n".join(t for _, t, _ in out_lines), out_words)


def _parse_tsv_lines(tsv: str) -> PagePrediction:
    from pipeline.models.tesseract import parse_tsv

    lines = parse_tsv(tsv)
    return PagePrediction([(line.quad.tolist(), line.text, line.confidence) for line in lines],
                          "\n".join(line.text for line in lines),
                          [(box.tolist(), text) for line in lines for text, _, box in line.words])


def null_stage(config: FolioConfig):
    """A page stage that reads nothing: every page gets the same 40 lines of text, at once.

    For measuring the runners alone (scheduling, transfer, assembly, writing,
    the driver's memory over a long run) without the models' time:
    ``folio bench DIR --systems folio-ray --set plugins.stage=measure.systems:null_stage``.
    """

    def run(pages: Sequence[PageImage]) -> list[Page]:
        out = []
        for page in pages:
            h, w = page.height, page.width
            step = h / 40
            lines = tuple(
                PageLine(f"line {k} of a page the null stage did not read", 1.0,
                         ((0.0, k * step), (float(w), k * step), (float(w), (k + 1) * step), (0.0, (k + 1) * step)))
                for k in range(40)
            )
            out.append(Page(page.key, page.doc_id, page.page_index, w, h, page.dpi, blocks=(Block(lines),),
                            text="\n".join(line.text for line in lines),
                            timings=PageTimings(decode=page.timings.decode, detect=0.0, recognize=0.0)))
        return out

    return run


def make_system(name: str, config: FolioConfig) -> System:
    if name == "folio":
        return FolioSystem(config)
    if name == "rapidocr":
        return RapidOcrSystem(config)
    if name == "tesseract":
        return TesseractSystem(config)
    if name in ("tesseract-alto", "tesseract-pdf"):
        return TesseractSystem(config, output=name.split("-")[1])
    if name in ("folio-alto", "folio-pdf"):
        return FolioExportSystem(config, name.split("-")[1])
    raise ValueError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}")
