"""``folio bench-export``: how fast the archive formats are written from the page model, on one core.

A synthetic book stands in for a Folio output: ``pages`` pages of a 300-dpi A4 scan (2480 x 3508
px, one JPEG image per page of a PDF, the way scanners write books) with ``lines`` lines of ``words``
words each on every page, every word with its box. The writers of :mod:`pipeline.output.exports`
run on it in this process, pinned to one core where the OS allows: ALTO, PAGE-XML and hOCR per
page, the searchable PDF of the whole book, and ALTO the whole way from the book's Parquet rows
(``folio export``'s path: read the rows back, rebuild the pages, write the files). Figures are pages
per second of wall time on that core, the median of ``repeat`` runs.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import time

__all__ = ["bench_exports", "synthetic_book"]


def synthetic_book(pages: int, lines: int = 40, words: int = 10, seed: int = 0):
    """``(ExportDocument, pdf bytes)``: a book of ``pages`` scanned pages and its page model."""
    import datetime as dt

    from PIL import Image, ImageDraw

    from pipeline.output.exports import ExportDocument
    from pipeline.types import Block, Line, Page, Word

    rnd = random.Random(seed)
    width, height, margin = 2480, 3508, 300
    image = Image.new("L", (width, height), 245)
    draw = ImageDraw.Draw(image)
    line_h = (height - 2 * margin) / lines
    page_lines = []
    for k in range(lines):
        y0 = margin + k * line_h
        y1 = y0 + 0.6 * line_h
        x, ws = margin, []
        for _ in range(words):
            text = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
            w = len(text) * 0.32 * line_h
            draw.rectangle((x, y0, x + w, y1), fill=40)  # ink where the word is
            poly = ((x, y0), (x + w, y0), (x + w, y1), (x, y1))
            ws.append(Word(text, rnd.uniform(0.6, 1.0), tuple((float(a), float(b)) for a, b in poly)))
            x += w + 0.4 * line_h
        quad = ((margin, y0), (x, y0), (x, y1), (margin, y1))
        page_lines.append(Line(" ".join(w.text for w in ws), 0.9, tuple((float(a), float(b)) for a, b in quad),
                               tuple(ws)))
    blocks = tuple(Block(tuple(page_lines[i:i + 8])) for i in range(0, lines, 8))
    text = "\n\n".join("\n".join(line.text for line in b.lines) for b in blocks)
    models = ({"role": "detection", "name": "PP-OCRv6_det_small.onnx", "sha256": "0" * 64},)
    doc = ExportDocument(
        doc_id="b" * 64, source_uri="/bench/book.pdf", name="book", mime="application/pdf", pipeline_version="bench",
        config_fingerprint="0" * 16, engine="onnxruntime", models=models, run_id="bench",
        processed_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        pages=tuple(Page("/bench/book.pdf", "b" * 64, i, width, height, 300.0, blocks=blocks, text=text)
                    for i in range(pages)),
    )
    buf = io.BytesIO()
    jpeg = io.BytesIO()
    image.convert("RGB").save(jpeg, "JPEG", quality=75)
    scan = Image.open(io.BytesIO(jpeg.getvalue()))
    scan.save(buf, "PDF", save_all=True, append_images=[scan] * (pages - 1), resolution=300.0)
    return doc, buf.getvalue()


def bench_exports(pages: int = 300, repeat: int = 3, formats=("alto", "page", "hocr", "pdf")) -> dict:
    """Time each writer on :func:`synthetic_book` on one core (this process is pinned to it meanwhile);
    see the module docstring."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores is not None:
        os.sched_setaffinity(0, {min(cores)})
    try:
        return _bench(pages, repeat, formats, pinned=cores is not None)
    finally:
        if cores is not None:
            os.sched_setaffinity(0, cores)


def _bench(pages: int, repeat: int, formats, pinned: bool) -> dict:
    from pipeline.output.exports.alto import alto
    from pipeline.output.exports.hocr import hocr
    from pipeline.output.exports.pagexml import page_xml

    doc, pdf = synthetic_book(pages)
    result: dict = {"pages": pages, "one_core": pinned, "lines_per_page": 40, "words_per_line": 10}
    per_page = {"alto": lambda: [alto(doc, p) for p in doc.pages],
                "page": lambda: [page_xml(doc, p) for p in doc.pages],
                "hocr": lambda: hocr(doc)}
    if "alto" in formats:  # the whole way: the book's rows read back from Parquet, then ALTO files written
        import tempfile

        from pipeline.output.exports.export import export

        with tempfile.TemporaryDirectory() as root:
            src = _write_parquet(doc, os.path.join(root, "out"))
            times = []
            for k in range(repeat):
                t0 = time.perf_counter()
                export(src, os.path.join(root, f"exports{k}"), ["alto"])
                times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        result["alto_from_parquet"] = {"seconds": seconds, "pages_per_s": pages / seconds, "runs": times}
    for fmt in formats:
        if fmt == "pdf":
            from pipeline.output.exports.pdf import searchable_pdf

            def write(): return searchable_pdf(doc, pdf)
        else:
            write = per_page[fmt]
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            write()
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        result[fmt] = {"seconds": seconds, "pages_per_s": pages / seconds, "runs": times}
    return result


def _write_parquet(doc, dest: str) -> str:
    """The book as a Folio output: its ``documents`` row and ``pages`` rows under ``dest``."""
    from pipeline.output.parquet import DatasetWriter

    row = {"doc_id": doc.doc_id, "source_uri": doc.source_uri, "source_etag": None, "size_bytes": 0,
           "mime": doc.mime, "page_count": len(doc.pages), "pages_ok": len(doc.pages), "status": "ok",
           "error_code": None, "error_message": None, "pipeline_version": doc.pipeline_version,
           "config_fingerprint": doc.config_fingerprint, "engine": doc.engine, "models": list(doc.models),
           "run_id": doc.run_id, "processed_at": doc.processed_at, "timings_ms": None}
    DatasetWriter(dest, doc.run_id).write_shard(0, [row], list(doc.pages), doc.config_fingerprint)
    return dest
