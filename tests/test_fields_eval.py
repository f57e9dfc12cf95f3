"""`folio eval sroie-keys` and `folio eval invoice2data` (measure/fields_eval.py): the scorer's
arithmetic on hand-made fields, and the command end to end on tiny sets made here (no OCR runs: SROIE
with --system gt-lines, invoice2data on a born-digital PDF). Nothing here depends on how well the
fields stage extracts: it is developed on its own."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from measure.fields_eval import (
    DocResult,
    gt_lines_page,
    matches,
    normalize_expected,
    read_sroie_keys,
    score_document,
    summarize_fields,
)
from pipeline.types import DocumentFields, Field

SROIE_FIELDS = ["supplier_name", "document_date", "supplier_address", "total"]


def _field(name: str, value: str, confidence: float = 0.9, method: str = "label") -> Field:
    return Field(name, value, value, confidence, 0, None, method)


def test_ground_truth_values_are_normalised_for_comparison():
    assert normalize_expected("document_date", "25/12/2018", "DMY") == "2018-12-25"
    assert normalize_expected("document_date", "05/03/2018", "DMY") == "2018-03-05"  # day first
    assert normalize_expected("document_date", "18-11-18", "DMY") == "2018-11-18"
    assert normalize_expected("document_date", "2014-08-03") == "2014-08-03"
    assert normalize_expected("total", "9.00") == normalize_expected("total", "9") == "9"
    assert normalize_expected("total", "RM9.00") == "9" and normalize_expected("total", "$8.20") == "8.2"
    assert normalize_expected("total", repr(1939.0)) == "1939"
    assert normalize_expected("supplier_name", "BOOK TA .K (TAMAN DAYA) SDN BHD") == "bookta.k(tamandaya)sdnbhd"
    assert normalize_expected("currency", " eur ") == "EUR"
    assert normalize_expected("document_number", "#BLR_WFLD2015") == "blr_wfld2015"
    assert normalize_expected("total", "") is None


def test_a_prediction_is_right_only_when_its_normalised_value_is_the_ground_truths():
    norm = normalize_expected
    assert matches("total", "9.00", norm("total", "RM 9.00"))
    assert matches("total", "1234.5", norm("total", "1234.50"))
    assert not matches("total", "9.01", norm("total", "9.00"))
    assert not matches("total", "nine", norm("total", "9.00"))
    assert matches("document_date", "2018-12-25", norm("document_date", "25/12/2018"))
    assert not matches("document_date", "2018-12-05", norm("document_date", "12/05/2018"))  # read month first
    assert not matches("document_date", "25/12/2018", norm("document_date", "25/12/2018"))  # not ISO: the contract
    # names: spacing and case do not count; containment only where asked for (invoice2data's issuer)
    gt = norm("supplier_name", "BOOK TA .K (TAMAN DAYA) SDN BHD")
    assert matches("supplier_name", "Book Ta .K(Taman Daya) Sdn Bhd", gt)
    assert not matches("supplier_name", "BOOK TA .K (TAMAN DAYA) SDN BND", gt)
    aws = norm("supplier_name", "Amazon Web Services")
    assert matches("supplier_name", "Amazon Web Services, Inc.", aws, contains=True)
    assert not matches("supplier_name", "Amazon Web Services, Inc.", aws)
    assert not matches("supplier_name", "Am", aws, contains=True)  # too short to say anything
    assert matches("document_number", "BLR_WFLD2015", norm("document_number", "#BLR_WFLD2015"))
    assert matches("currency", "EUR", norm("currency", "eur"))
    assert not matches("total", "9.00", None)  # a ground truth that would not normalise is never matched


def test_scores_per_field_calibration_methods_and_review_add_up():
    a = score_document(
        "a", {"supplier_name": "ACME SDN BHD", "document_date": "25/12/2018", "supplier_address": "1 JALAN X",
              "total": "9.00"},
        DocumentFields((_field("supplier_name", "ACME  SDN BHD", 0.95, "company-words"),
                        _field("supplier_address", "2 JALAN X", 0.6, "below-supplier"),
                        _field("document_date", "2018-12-25", 0.85, "label")), review=("missing:total",)),
        SROIE_FIELDS)
    b = score_document(
        "b", {"supplier_name": "BETA", "document_date": "01/02/2018", "total": "5.00"},  # no address
        DocumentFields((_field("supplier_name", "GAMMA", 0.4, "top-line"),
                        _field("supplier_address", "5 somewhere", 0.5, "below-supplier"),
                        _field("document_date", "2018-01-02", 0.75, "first-date"),  # month first: wrong
                        _field("total", "5", 1.0, "label"))),
        SROIE_FIELDS)
    assert [r.status for r in a] == ["right", "right", "wrong", "missed"]
    assert [r.status for r in b] == ["wrong", "wrong", "unscored", "right"]
    docs = [DocResult("a", "a.jpg", a, None, 1.0, 100.0), DocResult("b", "b.jpg", b, None, 3.0, 300.0)]
    docs[0].found = DocumentFields(review=("missing:total",))
    docs[1].found = DocumentFields()
    s = summarize_fields(docs, SROIE_FIELDS)
    pf = s["per_field"]
    name = pf["supplier_name"]
    assert (name["precision"], name["recall"], name["f1"]) == (0.5, 0.5, 0.5)
    assert pf["document_date"]["f1"] == 0.5
    assert pf["supplier_address"] == {**pf["supplier_address"], "right": 0, "wrong": 1, "missed": 0, "unscored": 1,
                                      "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert pf["total"]["precision"] == 1.0 and pf["total"]["recall"] == 0.5
    assert pf["total"]["f1"] == pytest.approx(2 / 3)
    assert s["mean_f1"] == pytest.approx((0.5 + 0.5 + 0.0 + 2 / 3) / 4)
    bins = {b["bin"]: b for b in s["calibration"]}
    assert [b["count"] for b in s["calibration"]] == [1, 1, 1, 1, 2]  # the unscored prediction is left out
    assert bins["0.9-1.0"]["mean_confidence"] == pytest.approx(0.975) and bins["0.9-1.0"]["accuracy"] == 1.0
    assert bins["0.7-0.8"]["accuracy"] == 0.0 and bins["0.8-0.9"]["accuracy"] == 1.0
    assert s["per_method"]["document_date/first-date"] == {"count": 1, "right": 0, "accuracy": 0.0}
    assert s["per_method"]["supplier_name/company-words"]["accuracy"] == 1.0
    assert sum(m["count"] for m in s["per_method"].values()) == 6
    assert s["review"] == {"flagged": 1, "rate": 0.5, "reasons": {"missing:total": 1}, "documents_with_an_error": 2,
                           "flagged_of_those_with_an_error": 1, "flagged_without_an_error": 0}
    assert s["extract_ms_median"] == 2.0 and s["ocr_ms_median"] == 200.0


# -- a tiny SROIE set -----------------------------------------------------------------------------------

RECEIPTS = {
    "X001": (
        ["ACME TRADING SDN BHD", "(123456-X)", "NO 12, JALAN MAJU 3,", "47100 PUCHONG, SELANGOR",
         "TEL: 03-1234 5678", "DATE: 25/12/2018 10:15", "ITEM A 2 x 4.50 9.00", "TOTAL 9.00", "THANK YOU"],
        {"company": "ACME TRADING SDN BHD", "date": "25/12/2018",
         "address": "NO 12, JALAN MAJU 3, 47100 PUCHONG, SELANGOR", "total": "9.00"},
    ),
    "X002": (
        ["KEDAI BUKU MAJU ENTERPRISE", "LOT 5, JALAN SATU,", "50000 KUALA LUMPUR", "INVOICE NO: CS00123",
         "03/02/2018", "PEN 2.50", "BOOK 12.00", "TOTAL RM 14.50", "CASH 20.00", "CHANGE 5.50"],
        {"company": "KEDAI BUKU MAJU ENTERPRISE", "date": "03/02/2018",
         "address": "LOT 5, JALAN SATU, 50000 KUALA LUMPUR", "total": ""},  # an empty key: not scored
    ),
}


@pytest.fixture()
def sroie_set(tmp_path):
    from PIL import Image

    root = tmp_path / "sroie"
    for sub in ("img", "box", "key"):
        (root / sub).mkdir(parents=True)
    for doc, (lines, key) in RECEIPTS.items():
        Image.new("L", (400, 40 + 30 * len(lines)), 255).save(root / "img" / f"{doc}.jpg")
        rows = []
        for i, text in enumerate(lines):
            x0, y0, x1, y1 = 20, 20 + 30 * i, 20 + 12 * len(text), 40 + 30 * i
            rows.append(f"{x0},{y0},{x1},{y0},{x1},{y1},{x0},{y1},{text}")
        (root / "box" / f"{doc}.csv").write_text("\n".join(rows) + "\n")
        (root / "key" / f"{doc}.json").write_text(json.dumps(key))
    return root


def test_gt_lines_make_a_page_with_words_along_each_line(sroie_set):
    docs = read_sroie_keys(sroie_set)
    assert [d.doc for d in docs] == ["X001", "X002"]
    assert docs[1].expected.keys() == {"supplier_name", "document_date", "supplier_address"}  # total was empty
    page = gt_lines_page(docs[0])
    assert page.width == 400 and [line.text for line in page.lines][:3] == list(RECEIPTS["X001"][0][:3])
    line = next(line for line in page.lines if line.text == "NO 12, JALAN MAJU 3,")
    assert [w.text for w in line.words] == ["NO", "12,", "JALAN", "MAJU", "3,"]
    xs = [w.polygon[0][0] for w in line.words]
    assert xs == sorted(xs) and xs[0] == 20.0 and line.words[-1].polygon[1][0] == pytest.approx(20 + 12 * 20)


def test_eval_sroie_keys_on_gt_lines_runs_end_to_end(sroie_set, tmp_path):
    from pipeline.cli import main

    out = tmp_path / "fields.json"
    result = CliRunner().invoke(main, ["eval", "sroie-keys", str(sroie_set), "--system", "gt-lines", "--json",
                                       str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("gt-lines on sroie-keys (2 documents): mean field F1 ")
    assert "supplier_name F1" in last and "total F1" in last
    assert "X001" in result.output and "0.9-1.0" in result.output  # the table and the calibration
    report = json.loads(out.read_text())
    assert report["documents"] == 2 and set(report["per_field"]) == set(SROIE_FIELDS)
    assert len(report["calibration"]) == 5 and isinstance(report["per_method"], dict)
    detail = {d["doc"]: d for d in report["documents_detail"]}
    assert set(detail) == {"X001", "X002"}
    for d in detail.values():
        assert d["error"] is None and d["extract_ms"] is not None and d["ocr_ms"] is None
        assert all({"field", "value", "method", "confidence"} <= p.keys() for p in d["predictions"])
    assert all(s["field"] != "total" or s["status"] == "unscored" for s in detail["X002"]["scored"])
    for key, m in report["per_method"].items():
        assert key.split("/")[0] in SROIE_FIELDS and 0 <= m["accuracy"] <= 1

    quiet = CliRunner().invoke(main, ["eval", "sroie-keys", str(sroie_set), "--system", "gt-lines", "--quiet",
                                      "--limit", "1"])
    assert quiet.exit_code == 0, quiet.output
    assert "(1 documents)" in quiet.output and "X001" not in quiet.output
    assert CliRunner().invoke(main, ["eval", "sroie-keys", str(sroie_set), "--system", "rapidocr"]).exit_code == 2


def test_eval_takes_pages_from_an_existing_output(sroie_set, tmp_path):
    """--from-output: pages read back from Parquet score as the same pages did before they were written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import schema
    from pipeline.cli import main

    dest = tmp_path / "out"
    for table in ("pages", "documents"):
        (dest / table / "run_date=2024-01-01").mkdir(parents=True)
    pages, docs = [], []
    for i, doc in enumerate(read_sroie_keys(sroie_set)):
        page = gt_lines_page(doc).replace(doc_id=f"d{i}")
        pages.append(schema.page_row(page, run_id="r1", fingerprint="f"))
        docs.append({"doc_id": f"d{i}", "source_uri": f"/somewhere/img/{doc.path.name}", "status": "ok",
                     "run_id": "r1", "processed_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                     "timings_ms": {"read": 1.0, "decode": 2.0, "ocr": 30.0, "total": 33.0}})
    pq.write_table(pa.Table.from_pylist(pages, schema=schema.PAGES),
                   dest / "pages" / "run_date=2024-01-01" / "part-r1-0.parquet")
    pq.write_table(pa.Table.from_pylist(docs, schema=schema.DOCUMENTS),
                   dest / "documents" / "run_date=2024-01-01" / "part-r1-0.parquet")
    runner = CliRunner()
    base, stored = tmp_path / "base.json", tmp_path / "stored.json"
    args = ["eval", "sroie-keys", str(sroie_set), "--quiet", "--json"]
    assert runner.invoke(main, [*args, str(base), "--system", "gt-lines"]).exit_code == 0
    result = runner.invoke(main, [*args, str(stored), "--from-output", str(dest)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("folio on sroie-keys (2 documents): mean field F1 ")
    a, b = json.loads(base.read_text()), json.loads(stored.read_text())
    assert b["per_field"] == a["per_field"] and b["errors"] == {} and b["ocr_ms_median"] == 33.0
    assert [d["scored"] for d in b["documents_detail"]] == [d["scored"] for d in a["documents_detail"]]


# -- a tiny invoice2data set ----------------------------------------------------------------------------


def test_eval_invoice2data_reads_a_born_digital_pdf_end_to_end(tmp_path):
    from measure.pdfkinds import born_digital_pdf
    from pipeline.cli import main

    root = tmp_path / "invoices"
    root.mkdir()
    (root / "acme.pdf").write_bytes(born_digital_pdf(lines=[
        "ACME Trading GmbH", "Hauptstrasse 5, 10115 Berlin", "Invoice number 2024-0117", "Date 17.01.2024",
        "Widget 2 x 617,28 1.234,56", "Total EUR 1.234,56"]))
    (root / "acme.json").write_text(json.dumps([{
        "issuer": "ACME Trading", "amount": 1234.56, "date": "2024-01-17", "invoice_number": "2024-0117",
        "currency": "EUR", "desc": "Invoice from ACME Trading"}]))
    (root / "textonly.json").write_text(json.dumps([{"issuer": "Nobody", "amount": 1.0}]))
    (root / "textonly.txt").write_text("Nobody\nTotal 1.00\n")
    out = tmp_path / "inv.json"
    result = CliRunner().invoke(main, ["eval", "invoice2data", str(root), "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("folio on invoice2data (1 documents): mean field F1 ")
    assert "left out: textonly" in result.output and "contains" in result.output
    report = json.loads(out.read_text())
    assert set(report["per_field"]) == {"supplier_name", "total", "document_date", "document_number", "currency"}
    (doc,) = report["documents_detail"]
    assert doc["doc"] == "acme" and doc["error"] is None and doc["ocr_ms"] is not None
    assert {s["field"]: s["expected_normalised"] for s in doc["scored"] if s["field"] in ("total", "document_date")} \
        == {"total": "1234.56", "document_date": "2024-01-17"}
    assert CliRunner().invoke(main, ["eval", "invoice2data", str(root), "--system", "gt-lines"]).exit_code == 2


def test_a_prediction_where_the_ground_truth_has_no_value_is_not_scored():
    (r,) = score_document("empty", {"total": " "}, DocumentFields((_field("total", "1.00"),)), ["total"])
    assert r.status == "unscored" and not r.scored
    assert score_document("empty", {}, DocumentFields(), ["total"]) == []  # neither: nothing to say
    (missed,) = score_document("doc", {"total": "1.00"}, None, ["total"])  # nothing read at all
    assert missed.status == "missed" and missed.predicted is None
