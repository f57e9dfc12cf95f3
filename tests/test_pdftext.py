"""Born-digital PDFs: a page whose text the file holds is read from it, every other page is OCR'd
(``decode.pdf_text``). Synthetic PDFs of each kind (measure/pdfkinds.py) get the right
``text_source`` and the right text, in the decode stage (cheap, no OCR) and through ``folio run``."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pikepdf
import pypdfium2 as pdfium
import pytest
from click.testing import CliRunner

from measure import pdfkinds as k
from pipeline.cli import EXIT_OK, main
from pipeline.config import FolioConfig, load_config
from pipeline.io.pdftext import text_is_words
from pipeline.run import fingerprint
from pipeline.stages.decode import DecodeStage
from pipeline.types import DocumentRef, Page, PageImage, SourceDocument
from tests.conftest import read_rows

LINES = list(k.DEFAULT_LINES)
#: Images of text have Helvetica's metrics only with Liberation Sans; OCR reads them either way.
DPI = 150


def _decode(tmp_path: Path, name: str, data: bytes, **decode) -> list:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(data)
    config = FolioConfig.model_validate({"decode": {"pdf_dpi": DPI, **decode}})
    return list(DecodeStage(config)(DocumentRef(str(path))))


def _pages(items: list) -> list[Page | PageImage]:
    return [i for i in items if isinstance(i, (Page, PageImage))]


def test_a_born_digital_page_is_read_from_the_file_without_rendering(tmp_path):
    (page,) = _pages(_decode(tmp_path, "born", k.born_digital_pdf()))
    assert isinstance(page, Page) and page.status == "ok" and page.text_source == "pdf"
    assert page.text == "\n".join(LINES)
    assert all(line.source == "pdf" and line.confidence == 1.0 for line in page.lines)
    # where the module draws it: line i on baseline 842 - 72 - 11 - 20 i pt from x = 72 pt, at 150 dpi
    scale = DPI / 72
    assert (page.width, page.height, page.dpi) == (round(595 * scale + 0.5), round(842 * scale + 0.5), DPI)
    for i, line in enumerate(page.lines):
        x0, y1 = line.words[0].polygon[0][0], line.words[0].polygon[2][1]
        assert x0 == pytest.approx(72 * scale, abs=0.15 * 11 * scale)
        assert y1 == pytest.approx((842 - k.baseline_y(i)) * scale, abs=0.3 * 11 * scale)
    assert [w.text for line in page.lines for w in line.words] == " ".join(LINES).split()


@pytest.mark.parametrize("builder, reason", [
    (k.scanned_pdf, "an image"),
    (lambda: k.scanned_with_ocr_layer_pdf(layer_lines=["A layer from another page entirely"] * 3), "invisible"),
    (k.wrong_tounicode_pdf, "a wrong ToUnicode map"),
    (k.private_use_pdf, "private-use characters"),
    (k.no_unicode_pdf, "glyphs without Unicode"),
], ids=["scanned", "ocr-layer", "wrong-tounicode", "private-use", "no-unicode"])
def test_pages_whose_text_is_not_the_files_go_to_ocr_as_scans(tmp_path, builder, reason):
    (page,) = _pages(_decode(tmp_path, "p", builder()))
    assert isinstance(page, PageImage), reason
    assert page.text_source == "ocr" and page.text_layer == () and page.geometry is None
    assert page.image.shape[:2] == (page.height, page.width)


@pytest.mark.parametrize("builder", [k.white_text_pdf, k.offpage_text_pdf], ids=["white-on-white", "off-page"])
def test_text_a_reader_cannot_see_is_left_out(tmp_path, builder):
    (page,) = _pages(_decode(tmp_path, "p", builder()))
    assert page.text_source == "pdf" and page.text == "\n".join(LINES)


def test_a_mixed_page_sends_only_its_image_region_to_ocr(tmp_path):
    (page,) = _pages(_decode(tmp_path, "mixed", k.mixed_pdf()))
    assert isinstance(page, PageImage) and page.text_source == "pdf+ocr"
    assert [line.text for line in page.text_layer] == LINES
    scale = DPI / 72
    (region,) = page.ocr_regions
    assert region[0][0] == pytest.approx(k.MIXED_IMAGE_BOX[0] * scale, abs=2)
    # the window around the region, not the page
    assert page.image.shape[0] < page.height / 2 and page.geometry.dy > 0


def test_ocr_setting_reads_every_page_as_a_scan(tmp_path):
    (page,) = _pages(_decode(tmp_path, "born", k.born_digital_pdf(), pdf_text="ocr"))
    assert isinstance(page, PageImage) and page.text_source == "ocr"


def test_hostile_born_digital_inputs_stay_within_the_limits(tmp_path):
    *_, doc = _decode(tmp_path, "many", k.many_pages_pdf(10_000))
    assert isinstance(doc, SourceDocument) and doc.failure.code == "too_many_pages"
    dense = k.dense_text_pdf(200_000)
    t0 = time.perf_counter()
    (page,) = _pages(_decode(tmp_path, "dense", dense))
    assert time.perf_counter() - t0 < 30
    # PDFium marks a hyphen that ends a line with U+0002 and joins the lines; the page shows a hyphen
    words = pdfium.PdfDocument(dense)[0].get_textpage().get_text_bounded().replace("\x02", "-\n").split()
    assert page.text_source == "pdf" and page.text.split() == words


def test_text_that_is_not_words_is_told_apart():
    assert text_is_words("Invoice number 2024-0117 " * 3 + "Total due EUR 1,234.56 for services rendered in March")[0]
    shifted = "".join(chr(ord(c) + 1) if c.isalpha() else c for c in " ".join(LINES * 2))
    assert not text_is_words(shifted)[0]
    assert not text_is_words("Prix unitaire Ã© rÃ©duit â€™ Ã  payer " * 2)[0]
    assert text_is_words("Счёт на оплату номер для клиента общество с ограниченной ответственностью " * 2)[0]
    assert text_is_words("发票号码 2024 合计金额 人民币")[0]  # a script it has no words for: not judged


def test_the_setting_is_in_the_fingerprint():
    auto, ocr = load_config(None, environ={}), load_config(None, {"decode.pdf_text": "ocr"}, environ={})
    assert auto.decode.pdf_text == "auto"
    assert fingerprint(auto) != fingerprint(ocr)
    assert "pdf_text" not in ocr.output_settings("onnxruntime").get("decode", {})  # as before the setting existed


@pytest.fixture(scope="module")
def kinds_run(tmp_path_factory) -> tuple[Path, Path]:
    """One ``folio run`` over a PDF of each kind: the OCR'd pages are read by the real models."""
    src, dest = tmp_path_factory.mktemp("kinds"), tmp_path_factory.mktemp("kinds-out")
    for name, data in {
        "born": k.born_digital_pdf(pages=2),
        "scanned": k.scanned_pdf(),
        "layer": k.scanned_with_ocr_layer_pdf(layer_lines=["Lorem ipsum dolor sit amet"] * len(LINES)),
        "mixed": k.mixed_pdf(),
        "lying": k.wrong_tounicode_pdf(),
    }.items():
        (src / f"{name}.pdf").write_bytes(data)
    result = CliRunner().invoke(main, ["run", str(src), str(dest), "--quiet", "--set", f"decode.pdf_dpi={DPI}"],
                                catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    return src, dest


def _rows(dest: Path) -> dict[str, tuple[dict, list[dict]]]:
    docs = {r["doc_id"]: r for r in read_rows(dest, "documents")}
    out: dict[str, tuple[dict, list[dict]]] = {}
    for doc in docs.values():
        out[Path(doc["source_uri"]).stem] = (doc, [])
    for row in sorted(read_rows(dest, "pages"), key=lambda r: r["page_index"]):
        out[Path(docs[row["doc_id"]]["source_uri"]).stem][1].append(row)
    return out


def _words(text: str) -> list[str]:
    return text.split()


def test_each_kind_gets_its_source_and_its_text(kinds_run):
    rows = _rows(kinds_run[1])
    expected = {"born": "pdf", "scanned": "ocr", "layer": "ocr", "mixed": "pdf+ocr", "lying": "ocr"}
    for name, source in expected.items():
        doc, pages = rows[name]
        assert doc["status"] == "ok" and all(p["text_source"] == source for p in pages), name
        assert doc["pages_pdf_text"] == (len(pages) if source != "ocr" else 0), name
        assert doc["pages_ocr"] == (len(pages) if source != "pdf" else 0), name
    born = rows["born"][1]
    assert born[0]["text"] == "\n".join(LINES) + "\n\nPage 1 of 2"  # the footer a block of its own
    assert born[1]["text"] == "\n".join(LINES) + "\n\nPage 2 of 2"
    assert born[0]["lines"][-1]["block_kind"] == "footer"
    assert {line["source"] for page in born for line in page["lines"]} == {"pdf"}
    assert born[0]["timings_ms"]["detect"] is None  # never rendered nor detected
    # OCR reads what the page shows: the image's lines, not the invisible layer's or the lying map's text
    for name in ("scanned", "layer", "lying"):
        text = rows[name][1][0]["text"]
        assert "Lorem" not in text and "Jowpjdf" not in text, name
        assert sum(w in _words(text) for w in _words(" ".join(LINES))) >= 0.8 * len(_words(" ".join(LINES))), name
    (mixed,) = rows["mixed"][1]
    from_file = [line["text"] for line in mixed["lines"] if line["source"] == "pdf"]
    read = " ".join(line["text"] for line in mixed["lines"] if line["source"] == "ocr")
    assert sorted(from_file) == sorted(LINES)
    assert sum(w in _words(read) for w in _words(" ".join(k.DEFAULT_IMAGE_LINES))) >= 0.8 * len(
        _words(" ".join(k.DEFAULT_IMAGE_LINES)))


def test_exports_keep_born_digital_pages_and_add_no_second_layer(kinds_run, tmp_path):
    src, dest = kinds_run
    result = CliRunner().invoke(main, ["export", str(dest), str(tmp_path), "--format", "pdf", "--format", "alto"],
                                catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    out = {p.stem: p for p in (tmp_path / "pdf").rglob("*.pdf")}
    with pikepdf.open(io.BytesIO((src / "born.pdf").read_bytes())) as original, pikepdf.open(out["born"]) as exported:
        for a, b in zip(original.pages, exported.pages):
            assert [c.read_bytes() for c in _streams(a)] == [c.read_bytes() for c in _streams(b)]
    for name in ("born", "mixed"):
        pdf = pdfium.PdfDocument(str(out[name]))
        text = pdf[0].get_textpage().get_text_bounded()
        assert text.split().count("Invoice") == 1, name  # the file's text, once
    assert (tmp_path / "alto").is_dir()


def _streams(page) -> list:
    contents = page.obj.get("/Contents")
    return list(contents) if isinstance(contents, pikepdf.Array) else [contents]


def test_eval_pdf_text_reads_the_files_own_words(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "eval" / "pdf-text"
    result = CliRunner().invoke(main, ["eval", "pdf-text", str(fixture), "--quiet"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    assert "word P 1.000 R 1.000 F1 1.000" in result.output and "pages by text source pdf 2" in result.output


def test_a_mixed_page_whose_image_ocr_fails_keeps_the_files_text(tmp_path):
    from pipeline.stages.factory import PageStage

    def broken(pages):
        raise RuntimeError("the recognizer fell over")

    (image,) = _pages(_decode(tmp_path, "mixed", k.mixed_pdf()))
    (page,) = PageStage([("ocr", broken)])([image])
    assert page.status == "ok" and page.text_source == "pdf"
    assert [line.text for line in page.lines] == LINES
