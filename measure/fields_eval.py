"""Scoring the fields stage (:mod:`pipeline.stages.fields`) on labelled invoices and receipts: what
``folio eval sroie-keys`` and ``folio eval invoice2data`` do.

Formats (:data:`FIELD_FORMATS`):

- ``sroie-keys``: SROIE 2019 receipts (``img/<id>.jpg``, ``box/<id>.csv``,
  ``key/<id>.json`` with ``company``, ``date``, ``address``, ``total``), scored as
  ``supplier_name``, ``document_date``, ``supplier_address`` and ``total``.
- ``invoice2data``: the invoice2data regression invoices (``<name>.pdf`` or an
  image, beside ``<name>.json``: a list holding one object with ``issuer``,
  ``amount``, ``date``, ``invoice_number``, ``currency``...), scored as
  ``supplier_name``, ``total``, ``document_date``, ``document_number`` and
  ``currency``. A name with no PDF or image beside it (``Orlen.txt``) is left out,
  with a note. Where both a PDF and an image exist the PDF is read (its own text,
  as ``folio run`` reads it).

Systems: ``folio`` reads each file as ``folio run`` does (the decode stage, then
the page stage for pages that need OCR), or takes the pages from an existing
output (``from_output``); ``gt-lines`` (SROIE only) makes a page of the box
file's own lines, with no OCR, so the score is the extraction's alone. Then
:class:`~pipeline.stages.fields.FieldsStage` runs on the document's pages.

How values are compared (a prediction is right when its value, as the stage
normalised it, equals the ground truth's, normalised here):

- names and addresses: after removing all whitespace and case folding
  (``"".join(s.split()).casefold()``): the annotators' spacing around punctuation
  differs from the print's (``BOOK TA .K (TAMAN DAYA)`` vs ``BOOK TA .K(TAMAN DAYA)``),
  and spacing is not what the extraction is about. invoice2data's ``issuer`` is a
  short name (``Amazon Web Services``) where the invoice prints a longer one, so
  there a supplier name is also right when one normalised string contains the
  other (the shorter at least 3 characters);
- document numbers: the same, and a leading or trailing ``#`` or ``:`` is
  dropped (invoice2data's Flipkart number is ``#BLR_WFLD...``);
- dates: ISO 8601 strings; the ground truth's are normalised with
  :func:`pipeline.stages.values.find_dates` (SROIE day first: Malaysian receipts);
- amounts: :class:`~decimal.Decimal` equality (``9.00`` = ``9``; ``RM9.00`` in
  the ground truth is ``9.00``);
- currency: ISO 4217 codes, upper case.

A field the ground truth does not have (an empty SROIE ``total``, a template
that does not extract it) is not scored: a prediction there is counted as
``unscored``, in neither precision nor recall. Precision is right predictions
over scored predictions, recall right predictions over ground-truth fields.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from measure.datasets import GtLine, read_dataset
from measure.evaluate import DocumentReader
from pipeline.config import FolioConfig
from pipeline.types import DocumentFields, Line, Page, Word

__all__ = ["FIELD_FORMATS", "SROIE_KEYS", "INVOICE2DATA_KEYS", "CONFIDENCE_BINS", "FieldDoc", "FieldResult",
           "DocResult", "read_sroie_keys", "read_invoice2data", "normalize_expected", "matches", "score_document",
           "summarize_fields", "gt_lines_page", "evaluate_fields", "render", "summary_line", "report_json"]

log = logging.getLogger(__name__)

#: The ``folio eval`` formats this module scores.
FIELD_FORMATS = ("sroie-keys", "invoice2data")
#: SROIE key -> Folio field, in the order they are reported.
SROIE_KEYS = {"company": "supplier_name", "date": "document_date", "address": "supplier_address", "total": "total"}
#: invoice2data key -> Folio field, in the order they are reported.
INVOICE2DATA_KEYS = {"issuer": "supplier_name", "amount": "total", "date": "document_date",
                     "invoice_number": "document_number", "currency": "currency"}
#: Confidence bins of the calibration table: [lo, hi), the last one closed.
CONFIDENCE_BINS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0))

_DATES = {"document_date", "due_date", "period_start", "period_end"}
_AMOUNTS = {"total", "subtotal", "tax"}
_NAMES = {"supplier_name", "supplier_address", "customer_name"}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}


@dataclass(frozen=True)
class FieldDoc:
    """One labelled document.

    Attributes:
        doc: its id (the file stem).
        path: the file Folio reads.
        expected: Folio field name -> the ground truth's value as given (fields it lacks are absent).
        date_order: how the ground truth's numeric dates are read (``DMY`` for SROIE).
        lines: the ground truth's own text lines (SROIE's box file), for ``gt-lines``.
        width / height: the image's size, for ``gt-lines``.
    """

    doc: str
    path: Path
    expected: dict[str, str]
    date_order: str = "DMY"
    lines: tuple[GtLine, ...] = ()
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FieldResult:
    """One scored field of one document.

    Attributes:
        status: ``right``, ``wrong`` (a prediction that is not the ground truth's), ``missed`` (no
            prediction) or ``unscored`` (a prediction where the ground truth has none).
        expected / expected_norm: the ground truth as given and as compared (None: absent, or a
            value that would not normalise; such a field can only be ``wrong`` or ``missed``).
        predicted / raw_text / confidence / method: the stage's field (None when it found none).
    """

    doc: str
    field: str
    status: str
    expected: str | None
    expected_norm: str | None
    predicted: str | None = None
    raw_text: str | None = None
    confidence: float | None = None
    method: str | None = None

    @property
    def scored(self) -> bool:
        """A prediction that counts in precision."""
        return self.status in ("right", "wrong")


@dataclass
class DocResult:
    """What the stage found in one document and how it scored."""

    doc: str
    path: str
    results: list[FieldResult]
    found: DocumentFields | None
    extract_ms: float | None = None
    ocr_ms: float | None = None
    error: str | None = None

    @property
    def review(self) -> tuple[str, ...]:
        return self.found.review if self.found is not None else ()


# -- reading the sets ----------------------------------------------------------------------------------


def read_sroie_keys(path: str | Path, limit: int | None = None) -> list[FieldDoc]:
    """The receipts of a SROIE folder that have a ``key/<id>.json``, sorted by id."""
    root = Path(path)
    key_dir = root / "key"
    if not key_dir.is_dir():
        raise FileNotFoundError(f"sroie-keys dataset at {root} has no key/ folder (expected img/, box/, key/)")
    docs = []
    for page in read_dataset("sroie", root):
        key = key_dir / f"{page.sample_id}.json"
        if not key.is_file():
            log.warning("sroie-keys: no key file for %s, skipped", page.sample_id)
            continue
        try:
            data = json.loads(key.read_text(encoding="utf-8-sig"))
        except ValueError as e:
            log.warning("sroie-keys: %s is not JSON (%s), skipped", key, e)
            continue
        expected = {name: str(data[k]).strip() for k, name in SROIE_KEYS.items()
                    if data.get(k) is not None and str(data[k]).strip()}
        docs.append(FieldDoc(page.sample_id, page.image_path, expected, "DMY", page.lines, page.width, page.height))
    return docs[:limit] if limit else docs


def read_invoice2data(path: str | Path, limit: int | None = None,
                      skipped: list[str] | None = None) -> list[FieldDoc]:
    """The invoices of an invoice2data folder: each ``<name>.json`` with a PDF (preferred) or image beside
    it, sorted by name; ``skipped`` collects why a name was left out."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"invoice2data dataset folder not found: {root}")
    docs = []
    for js in sorted(root.glob("*.json")):
        try:
            data = json.loads(js.read_text(encoding="utf-8-sig"))
        except ValueError as e:
            log.warning("invoice2data: %s is not JSON (%s), skipped", js, e)
            continue
        if isinstance(data, list):
            data = data[0] if data else None
        if not isinstance(data, dict):
            continue
        file = next((p for ext in (".pdf", *_IMAGE_EXTS) for p in (js.with_suffix(ext),) if p.is_file()), None)
        if file is None:
            others = sorted(p.name for p in root.glob(f"{js.stem}.*") if p != js)
            if skipped is not None:
                skipped.append(f"{js.stem}: no PDF or image ({', '.join(others) or 'nothing'} beside its JSON)")
            continue
        expected = {}
        for k, name in INVOICE2DATA_KEYS.items():
            value = data.get(k)
            if value is None or isinstance(value, (list, dict)) or not str(value).strip():
                continue
            expected[name] = repr(value) if isinstance(value, float) else str(value).strip()
        docs.append(FieldDoc(js.stem, file, expected, "DMY"))
    return docs[:limit] if limit else docs


# -- normalising and comparing -------------------------------------------------------------------------


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


def _canonical_decimal(d: Decimal) -> str:
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _values():
    """:mod:`pipeline.stages.values`, or None while it cannot be imported (the fallbacks here then apply)."""
    try:
        from pipeline.stages import values
    except ImportError:
        return None
    return values


def _fallback_date(text: str, order: str) -> str | None:
    """A date in common printed forms as ISO: ``2018-12-25``, ``25/12/2018``, ``18-11-18``, ``10 MAR 2018``,
    ``02/JAN/2017``, ``March 5, 2018``."""
    s = text.strip()
    m = re.search(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b", s)
    if m:
        y, mo, d = (int(g) for g in m.groups())
    elif m := re.search(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})\b", s):
        a, b, y = (int(g) for g in m.groups())
        d, mo = (b, a) if order == "MDY" else (a, b)
    elif m := re.search(r"\b(\d{1,2})[\s\-/.]*([A-Za-z]{3,9})\.?[\s\-/.,]*(\d{4}|\d{2})\b", s):
        d, mo, y = int(m.group(1)), _MONTHS.get(m.group(2)[:3].lower()), int(m.group(3))
    elif m := re.search(r"\b([A-Za-z]{3,9})\.?\s*(\d{1,2}),?\s*(\d{4})\b", s):
        mo, d, y = _MONTHS.get(m.group(1)[:3].lower()), int(m.group(2)), int(m.group(3))
    else:
        return None
    if mo is None:
        return None
    y = y + 2000 if y < 100 else y
    try:
        return dt.date(y, mo, d).isoformat()
    except ValueError:
        return None


def _fallback_amount(text: str) -> Decimal | None:
    s = re.sub(r"[^\d.,\-]", "", text)
    if not re.search(r"\d", s):
        return None
    if "," in s and "." in s:
        s = s.replace(",", "") if s.rfind(".") > s.rfind(",") else s.replace(".", "").replace(",", ".")
    elif "," in s:
        s = s.replace(",", ".") if re.search(r",\d{1,2}$", s) else s.replace(",", "")
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def normalize_expected(name: str, value: str, date_order: str = "DMY") -> str | None:
    """The comparable form of a ground-truth value of field ``name`` (None: it would not normalise).

    Dates become ISO strings (:func:`pipeline.stages.values.find_dates` with ``date_order``), amounts
    canonical decimal strings (``9.00`` -> ``9``; :func:`~pipeline.stages.values.find_amounts`),
    currencies upper-case codes, names and numbers whitespace-free and case-folded."""
    value = str(value).strip()
    if not value:
        return None
    values = _values()
    if name in _DATES:
        if _ISO.fullmatch(value):
            return _fallback_date(value, date_order)
        iso = None
        if values is not None:
            iso = next((d.iso for d in values.find_dates(value, order=date_order) if d.iso), None)
        return iso or _fallback_date(value, date_order)
    if name in _AMOUNTS:
        amount = None
        try:
            amount = Decimal(value)
        except InvalidOperation:
            if values is not None:
                found = [a for a in values.find_amounts(value, integers=True) if a.value]
                if found:
                    amount = _decimal(found[0].value)
            if amount is None:
                amount = _fallback_amount(value)
        return None if amount is None or not amount.is_finite() else _canonical_decimal(amount)
    if name == "currency":
        return _squash(value).upper()
    if name == "document_number":
        return _squash(value).strip("#:") or None
    return _squash(value) or None


def _decimal(text: str | None) -> Decimal | None:
    try:
        d = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _predicted_norm(name: str, value: str) -> str | None:
    """The comparable form of a predicted value: the stage's normalised value taken as the contract says
    (ISO dates, plain decimal amounts: a value that is not is wrong), names squashed as the ground truth's."""
    value = str(value).strip()
    if name in _DATES:
        return value if _ISO.fullmatch(value) else None
    if name in _AMOUNTS:
        d = _decimal(value)
        return None if d is None else _canonical_decimal(d)
    if name == "currency":
        return _squash(value).upper()
    if name == "document_number":
        return _squash(value).strip("#:") or None
    return _squash(value) or None


def matches(name: str, predicted: str, expected_norm: str | None, contains: bool = False) -> bool:
    """Whether a predicted value of field ``name`` is the ground truth's (already normalised with
    :func:`normalize_expected`). ``contains``: a name is also right when one normalised string contains
    the other (the shorter at least 3 characters)."""
    if expected_norm is None:
        return False
    got = _predicted_norm(name, predicted)
    if got is None:
        return False
    if got == expected_norm:
        return True
    if contains and name in _NAMES:
        short, long_ = sorted((got, expected_norm), key=len)
        return len(short) >= 3 and short in long_
    return False


def score_document(doc: str, expected: Mapping[str, str], found: DocumentFields | None, fields: Sequence[str],
                   date_order: str = "DMY", contains: Sequence[str] = ()) -> list[FieldResult]:
    """Score one document's fields against its ground truth (Folio field name -> value as given).

    Args:
        fields: the fields to score, in order.
        contains: the fields for which containment counts as right (see :func:`matches`).
    """
    out = []
    for name in fields:
        gt = expected.get(name)
        gt = None if gt is None or not str(gt).strip() else str(gt)
        norm = normalize_expected(name, gt, date_order) if gt is not None else None
        pred = found.get(name) if found is not None else None
        if gt is None:
            status = "unscored" if pred is not None else None
            if status is None:
                continue
        elif pred is None:
            status = "missed"
        else:
            status = "right" if matches(name, pred.value, norm, contains=name in contains) else "wrong"
        out.append(FieldResult(doc, name, status, gt, norm,
                               *((pred.value, pred.raw_text, float(pred.confidence), pred.method)
                                 if pred is not None else (None, None, None, None))))
    return out


# -- summarising ---------------------------------------------------------------------------------------


def _prf(right: int, predicted: int, present: int) -> dict:
    """Precision (None without predictions), recall and F1 (None without ground truth; 0.0 when nothing
    is right, predictions or not)."""
    p = right / predicted if predicted else None
    r = right / present if present else None
    f1 = None if r is None else (2 * p * r / (p + r) if right else 0.0)
    return {"precision": p, "recall": r, "f1": f1}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize_fields(docs: Sequence[DocResult], fields: Sequence[str]) -> dict:
    """Per-field precision/recall/F1 and their mean, the confidence calibration, accuracy per
    ``field/method``, the review-flag rate and the time per document."""
    results = [r for d in docs for r in d.results]
    per_field = {}
    for name in fields:
        mine = [r for r in results if r.field == name]
        right = sum(r.status == "right" for r in mine)
        wrong = sum(r.status == "wrong" for r in mine)
        missed = sum(r.status == "missed" for r in mine)
        per_field[name] = {
            "right": right, "wrong": wrong, "missed": missed,
            "unscored": sum(r.status == "unscored" for r in mine),
            "predicted": right + wrong, "present": right + wrong + missed,
            "gt_unnormalised": sum(r.expected is not None and r.expected_norm is None for r in mine),
            **_prf(right, right + wrong, right + wrong + missed),
        }
    f1s = [v["f1"] for v in per_field.values() if v["f1"] is not None]
    scored = [r for r in results if r.scored]
    calibration = []
    for i, (lo, hi) in enumerate(CONFIDENCE_BINS):
        last = i == len(CONFIDENCE_BINS) - 1
        in_bin = [r for r in scored if lo <= r.confidence < hi or (last and r.confidence >= hi)]
        calibration.append({
            "bin": f"{lo:.1f}-{hi:.1f}", "count": len(in_bin),
            "mean_confidence": statistics.fmean(r.confidence for r in in_bin) if in_bin else None,
            "accuracy": sum(r.status == "right" for r in in_bin) / len(in_bin) if in_bin else None,
        })
    per_method: dict[str, dict] = {}
    for r in scored:
        m = per_method.setdefault(f"{r.field}/{r.method}", {"count": 0, "right": 0})
        m["count"] += 1
        m["right"] += r.status == "right"
    for m in per_method.values():
        m["accuracy"] = m["right"] / m["count"]
    reasons = Counter(reason for d in docs for reason in d.review)
    flagged = [d for d in docs if d.review]
    with_error = [d for d in docs if any(r.status in ("wrong", "missed") for r in d.results)]
    erring = {id(d) for d in with_error}
    extract = [d.extract_ms for d in docs if d.extract_ms is not None]
    ocr = [d.ocr_ms for d in docs if d.ocr_ms is not None]
    return {
        "documents": len(docs),
        "fields": list(fields),
        "per_field": per_field,
        "mean_f1": statistics.fmean(f1s) if f1s else None,
        "calibration": calibration,
        "per_method": dict(sorted(per_method.items())),
        "review": {
            "flagged": len(flagged),
            "rate": len(flagged) / len(docs) if docs else None,
            "reasons": dict(reasons.most_common()),
            "documents_with_an_error": len(with_error),
            "flagged_of_those_with_an_error": sum(bool(d.review) for d in with_error),
            "flagged_without_an_error": sum(bool(d.review) for d in docs if id(d) not in erring),
        },
        "extract_ms_median": _median(extract),
        "extract_ms_max": max(extract) if extract else None,
        "ocr_ms_median": _median(ocr),
        "errors": {d.doc: d.error for d in docs if d.error},
    }


# -- pages ---------------------------------------------------------------------------------------------


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _gt_line(text: str, polygon) -> Line:
    """A line of the page model from a ground-truth line: its quad, and its words (split on spaces)
    with boxes spread along the line in proportion to their characters."""
    quad = tuple((float(x), float(y)) for x, y in polygon[:4])
    if len(quad) < 4:  # not a quad: its bounding box
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        quad = ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))
    tl, tr, br, bl = quad
    n = max(len(text), 1)
    words = []
    for m in re.finditer(r"\S+", text):
        t0, t1 = m.start() / n, m.end() / n
        words.append(Word(m.group(), 1.0, (_lerp(tl, tr, t0), _lerp(tl, tr, t1), _lerp(bl, br, t1),
                                           _lerp(bl, br, t0))))
    return Line(text, 1.0, quad, tuple(words))


def gt_lines_page(doc: FieldDoc, reading_order: str = "columns") -> Page:
    """A page of the document's own ground-truth lines (no OCR): one line per box-file row, in the box
    file's order put through the layout stage's reading order
    (:func:`pipeline.stages.layout.order_lines`)."""
    from pipeline.stages.layout import order_lines

    lines = [_gt_line(g.text, g.polygon) for g in doc.lines if g.text.strip() and g.polygon and len(g.polygon) >= 3]
    height = doc.height or (max((p[1] for line in lines for p in line.polygon), default=0.0) + 1)
    width = doc.width or (max((p[0] for line in lines for p in line.polygon), default=0.0) + 1)
    blocks, text = order_lines(lines, height, reading_order)
    return Page(str(doc.path), doc.doc, 0, int(width), int(height), blocks=blocks, text=text)


def _output_pages(dest: str, config: FolioConfig) -> dict[str, tuple[list[Page], float | None]]:
    """The pages of each input of an existing Folio output, by the file name of its ``source_uri`` (the
    newest ``documents`` row per input), with the time the run recorded for it (``timings_ms.total``)."""
    from pipeline.output.catalog import read_table
    from pipeline.schema import page_from_row

    docs = read_table(dest, "documents", ["doc_id", "source_uri", "run_id", "processed_at", "timings_ms"],
                      config.storage).to_pylist()
    pages = read_table(dest, "pages", storage_config=config.storage).to_pylist()
    by_run: dict[str, dict[str, list[dict]]] = {}
    for row in pages:
        by_run.setdefault(row["doc_id"], {}).setdefault(row["run_id"], []).append(row)
    newest: dict[str, dict] = {}
    runs_by_doc: dict[str, list[str]] = {}
    for row in sorted(docs, key=lambda r: r["processed_at"] or dt.datetime.min.replace(tzinfo=dt.UTC),
                      reverse=True):
        name = row["source_uri"].rstrip("/").rsplit("/", 1)[-1]
        newest.setdefault(name, row)
        runs_by_doc.setdefault(row["doc_id"], []).append(row["run_id"])
    out = {}
    for name, row in newest.items():
        runs = by_run.get(row["doc_id"], {})
        # its own run's pages; a twin of another input has none of its own: the newest run that has them
        run = row["run_id"] if row["run_id"] in runs else \
            next((r for r in runs_by_doc[row["doc_id"]] if r in runs), None)
        rows = sorted(runs.get(run, []), key=lambda r: r["page_index"])
        total = (row.get("timings_ms") or {}).get("total")
        out[name] = ([page_from_row(r, key=row["source_uri"]) for r in rows], total)
    return out


# -- the evaluation ------------------------------------------------------------------------------------


def evaluate_fields(fmt: str, path: str | Path, config: FolioConfig, system: str = "folio",
                    limit: int | None = None, from_output: str | None = None, progress: bool = False,
                    ids: set[str] | None = None) -> dict:
    """Run the fields stage over a labelled set in ``fmt`` (:data:`FIELD_FORMATS`) and score it.

    Args:
        system: ``folio`` (pages as ``folio run`` reads the files, or from ``from_output``) or
            ``gt-lines`` (``sroie-keys`` only: pages of the box files' own lines, no OCR).
        from_output: an existing Folio output to take the pages from (``folio`` only), matched to the
            set's files by file name.
        ids: only the documents with these ids (file stems).

    Returns:
        The :func:`summarize_fields` dict, with ``system``, ``format``, ``path``, ``skipped`` (files
        left out, and why), ``documents_detail`` (what each document got) and ``doc_results`` (the
        :class:`DocResult` list, not JSON).

    Raises:
        ValueError: a system the format does not support.
    """
    from pipeline.stages.fields import FieldsStage

    if fmt not in FIELD_FORMATS:
        raise ValueError(f"unknown fields format {fmt!r}; expected one of: {', '.join(FIELD_FORMATS)}")
    if system not in ("folio", "gt-lines"):
        raise ValueError(f"{fmt} is scored with --system folio or gt-lines, not {system}")
    if system == "gt-lines" and fmt != "sroie-keys":
        raise ValueError("--system gt-lines needs ground-truth lines with boxes: sroie-keys only")
    if from_output and system != "folio":
        raise ValueError("--from-output takes Folio's pages: it goes with --system folio")
    skipped: list[str] = []
    if fmt == "sroie-keys":
        docs, fields, contains = read_sroie_keys(path, limit), list(SROIE_KEYS.values()), ()
    else:
        docs, fields, contains = read_invoice2data(path, limit, skipped), list(INVOICE2DATA_KEYS.values()), \
            ("supplier_name",)
    if ids is not None:
        docs = [d for d in docs if d.doc in ids]
    stage = FieldsStage(config.fields)
    stored = _output_pages(from_output, config) if from_output else None
    reader = DocumentReader(config) if system == "folio" and stored is None else None
    bar = None
    if progress and reader is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(docs), unit="doc", desc=f"eval {fmt}", file=sys.stderr)
    results: list[DocResult] = []
    try:
        for doc in docs:
            ocr_ms, error = None, None
            if system == "gt-lines":
                pages = [gt_lines_page(doc, config.layout.reading_order)]
            elif stored is not None:
                pages, ocr_ms = stored.get(doc.path.name, ([], None))
                pages = [p for p in pages if p.status == "ok"]
                if doc.path.name not in stored:
                    error = "not_in_output"
                elif not pages:
                    error = "no_pages_read"
            else:
                pages, ocr_ms, error = reader(doc.path)
            found, extract_ms = None, None
            if pages:
                t0 = time.perf_counter()
                try:
                    found = stage(pages)
                except Exception as e:  # noqa: BLE001 - one document's failure is reported, the rest still scored
                    log.exception("the fields stage failed on %s", doc.path)
                    error = f"fields_failed: {type(e).__name__}: {e}"
                    found = DocumentFields(review=(f"fields_failed:{type(e).__name__}",))  # as folio run flags it
                extract_ms = (time.perf_counter() - t0) * 1000
            else:
                found = DocumentFields(review=("no_pages_read",))  # as folio run flags it
            scores = score_document(doc.doc, doc.expected, found, fields, doc.date_order, contains)
            results.append(DocResult(doc.doc, str(doc.path), scores, found, extract_ms, ocr_ms, error))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    summary = summarize_fields(results, fields)
    ocr_source = {"gt-lines": "gt-lines: no OCR",
                  "folio": "as the run recorded it: documents.timings_ms.total" if from_output
                  else "decode stage + page stage, wall time, models loaded beforehand"}[system]
    return {
        **summary, "system": system, "format": fmt, "path": str(path), "from_output": from_output,
        "contains_rule": list(contains), "ocr_time": ocr_source, "skipped": skipped,
        "documents_detail": [_doc_json(d) for d in results], "doc_results": results,
    }


def _doc_json(d: DocResult) -> dict:
    found = d.found or DocumentFields()
    return {
        "doc": d.doc, "path": d.path, "error": d.error, "extract_ms": d.extract_ms, "ocr_ms": d.ocr_ms,
        "needs_review": bool(found.review) if d.found is not None else None, "review": list(found.review),
        "predictions": [{"field": f.name, "value": f.value, "raw_text": f.raw_text, "confidence": f.confidence,
                         "method": f.method, "page_index": f.page_index} for f in found.fields],
        "scored": [{"field": r.field, "status": r.status, "expected": r.expected,
                    "expected_normalised": r.expected_norm, "predicted": r.predicted, "confidence": r.confidence,
                    "method": r.method} for r in d.results],
        "line_items": len(found.line_items),
    }


# -- printing ------------------------------------------------------------------------------------------


def _f(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _cut(text: str | None, n: int) -> str:
    text = "-" if text is None else " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "~"


_MARKS = {"right": "ok", "wrong": "WRONG", "missed": "missed", "unscored": "(no GT)"}


def render(report: dict, per_document: bool = True) -> list[str]:
    """The printed report: the per-document table (``per_document``), per-field P/R/F1, calibration,
    review flags and times, then :func:`summary_line` last."""
    out: list[str] = []
    if per_document:
        out.append(f"{'document / field':28s} {'mark':7s} {'predicted':44s} expected")
        for d in report["doc_results"]:
            extra = f"  error: {d.error}" if d.error else ""
            review = ", ".join(d.review) if d.review else "-"
            out.append(f"{d.doc[:40]}  review: {review}  ({_f(d.extract_ms, '.1f')} ms){extra}")
            for r in d.results:
                conf = f" [{r.confidence:.2f} {r.method}]" if r.confidence is not None else ""
                out.append(f"  {r.field:26s} {_MARKS[r.status]:7s} {_cut(r.predicted, 44 - len(conf)) + conf:44s} "
                           f"{_cut(r.expected, 60)}")
        out.append("")
    out.append(f"{'field':18s} {'P':>6s} {'R':>6s} {'F1':>6s} {'right':>6s} {'wrong':>6s} {'missed':>6s} "
               f"{'no GT':>6s}")
    for name, v in report["per_field"].items():
        note = "  (right when one name contains the other)" if name in report.get("contains_rule", ()) else ""
        if v["gt_unnormalised"]:
            note += f"  ({v['gt_unnormalised']} ground-truth values would not normalise)"
        out.append(f"{name:18s} {_f(v['precision']):>6s} {_f(v['recall']):>6s} {_f(v['f1']):>6s} {v['right']:6d} "
                   f"{v['wrong']:6d} {v['missed']:6d} {v['unscored']:6d}{note}")
    out.append(f"{'mean':18s} {'':>6s} {'':>6s} {_f(report['mean_f1']):>6s}")
    out.append("")
    out.append(f"{'confidence':10s} {'count':>6s} {'mean':>6s} {'acc':>6s}   (scored predictions)")
    for b in report["calibration"]:
        out.append(f"{b['bin']:10s} {b['count']:6d} {_f(b['mean_confidence']):>6s} {_f(b['accuracy']):>6s}")
    rv = report["review"]
    reasons = ", ".join(f"{k} {n}" for k, n in list(rv["reasons"].items())[:8]) or "none"
    out.append("")
    out.append(f"needs review: {rv['flagged']}/{report['documents']} documents ({_f(rv['rate'], '.2f')}); "
               f"reasons: {reasons}")
    out.append(f"  of the {rv['documents_with_an_error']} documents with a wrong or missed field, "
               f"{rv['flagged_of_those_with_an_error']} are flagged; {rv['flagged_without_an_error']} flagged "
               "documents have none")
    out.append(f"time per document (median): extraction {_f(report['extract_ms_median'], '.1f')} ms (fields stage "
               f"only, max {_f(report['extract_ms_max'], '.1f')}); OCR "
               + (f"{report['ocr_ms_median']:.0f} ms ({report['ocr_time']})" if report["ocr_ms_median"] is not None
                  else f"n/a ({report['ocr_time']})"))
    for doc, error in report["errors"].items():
        out.append(f"not scored as read: {doc}: {error}")
    for note in report["skipped"]:
        out.append(f"left out: {note}")
    out.append(summary_line(report))
    return out


def summary_line(report: dict) -> str:
    """``folio on sroie-keys (80 documents): mean field F1 0.xxx | supplier_name F1 ... | ...``"""
    parts = []
    for name, v in report["per_field"].items():
        contains = " (contains)" if name in report.get("contains_rule", ()) else ""
        parts.append(f"{name} F1 {_f(v['f1'])}{contains}")
    rv = report["review"]
    return (f"{report['system']} on {report['format']} ({report['documents']} documents): mean field F1 "
            f"{_f(report['mean_f1'])} | " + " | ".join(parts) + f" | needs review {_f(rv['rate'], '.2f')} | "
            f"extraction {_f(report['extract_ms_median'], '.1f')} ms/doc"
            + (f", OCR {report['ocr_ms_median']:.0f} ms/doc" if report["ocr_ms_median"] is not None else ", no OCR")
            + " (medians)")


def report_json(report: dict) -> dict:
    """The report as JSON can hold it (without the :class:`DocResult` objects)."""
    return {k: v for k, v in report.items() if k != "doc_results"}
