"""The fields stage: an invoice's or receipt's typed fields, line items and review flags, from the words
and layout of its pages (``fields.enabled``).

It reads the page model (lines in reading order, their words and boxes, in
original-page pixels) and finds:

* **labelled values**: a label (``Total``, ``Gesamtbetrag``, ``Montant TTC``,
  ``Jumlah``, ``Invoice No``, ``Fecha``...; :data:`~pipeline.stages.values.LABELS`)
  and its value on the same line after it, on the same row to its right, or
  just below it: totals, subtotal, tax, document number, dates, customer, tax id;
* **totals** by the strength of their label (``Grand total`` over ``Total``),
  then by what agrees with them (subtotal + tax, a payment); not a tax
  summary's rows, ``TOTAL QTY`` or ``GST included in total``; after a rounding
  adjustment, the rounded amount printed next. Where OCR lost the label, the
  amount printed after the tax that is subtotal + tax, or the amount over the
  rounding line; on a document that labels no subtotal or tax either (a
  receipt whose ``TOTAL`` was misread), the largest amount that is not a payment;
* **the supplier**: the value of a seller's or payee's label (``Sold by:``,
  ``Account holder:``, ``Titulaire du compte :``), else the most prominent
  company-like name at the top of the first page: tall, early, with a legal
  form or a kind of business, the name of the document's own website
  (``www.azure-interior.com``), not a name in small letters (a person's); a
  name printed over several lines is joined, and a legal form misread by one
  letter is corrected (``SON BHD``). A sender line over the address window
  names it outright. Its address is the lines under it, top to bottom, past
  registration numbers, to the first line that is not an address or the line
  that ends with a country;
* **values by position** where no label says: the document date, the first date;
* **line items**: the rows under a table header (description, quantity, unit
  price, amount) down to the totals, each number in the header's column it
  lies under.

The stage reads every word recognised, those ``recognition.min_word_confidence``
left out of a line's text too (``recognition.low_confidence_words: keep``): an
unsure word is still mostly right, and a name or an address missing one is
wrong. Rows are found by the lines' vertical middles, not their boxes' overlap:
the boxes of tightly printed lines reach into their neighbours'.

Dates and amounts are normalised by :mod:`pipeline.stages.values` (both
decimal conventions; day-month order from the document's own unambiguous dates,
``fields.date_order``, or the currency). Each field gets a ``method`` and a
calibrated ``confidence``: the share of fields found by that method that were
right on the development sets (``fields_calibration.json``, shipped beside this
module and listed in the ``models`` column; ``scripts/fit-fields-calibration.py``
refits it), lowered where the evidence is shaky (an ambiguous date, totals that
disagree).

A document needs review (``documents.needs_review``, with ``review_reasons``)
when a required field is missing (``missing:total``) or below
``fields.min_confidence`` (``low_confidence:total``), when subtotal + tax is not
the total (``totals_mismatch``) or the line items do not add up to the subtotal
(``line_items_mismatch``), when two totals disagree (``conflicting:total``), or
when a date does not parse (``unparsed_date:due_date``) or could be read
day-first or month-first (``ambiguous_date:document_date``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipeline.config import FieldsConfig
from pipeline.models.zoo import ModelFile
from pipeline.stages import values as v
from pipeline.types import (
    FIELDS,
    REQUIRED_FIELDS,
    DocumentFields,
    Field,
    LineItem,
    Page,
    Polygon,
    bounding_polygon,
    box_polygon,
    polygon_box,
)

__all__ = ["FieldsStage", "calibration_model"]

log = logging.getLogger(__name__)

_CALIBRATION = Path(__file__).parent / "data" / "fields_calibration.json"
#: Amounts that differ by at most this much agree (receipts round to 5 cents).
_TOLERANCE = Decimal("0.05")
#: Labels of a total that is the amount to pay (they win over a plain "Total").
_STRONG_TOTAL = re.compile(r"grand|due|payable|pay|rounded|rounding|nett|net a payer|jumlah|te betalen|balance|"
                           r"gesamtbetrag|endbetrag|rechnungsbetrag|ttc|amount", re.IGNORECASE)
#: Lines that are a document's title, not its supplier.
_TITLE = re.compile(r"^\W*(tax\s+)?(invoice|receipt|bill|cash\s+(sale|bill)|official\s+receipt|rechnung|facture|"
                    r"factura|fattura|factuur|quotation|delivery\s+order|statement|credit\s+note|invois|resit)\b\W*$",
                    re.IGNORECASE)
#: Legal forms: a line with one is most likely the company's name.
_LEGAL = re.compile(r"(?<!\w)(sdn\.?\s*b[hn]d\.?|sdn|bhd\.?|berhad|s/b|enterprise|gmbh|ag|ltd\.?|limited|inc\.?|llc|"
                    r"corp\.?|co\.|b\.v\.|n\.v\.|s\.a\.|sarl|sas|srl|s\.p\.a\.?|plc|pty|kg|ohg|e\.k\.|oy|ab|as|"
                    r"s\.r\.o\.|sp\.\s*z\s*o\.o\.)(?!\w)", re.IGNORECASE)
#: Kinds of business: a line with one looks like a name.
_BUSINESS = re.compile(r"(?<!\w)(trading|company|restaurant|restoran|store|shop|mart|market|services|industries|"
                       r"hardware|stationery|bakery|cafe|hotel|pharmacy|florist|motor|electrical|engineering|"
                       r"marketing|supermarket|boutique|clinic|studio|solutions|systems|consulting|partners)(?!\w)",
                       re.IGNORECASE)
#: What a shop prints at its top that is not its name.
_NOT_A_NAME = re.compile(r"\b(thank|welcome|returnable|refund|exchange|opening|hours|receipt|invoice)\b", re.IGNORECASE)
_COMPANY = re.compile(f"{_LEGAL.pattern}|{_BUSINESS.pattern}", re.IGNORECASE)
#: Legal forms long enough to correct one misread letter in, as written when corrected.
_LEGAL_FORMS = ("SDN BHD", "BERHAD", "LIMITED", "GmbH", "PTY LTD")
#: Words that start an address line, not a name.
_ADDRESS_START = re.compile(r"^\W*(no[.:]?\s*\d|lot\b|\d|jalan\b|jln\b|street\b|st\.|road\b|floor\b|\d+(st|nd|rd|th)\b)",
                            re.IGNORECASE)
#: Lines that end an address block.
_ADDRESS_STOP = re.compile(r"\b(tel\w*|te1|phone|fax|e-?mail|www\.|http|gst|vat|tax|invoice|receipt|hours|"
                           r"document|cashier|served|table|bill|order|customer|h/?p|mobile|number|id)\b|@", re.IGNORECASE)
#: A ``Key: value`` line (``Served by: rojan``), which no address line is unless it starts like one.
_KEY_COLON = re.compile(r"^\W*[A-Za-z][A-Za-z .]{1,20}:")
#: A phone number alone on a line.
_PHONE = re.compile(r"^\W*\+?[\d\s()/.-]{7,}$")
#: A registration number after a name or on a line of its own: ``(789417-W)``, ``CO. REG : 860671-D``,
#: ``COMPANY NO: SA0127959-D``; a lot number (``LOT 1851-A``) is not one.
_REGISTRATION = re.compile(r"\(\s*((co|company)?[-.\s]*(reg|rfg|no)?\.?\s*(no)?\.?\s*[:.]?\s*)?[A-Z]{0,3}\d{3,}[\dA-Z]*"
                           r"(\s*-\s*[A-Z])?\s*\)[,.]?|\b(co|company)[-.\s]*(reg|rfg|no)\b.*$|^\s*\d{6,}-?[A-Z]\b",
                           re.IGNORECASE)
_REGISTRATION_LINE = re.compile(r"^\W*([A-Z]{0,3}\d{5,}[\dA-Z]*\s*-\s*[A-Z]\W*|(co|company|roc)\b[-.\s]*(reg|rfg|no)\b.*)$",
                                re.IGNORECASE)
#: What a tax or company registration number is printed after.
_REGISTERED = re.compile(r"\b(gst|vat|tax|reg\w*|co|company|roc)\b", re.IGNORECASE)
#: A short ``KEY: value`` line (``SITE: 2395``): a detail of the shop, not a line of its address.
_KEY_VALUE = re.compile(r"^\s*[A-Za-z][A-Za-z .#/]{1,20}:\s*\S{1,16}\s*$")
#: A line that continues a name onto the next one, or a line that continues the name above it.
_CONTINUES = re.compile(r"(&|\band|-)\s*$", re.IGNORECASE)
_CONTINUATION = re.compile(r"^\W*(sdn|bhd|co\.|\(m\)|enterprise|trading|gmbh|ltd|limited|inc|llc|s/b)(?!\w)",
                           re.IGNORECASE)
#: A heading of a tax summary table, whose totals are the tax's, not the document's.
_TAX_SUMMARY = re.compile(r"\b(gst|vat|tax|mwst|ust|tva|iva|btw|sst)\s*(s\w{2,4}ary|analysis|breakdown|details?)\b|"
                          r"\b(r[ée]capitulatif|zusammenfassung)\s+(de\s+la\s+)?(tva|mwst|ust)\b", re.IGNORECASE)
#: Labels on a line that make its "total" something else: a quantity, a discount, a payment.
_NOT_A_TOTAL = {"quantity", "discount", "payment", "customer_number"}
_DOCUMENT_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/._]*\d[A-Za-z0-9\-/._]*")


@functools.cache
def _countries() -> frozenset[str]:
    """Country names, case-folded (``data/countries.txt``)."""
    text = (Path(__file__).parent / "data" / "countries.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip() and line[0] != "#")


def _ends_with_country(text: str) -> bool:
    """Whether a line ends with a country name (``56000 Kuala Lumpur, Malaysia``): the last line of an address."""
    words = re.sub(r"[^\w\s.']", " ", text).casefold().split()
    countries = _countries()
    return any(" ".join(words[-n:]).strip(".") in countries for n in (1, 2, 3) if len(words) >= n)


@functools.cache
def _calibration() -> dict:
    with open(_CALIBRATION, encoding="utf-8") as fh:
        return json.load(fh)


def calibration_model() -> ModelFile:
    """The calibration table the stage ships with, as a model file (for the ``models`` column)."""
    data = _CALIBRATION.read_bytes()
    return ModelFile(_CALIBRATION.name, _CALIBRATION, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class _Line:
    """A line of the document: where it is in reading order and on its page."""

    order: int
    page: int
    text: str
    box: tuple[float, float, float, float]
    words: tuple
    page_height: float
    page_width: float

    @property
    def height(self) -> float:
        return max(self.box[3] - self.box[1], 1.0)

    @property
    def middle(self) -> float:
        """The vertical centre: where the line is, even when its box spills into its neighbours' (boxes of
        tightly printed lines overlap)."""
        return (self.box[1] + self.box[3]) / 2

    def span_polygon(self, start: int, end: int) -> Polygon | None:
        """The box around the words of ``text[start:end]`` (the line's box when it has no words)."""
        if not self.words:
            return box_polygon(self.box)
        polys, at = [], 0
        for word in self.words:
            at = self.text.find(word.text, at)
            if at < 0:
                return box_polygon(self.box)
            if at < end and at + len(word.text) > start:
                polys.append(word.polygon)
            at += len(word.text)
        return bounding_polygon(polys) if polys else box_polygon(self.box)


#: A date and a time that OCR read without the space between them (``09/02/201811:40``).
_GLUED_TIME = re.compile(r"(\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2})(?=\d{1,2}:\d{2})")


def _lines(pages: Sequence[Page]) -> list[_Line]:
    """The document's lines in reading order, with every word read (those left out of a line's text too)."""
    out = []
    for page in pages:
        height, width = float(page.height or 1), float(page.width or 1)
        for line in page.lines:
            words = line.words
            text = " ".join(w.text for w in words) if len(words) != len(line.text_words) else line.text
            if text.strip():
                text = _GLUED_TIME.sub(r"\1 ", " ".join(text.split()))
                out.append(_Line(len(out), page.page_index, text, polygon_box(line.polygon), words, height, width))
    return out


@dataclass
class _Candidate:
    """A value found for a field, before the choice between candidates."""

    value: str
    raw: str
    line: _Line
    start: int
    end: int
    method: str
    priority: int = 0
    ambiguous: bool = False
    parts: tuple[_Line, ...] = ()  # the lines a value over several lines was joined from

    def field(self, name: str, confidence: float) -> Field:
        return Field(name, self.value, self.raw, confidence, self.line.page,
                     self.line.span_polygon(self.start, self.end), self.method)


class FieldsStage:
    """A document's pages in, its :class:`~pipeline.types.DocumentFields` out (see the module docstring).

    Runs where documents are assembled (the local process, the Ray driver): it
    reads only the page model, costs milliseconds a document, and loads one
    small table (the confidence calibration).
    """

    def __init__(self, config: FieldsConfig):
        self.config = config
        self.calibration = _calibration()

    def _confidence(self, name: str, method: str, factor: float = 1.0) -> float:
        table = self.calibration["methods"]
        score = table.get(f"{name}/{method}", table.get(method, self.calibration["default"]))
        return round(max(0.0, min(1.0, score * factor)), 3)

    def __call__(self, pages: Sequence[Page]) -> DocumentFields:
        lines = _lines(pages)
        if not lines:
            return DocumentFields(review=tuple(f"missing:{f}" for f in REQUIRED_FIELDS))
        labels = {line.order: v.find_labels(line.text) for line in lines}
        review: list[str] = []
        found: dict[str, Field] = {}

        def put(name: str, candidate: _Candidate | None, factor: float = 1.0) -> None:
            if candidate is not None:
                found[name] = candidate.field(name, self._confidence(name, candidate.method, factor))

        # amounts
        decimal = _decimal_mark(lines)
        totals = self._labelled_amounts(lines, labels, "total", decimal)
        others = {kind: self._labelled_amounts(lines, labels, kind, decimal) for kind in ("payment", "discount",
                                                                                           "rounding")}
        charges = _charges(lines, decimal)
        subtotal = _last(self._labelled_amounts(lines, labels, "subtotal", decimal))
        tax = _last(self._labelled_amounts(lines, labels, "tax", decimal))
        total, conflict = _choose_total(totals, [c for cs in others.values() for c in cs] + charges,
                                        _sum(subtotal, tax), others["payment"], lines, decimal)
        rounding = others["rounding"][-1] if others["rounding"] else None
        if total is None and rounding is not None:  # its label misread: the amount over the rounding line
            total = _before(lines, rounding, decimal)
        if total is not None and rounding is not None:
            total = _rounded(lines, total, rounding, decimal)
        if conflict:
            review.append("conflicting:total")
        if total is None and subtotal is not None and tax is not None:  # its label misread: the sum, printed
            total = _printed_sum(lines, subtotal, tax, decimal)
        if total is None and subtotal is None and tax is None:
            # a receipt whose TOTAL was misread: the largest amount; a document that labels its subtotal or
            # tax but no total has none
            total = _largest_amount(lines, labels, decimal)
        put("total", total)  # a conflict is its method (label-conflict), calibrated as such
        put("subtotal", subtotal)
        put("tax", tax)
        put("currency", _currency(lines, total))

        # dates
        order = self._date_order(lines, found.get("currency"))
        dates = {line.order: _dates(line.text, order) for line in lines}
        for name in ("document_date", "due_date"):
            candidate, unparsed = self._labelled_date(lines, labels, order, name)
            if unparsed:
                review.append(f"unparsed_date:{name}")
            if candidate is None and name == "document_date":
                candidate = _first_date(lines, dates)
            if candidate is not None and candidate.ambiguous and not order.proven:
                review.append(f"ambiguous_date:{name}")
                put(name, candidate, 0.6)
            else:
                put(name, candidate)
        start, end = self._period(lines, labels, order)
        put("period_start", start)
        put("period_end", end)

        # names and numbers
        number = self._labelled_token(lines, labels, "document_number")
        if number is None:  # "Invoice INV/2023/03/0008", or a "Factuur" column header over its number
            number = self._labelled_token(lines, labels, "document_type", method_suffix="-title")
        put("document_number", number)
        # "Sold by:", "Account holder:"; only with its colon ("Merchant Number", "TVA payée sur..." are not)
        supplier = self._labelled_name(lines, labels, "supplier_name", with_colon=True)
        if supplier is not None:
            supplier.value = _name_value(_name(supplier.value))
        else:
            supplier = _supplier(lines, labels)
        put("supplier_name", supplier)
        put("supplier_address", _address(lines, supplier, labels))
        put("supplier_tax_id", self._tax_id(lines, labels))
        put("customer_name", self._labelled_name(lines, labels, "customer_name"))

        items = _line_items(lines, labels, decimal, self._confidence("line_item", "table"))
        review += _consistency(found, items, charges, others["discount"])
        for name in REQUIRED_FIELDS:
            if name not in found:
                review.append(f"missing:{name}")
            elif found[name].confidence < self.config.min_confidence:
                review.append(f"low_confidence:{name}")
        fields = tuple(found[name] for name in FIELDS if name in found)
        return DocumentFields(fields, tuple(items), tuple(dict.fromkeys(review)))

    # -- labelled values ------------------------------------------------------------------------
    def _labelled_amounts(self, lines, labels, name: str, decimal: str | None) -> list[_Candidate]:
        """The amounts labelled ``name``, in reading order. Totals in a tax summary table (after its
        heading) are the tax's; a "total" that counts items, discounts or payments, or comes after a
        rounding label, is not the document's total."""
        out = []
        summary = next((line.order for line in lines if _TAX_SUMMARY.search(line.text)), None)
        for line in lines:
            if name == "total" and summary is not None and line.order > summary:
                break
            line_labels = labels[line.order]
            for label in line_labels:
                if label.field != name:
                    continue
                if name == "total" and any(o.field in _NOT_A_TOTAL or (o.field in ("rounding", "tax") and o.start < label.start)
                                           for o in line_labels):
                    continue  # "TOTAL QTY", "ROUNDING ... TOTAL", "GST @6% included in total"
                for where, text, offset, how in _after(lines, line, label.end):
                    amounts = v.find_amounts(text, decimal=decimal)
                    if amounts:
                        a = amounts[-1]
                        priority = 2 if name == "total" and _STRONG_TOTAL.search(label.label) else 1
                        out.append(_Candidate(a.value, a.raw, where, offset + a.start, offset + a.end,
                                              how, priority))
                        break
        return out

    def _date_order(self, lines, currency: Field | None) -> _Order:
        if self.config.date_order != "auto":
            return _Order(self.config.date_order, True)
        orders = [d.order for line in lines for d in v.find_dates(line.text) if d.iso and not d.ambiguous and d.order]
        numeric = [o for o in orders if o in ("DMY", "MDY")]
        if numeric:
            return _Order(max(set(numeric), key=numeric.count), True)
        return _Order("MDY" if currency is not None and currency.value == "USD" else "DMY", False)

    def _labelled_date(self, lines, labels, order: _Order, name: str) -> tuple[_Candidate | None, bool]:
        unparsed = False
        for line in lines:
            for label in labels[line.order]:
                if label.field != name:
                    continue
                for where, text, offset, how in _after(lines, line, label.end):
                    found = _dates(text, order)
                    if not found:
                        continue
                    d = found[0]
                    if d.iso is None:
                        unparsed = True
                        break
                    method = how
                    return _Candidate(d.iso, d.raw, where, offset + d.start, offset + d.end, method,
                                      ambiguous=d.ambiguous), False
        return None, unparsed

    def _period(self, lines, labels, order: _Order) -> tuple[_Candidate | None, _Candidate | None]:
        for line in lines:
            if not any(label.field == "period" for label in labels[line.order]):
                continue
            for where, text, offset, how in _after(lines, line, 0):
                found = [d for d in _dates(text, order) if d.iso]
                if len(found) >= 2:
                    a, b = found[0], found[1]
                    return (_Candidate(a.iso, a.raw, where, offset + a.start, offset + a.end, "label"),
                            _Candidate(b.iso, b.raw, where, offset + b.start, offset + b.end, "label"))
        return None, None

    def _labelled_token(self, lines, labels, name: str, method_suffix: str = "") -> _Candidate | None:
        for line in lines:
            for label in labels[line.order]:
                if label.field != name:
                    continue
                for where, text, offset, how in _after(lines, line, label.end):
                    if where.order != line.order and labels[where.order]:
                        continue  # another label, not this one's value
                    m = _DOCUMENT_NUMBER.search(text)
                    if m and len(m.group()) >= 3 and sum(c.isdigit() for c in m.group()) >= 2 \
                            and not v.find_dates(m.group()) and not v.find_amounts(m.group()):
                        return _Candidate(m.group().strip("._-/"), m.group(), where, offset + m.start(),
                                          offset + m.end(), how + method_suffix)
        return None

    def _tax_id(self, lines, labels) -> _Candidate | None:
        for line in lines:
            for label in labels[line.order]:
                if label.field != "supplier_tax_id":
                    continue
                for where, text, offset, how in _after(lines, line, label.end):
                    ids = v.find_tax_ids(text)
                    if ids:
                        start, end, value = ids[0]
                        return _Candidate(value, text[start:end], where, offset + start, offset + end, "label")
                    m = _DOCUMENT_NUMBER.search(text)
                    if m and sum(c.isdigit() for c in m.group()) >= 6:
                        return _Candidate(re.sub(r"\s", "", m.group()), m.group(), where, offset + m.start(),
                                          offset + m.end(), "label")
        first_page = [line for line in lines if line.page == lines[0].page and line.box[1] < 0.35 * line.page_height]
        for line in first_page:
            ids = v.find_tax_ids(line.text)
            if ids:
                start, end, value = ids[0]
                return _Candidate(value, line.text[start:end], line, start, end, "pattern")
        return None

    def _labelled_name(self, lines, labels, name: str, with_colon: bool = False) -> _Candidate | None:
        for line in lines:
            for label in labels[line.order]:
                if label.field != name or (with_colon and not line.text[:label.end].rstrip().endswith(":")):
                    continue
                for where, text, offset, how in _after(lines, line, label.end, below_only_when_empty=True):
                    stripped = text.strip(" :#-.")
                    if sum(c.isalpha() for c in stripped) >= 3 and all(
                            other.field in ("description", "amount") for other in v.find_labels(stripped)):
                        start = offset + text.find(stripped)
                        method = how
                        return _Candidate(stripped, stripped, where, start, start + len(stripped), method)
        return None


@dataclass(frozen=True)
class _Order:
    hint: str
    proven: bool  # configured, or shown by an unambiguous date of the document


def _dates(text: str, order: _Order) -> list:
    """The dates of a text read in ``order``; where the order is not proven (configured, or shown by the
    document's own dates), a date whose day and month could be swapped keeps ``ambiguous``."""
    found = v.find_dates(text, order=order.hint)
    if order.proven:
        return found
    free = {(d.start, d.end): d.ambiguous for d in v.find_dates(text)}
    return [dataclasses.replace(d, ambiguous=free.get((d.start, d.end), d.ambiguous)) for d in found]


def _after(lines: list[_Line], line: _Line, start: int, below_only_when_empty: bool = False):
    """Where a label's value can be: ``(line, text, offset of text in line.text, method)`` for the rest of the
    label's line (``label``), then the lines on the same row to its right, nearest first (``label-right``),
    then the line just below it (``label-below``)."""
    rest = line.text[start:]
    if rest.strip(" :#.-"):
        yield line, rest, start, "label"
        if below_only_when_empty:
            return
    same_row = sorted(
        (other for other in lines
         if other.page == line.page and other.order != line.order and other.box[0] >= line.box[2] - 0.5 * line.height
         and _same_row(other, line)),
        key=lambda other: other.box[0])
    for other in same_row:
        yield other, other.text, 0, "label-right"
    below = [other for other in lines
             if other.page == line.page and other.order != line.order
             and other.middle > line.middle and not _same_row(other, line)
             and other.box[1] - line.box[3] <= 1.5 * line.height
             and min(other.box[2], line.box[2]) - max(other.box[0], line.box[0]) > 0]
    for other in sorted(below, key=lambda other: other.middle)[:1]:
        yield other, other.text, 0, "label-below"


def _decimal_mark(lines: list[_Line]) -> str | None:
    """The document's decimal mark, from its amounts that show it unambiguously (``1.234,56``, ``9,50``)."""
    comma = point = 0
    for line in lines:
        for m in re.finditer(r"\d[.,]\d{2}(?!\d)", line.text):
            if m.group()[1] == ",":
                comma += 1
            else:
                point += 1
    if comma > 2 * point:
        return ","
    if point > 2 * comma:
        return "."
    return None


def _choose_total(candidates: list[_Candidate], others: list[_Candidate], expected: Decimal | None,
                  payments: list[_Candidate], lines: list[_Line], decimal: str | None) -> tuple[_Candidate | None, bool]:
    """The total among the labelled ones: the strongest label; of those, the one that agrees with subtotal +
    tax or a payment and is not a summary table's row of several amounts, the last one on a tie; and
    whether two totals disagree by more than rounding and more than any payment, discount, rounding or
    charge line of the document explains (``Total 150.00``, ``Paid 50.00``, ``Balance due 100.00`` agree)."""
    if not candidates:
        return None, False
    best = max(c.priority for c in candidates)
    paid = {_dec(p.value) for p in payments}

    def support(c: _Candidate) -> int:
        value = _dec(c.value)
        s = int(expected is not None and value is not None and abs(value - expected) <= _TOLERANCE)
        s += int(value in paid)
        row = [o for o in lines if o.page == c.line.page and _same_row(o, c.line)]
        s -= int(sum(len(v.find_amounts(o.text, decimal=decimal)) for o in row) > 1)
        return s

    top = [c for c in candidates if c.priority == best]
    chosen = max(reversed(top), key=support)
    values = sorted({_dec(c.value) for c in candidates} - {None})
    explained = {abs(d) for d in (_dec(o.value) for o in others) if d is not None}
    conflict = any(b - a > _TOLERANCE and not any(abs((b - a) - e) <= _TOLERANCE for e in explained)
                   for a, b in zip(values, values[1:]))
    if conflict:
        chosen.method = "label-conflict"
    return chosen, conflict


def _rounded(lines: list[_Line], total: _Candidate, rounding: _Candidate, decimal: str | None) -> _Candidate:
    """The total after a rounding adjustment, where the document prints it after the adjustment line
    (``TOTAL 60.31``, ``ROUNDING ADJ -0.01``, ``RM 60.30``); else the total as it was."""
    t, r = _dec(total.value), _dec(rounding.value)
    if t is None or r is None or r == 0 or rounding.line.order < total.line.order:
        return total
    for target in (t + r, t - r):
        for line in lines:
            if line.order < rounding.line.order or line.order > rounding.line.order + 3:
                continue
            for a in v.find_amounts(line.text, decimal=decimal):
                if _dec(a.value) == target and (line.order != rounding.line.order or a.start > rounding.end):
                    return _Candidate(a.value, a.raw, line, a.start, a.end, "rounded", total.priority)
    return total


#: Lines of charges between the subtotal and the total that are neither tax nor discount.
_CHARGE = re.compile(r"(shipping|freight|delivery|handling|postage|carriage|versand\w*|fracht\w*|porto|"
                     r"frais de port|livraison|env[ií]o|spedizione|trasporto|verzend\w*|bezorg\w*)", re.IGNORECASE)


def _charges(lines: list[_Line], decimal: str | None) -> list[_Candidate]:
    out = []
    for line in lines:
        m = _CHARGE.search(line.text)
        if m:
            amounts = v.find_amounts(line.text[m.end():], decimal=decimal)
            if amounts:
                a = amounts[-1]
                out.append(_Candidate(a.value, a.raw, line, m.end() + a.start, m.end() + a.end, "charge"))
    return out


def _sum(subtotal: _Candidate | None, tax: _Candidate | None) -> Decimal | None:
    if subtotal is None or tax is None or _dec(subtotal.value) is None or _dec(tax.value) is None:
        return None
    return _dec(subtotal.value) + _dec(tax.value)


def _printed_sum(lines: list[_Line], subtotal: _Candidate, tax: _Candidate, decimal: str | None) -> _Candidate | None:
    """The amount printed after the subtotal that is subtotal + tax: the total whose label OCR lost (the tax
    may be read from a tax summary further down)."""
    target = _sum(subtotal, tax)
    after = subtotal.line
    for line in lines:
        if line.order <= after.order or line.order == tax.line.order or line.page != after.page or \
                line.middle - after.middle > 8 * after.height:
            continue
        for a in v.find_amounts(line.text, decimal=decimal):
            if _dec(a.value) is not None and abs(_dec(a.value) - target) <= _TOLERANCE:
                return _Candidate(a.value, a.raw, line, a.start, a.end, "printed-sum")
    return None


def _before(lines: list[_Line], rounding: _Candidate, decimal: str | None) -> _Candidate | None:
    """The amount on the line just over a rounding line (``60.31``, then ``ROUNDING ADJ -0.01``)."""
    above = [line for line in lines if line.page == rounding.line.page and line.order < rounding.line.order]
    for line in reversed(above[-2:]):
        amounts = v.find_amounts(line.text, decimal=decimal)
        if amounts and not any(c.isalpha() for c in line.text.replace(amounts[-1].raw, "")):
            a = amounts[-1]
            return _Candidate(a.value, a.raw, line, a.start, a.end, "before-rounding")
    return None


def _largest_amount(lines: list[_Line], labels, decimal: str | None) -> _Candidate | None:
    """The largest amount with decimals in the lower part of the last page, not on a payment line (cash
    tendered, change)."""
    if not lines:
        return None
    last = lines[-1].page
    best = None
    paying = {o.order for line in lines if any(x.field == "payment" for x in labels[line.order])
              for o in lines if o.page == line.page and _same_row(o, line)}
    for line in lines:
        if line.page != last or line.box[1] < 0.3 * line.page_height or line.order in paying:
            continue
        for a in v.find_amounts(line.text, decimal=decimal):
            value = _dec(a.value)
            if value is not None and a.decimals == 2 and (best is None or value > _dec(best.value)):
                best = _Candidate(a.value, a.raw, line, a.start, a.end, "largest-amount")
    return best


def _last(candidates: list[_Candidate]) -> _Candidate | None:
    return candidates[-1] if candidates else None


def _currency(lines: list[_Line], total: _Candidate | None) -> _Candidate | None:
    if total is not None:
        for a in v.find_amounts(total.line.text):
            if a.currency and a.start <= total.start < a.end + 1:
                return _Candidate(a.currency, a.raw, total.line, a.start, a.end, "total")
    counts: dict[str, tuple[int, _Candidate]] = {}
    for line in lines:
        for a in v.find_amounts(line.text):
            if a.currency:
                n, first = counts.get(a.currency, (0, _Candidate(a.currency, a.raw, line, a.start, a.end, "amounts")))
                counts[a.currency] = (n + 1, first)
    if counts:
        return max(counts.values(), key=lambda t: t[0])[1]
    for line in lines:
        if _LEGAL.search(line.text):
            continue  # a company's name: "SDN BHD" is not Bahraini dinars
        code = v.currency_code(line.text)
        if code:
            return _Candidate(code, line.text, line, 0, len(line.text), "text")
    return None


def _first_date(lines: list[_Line], dates) -> _Candidate | None:
    for line in lines:
        for d in dates[line.order]:
            if d.iso:
                return _Candidate(d.iso, d.raw, line, d.start, d.end, "first-date", ambiguous=d.ambiguous)
    return None


def _is_name(line: _Line, labels) -> bool:
    text = _name(line.text)
    letters = sum(c.isalpha() for c in text)
    allowed = ("amount", "description", "document_type") if text != line.text else ("amount", "description")
    return (letters >= 3 and letters >= 0.5 * len(text.replace(" ", "")) and not _TITLE.match(text)
            and not any(label.field not in allowed for label in labels[line.order])
            and not v.find_dates(text) and "@" not in text and "www" not in text.lower()
            and len(text.split()) <= 8 and not _NOT_A_NAME.search(text))


def _name(text: str) -> str:
    """A company name without the registration number printed after it, nor a title after it
    (``Amazon Web Services Invoice``)."""
    text = " ".join(_REGISTRATION.sub(" ", text).split()).strip(" ,;:")
    return _TRAILING_TITLE.sub("", text).strip(" ,;:-") or text


_TRAILING_TITLE = re.compile(r"\s+(tax\s+)?(invoice|receipt|rechnung|facture|factura|fattura|factuur|statement)\s*$",
                             re.IGNORECASE)


def _customer_lines(lines: list[_Line], labels) -> set[int]:
    """The lines of the customer's block: a customer label's line and the few lines under it."""
    out: set[int] = set()
    for line in lines:
        if any(label.field == "customer_name" for label in labels[line.order]):
            out.add(line.order)
            below = sorted((o for o in lines if o.page == line.page and 0 <= o.box[1] - line.box[1] <= 5 * line.height
                            and abs(o.box[0] - line.box[0]) < 2 * line.height), key=lambda o: o.box[1])
            out.update(o.order for o in below[:5])
    return out


def _sender(lines: list[_Line]) -> _Candidate | None:
    """The company in a sender line over the address window (``ACME GmbH - Hauptstr. 1 - 10115 Berlin``)."""
    first = lines[0].page
    for line in lines:
        if line.page != first or line.box[1] > 0.4 * line.page_height:
            continue
        parts = re.split(r"\s+[-·|•]\s+", line.text)
        if len(parts) >= 3 and _LEGAL.search(parts[0]) and any(c.isdigit() for c in line.text):
            name = parts[0].strip()
            return _Candidate(name, name, line, 0, len(name), "sender-line")
    return None


def _supplier(lines: list[_Line], labels) -> _Candidate | None:
    """The most prominent name near the top of the first page: company-like, tall, early, not an address,
    not the customer's; a name printed over two lines (``POPULAR BOOK`` / ``CO. (M) SDN BHD``) is joined.
    A sender line over the address window names the supplier outright."""
    first = lines[0].page
    customer = _customer_lines(lines, labels)
    top = [line for line in lines if line.page == first and line.box[1] < 0.3 * line.page_height][:12]
    candidates = [line for line in top if _is_name(line, labels) and line.order not in customer]
    sender = _sender(lines)
    if sender is not None:  # the letter says who sent it (the name at the top may be the recipient's)
        return sender
    if not candidates:
        return None
    median_h = sorted(line.height for line in top)[len(top) // 2]
    domains = _domains(lines)

    def score(line: _Line) -> float:
        text = _name(line.text)
        s = min(line.height / median_h, 2.0) - 0.25 * candidates.index(line)
        squashed = "".join(c for c in text.casefold() if c.isalnum())
        if any(d in squashed for d in domains):
            s += 2.5  # the name of the document's own website (Azure Interior, www.azure-interior.com)
        if text == text.lower():
            s -= 2.0  # printed names are in capitals or title case; a name in small letters is a person's
        s += 2.0 if _LEGAL.search(text) else (1.0 if _BUSINESS.search(text) else 0.0)
        if _ADDRESS_START.match(text) or re.search(r"\d{4,}", text):
            s -= 1.5  # a street, a postcode
        return s

    best = max(candidates, key=score)
    row = [best]  # a name OCR read as pieces of one row: the name-like pieces beside it, one after the other
    for step in (-1, 1):
        while True:
            edge = row[0] if step < 0 else row[-1]
            nxt = [o for o in top if o not in row and _same_row(o, edge) and _is_name(o, labels)
                   and o.order not in customer and not _ADDRESS_START.match(o.text)
                   and 0.6 <= o.height / edge.height <= 1.6
                   and -0.3 * edge.height <= ((edge.box[0] - o.box[2]) if step < 0 else (o.box[0] - edge.box[2]))
                   < 1.5 * edge.height]
            if not nxt:
                break
            row = [nxt[0], *row] if step < 0 else [*row, nxt[0]]
    parts = row
    above, below = _neighbour(top, parts, -1), _neighbour(top, parts, 1)
    if above is not None and _CONTINUATION.match(parts[0].text) and _is_name(above, labels):
        parts.insert(0, above)
    text = " ".join(p.text for p in parts)
    if below is not None and _is_name(below, labels) and below.order not in customer and \
            not _ADDRESS_START.match(below.text) and (
            _CONTINUES.search(text) or text.count("(") > text.count(")")
            or (_CONTINUATION.match(below.text) and not _LEGAL.search(text))
            or _same_style(parts[-1], below) and not _LEGAL.search(text)):
        parts.append(below)
    text = _name(" ".join(p.text for p in parts))
    method = "company-words" if _COMPANY.search(text) else "top-line"
    if len(parts) == 1:
        candidate = _Candidate(text, best.text, best, 0, len(best.text), method)
    else:
        candidate = _joined(parts, text, method)
    candidate.value = _name_value(text)
    return candidate


#: A web address or an e-mail address: its domain.
_DOMAIN = re.compile(r"(?:www\.|https?://|@)((?:[a-z0-9-]+\.)+)[a-z]{2,}\b", re.IGNORECASE)
#: Domains that name a mail or web provider, not the sender.
_PROVIDERS = frozenset({"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "icloud", "aol", "gmx",
                        "web", "example", "mail", "protonmail", "qq", "163"})


def _domains(lines: list[_Line]) -> set[str]:
    """The names of the web and e-mail domains a document prints (``www.azure-interior.com`` ->
    ``azureinterior``), letters and digits only, at least 4 long; not mail providers'."""
    out = set()
    for line in lines:
        for m in _DOMAIN.finditer(line.text):
            name = m.group(1).rstrip(".").split(".")[-1].casefold()
            squashed = "".join(c for c in name if c.isalnum())
            if len(squashed) >= 4 and name not in _PROVIDERS:
                out.add(squashed)
    return out


def _name_value(name: str) -> str:
    """A name in compatibility form (full-width brackets made ASCII: NFKC), and with its legal form corrected
    where OCR misread one letter of it (``MR. D.I.Y. (M) SON BHD`` -> ``... SDN BHD``)."""
    name = unicodedata.normalize("NFKC", name)
    words = name.split()
    for n in (2, 1):
        tail = " ".join(words[-n:])
        letters = "".join(c for c in tail if c.isalnum()).lower()
        for form in _LEGAL_FORMS:
            want = "".join(c for c in form if c.isalnum()).lower()
            if len(want) >= 4 and len(letters) == len(want) and sum(a != b for a, b in zip(letters, want)) == 1:
                fixed = form.upper() if tail.isupper() else form
                return " ".join([*words[:-n], fixed])
    return name


def _same_style(line: _Line, below: _Line) -> bool:
    """Whether ``below`` continues ``line`` as one heading: as tall (within 15%), centred on it, in capitals
    like it, with no digit (not a street, a phone, a number)."""
    centre, below_centre = (line.box[0] + line.box[2]) / 2, (below.box[0] + below.box[2]) / 2
    return (0.85 <= below.height / line.height <= 1.15 and abs(centre - below_centre) < 0.5 * line.height
            and line.text.isupper() and below.text.isupper() and not any(c.isdigit() for c in below.text))


def _neighbour(lines: list[_Line], parts: list[_Line], direction: int) -> _Line | None:
    """The line just above (``-1``) or below (``1``) some lines of one row: overlapping them across, the gap
    at most most of a line height, a similar height."""
    x0, x1 = min(p.box[0] for p in parts), max(p.box[2] for p in parts)
    anchor = parts[0]
    near = [o for o in lines if o not in parts and min(o.box[2], x1) - max(o.box[0], x0) > 0
            and (_close(o, anchor) if direction < 0 else _close(anchor, o))]
    return min(near, key=lambda o: abs(o.box[1] - anchor.box[1]), default=None)


def _close(upper: _Line, lower: _Line) -> bool:
    """Whether ``lower`` follows ``upper`` as the next line of one text: on the next row down, at most most of
    a line height between them, a similar height."""
    return (not _same_row(upper, lower) and lower.middle > upper.middle
            and lower.box[1] - upper.box[3] <= 0.8 * upper.height
            and 0.6 <= lower.height / upper.height <= 1.6)


def _joined(parts: list[_Line], text: str, method: str) -> _Candidate:
    """A candidate made of several lines: their text joined, the box around them."""
    first = parts[0]
    polygon = bounding_polygon([box_polygon(line.box) for line in parts])
    line = _Line(first.order, first.page, text, polygon_box(polygon), (), first.page_height, first.page_width)
    return _Candidate(text, "\n".join(p.text for p in parts), line, 0, len(text), method, parts=tuple(parts))


def _address(lines: list[_Line], supplier: _Candidate | None, labels) -> _Candidate | None:
    """The lines under the supplier's name, without registration numbers, to the first line that is not
    an address (a phone, a tax id, a label, a date, a gap)."""
    if supplier is None:
        return None
    name_lines = supplier.parts or (supplier.line,)
    name, last = supplier.line, name_lines[-1]
    x0, x1 = name.box[0], name.box[2]
    taken = {line.order for line in name_lines}
    after = [line for line in lines if line.page == name.page and line.order not in taken
             and line.middle > last.middle and not _same_row(line, last)
             and (line.order > name.order or _overlap(line, x0, x1))]
    # the lines under the name in the order printed, top to bottom, where the reading order swapped two whose
    # boxes overlap; lines beside them (another column) keep their place
    under = [i for i, line in enumerate(after) if _overlap(line, x0, x1)]
    for i, line in zip(under, sorted((after[i] for i in under), key=functools.cmp_to_key(_top_down))):
        after[i] = line
    kept: list[_Line] = []
    previous_bottom = name.box[3]
    for line in after[:10]:
        text = _REGISTRATION.sub(" ", line.text).strip()
        if _REGISTRATION_LINE.match(line.text) or _KEY_VALUE.match(line.text) or not any(c.isalnum() for c in text):
            continue  # a registration number, a detail like SITE: 2395
        dates = v.find_dates(line.text)
        if dates and not re.search(r"[^\W\d]{3,}", line.text[:dates[0].start] + line.text[dates[0].end:]):
            continue  # a date (and time) beside the address, printed on its right
        address_like = _ADDRESS_START.match(text)
        if not kept and _REGISTERED.search(line.text) and v.find_tax_ids(line.text):
            continue  # a tax or company number printed between the name and the address
        if _ADDRESS_STOP.search(line.text) or _PHONE.match(line.text) or (
                (labels[line.order] or _KEY_COLON.match(text)) and not address_like):
            break
        if kept and line.box[1] - previous_bottom > 1.5 * kept[-1].height and \
                line.middle - kept[-1].middle > 2.5 * kept[-1].height:
            break
        kept.append(line)
        previous_bottom = line.box[3]
        if len(kept) == 6 or _ends_with_country(line.text):
            break
    if len(kept) > 1 and not any(c.isdigit() for c in kept[0].text) and _ADDRESS_START.match(
            _REGISTRATION.sub(" ", kept[1].text).strip()):
        kept = kept[1:]  # the last line of a name over two lines; the address starts under it
    if not kept or not any(any(c.isdigit() for c in line.text) for line in kept):
        return None  # an address has a number: a street, a postcode
    text = " ".join(" ".join(_REGISTRATION.sub(" ", line.text).split()) for line in kept)
    candidate = _joined(kept, text, "below-supplier")
    candidate.value = _NUMBER_WITH_O.sub(lambda m: m.group().replace("O", "0").replace("o", "0"),
                                         unicodedata.normalize("NFKC", text))
    return candidate


#: A house number or postcode with a 0 OCR read as the letter O (``NO 29O``, ``4330O``): digits and Os, at
#: least two digits, a whole word.
_NUMBER_WITH_O = re.compile(r"(?<![\w.])(?=(?:[Oo]*\d){2})[\dOo]*\d[\dOo]*(?!\w)")


def _top_down(a: _Line, b: _Line) -> int:
    """Order of two lines top to bottom; on one row, in reading order."""
    if _same_row(a, b):
        return a.order - b.order
    return -1 if a.middle < b.middle else 1


def _overlap(line: _Line, x0: float, x1: float) -> bool:
    """Whether a line overlaps the span ``x0..x1`` across."""
    return min(line.box[2], x1) - max(line.box[0], x0) > 0


def _dec(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value is not None else None
    except (InvalidOperation, ValueError):
        return None


def _line_items(lines: list[_Line], labels, decimal: str | None, confidence: float) -> list[LineItem]:
    """The rows under a table header, down to the first totals line, each number in its header column."""
    header = None
    for line in lines:
        row = [other for other in lines if other.page == line.page and _same_row(line, other)]
        kinds = {label.field for other in row for label in labels[other.order]}
        if len(kinds & {"description", "quantity", "unit_price", "amount"}) >= 2 and "amount" in kinds | {"unit_price"}:
            header = (line, row)
            break
    if header is None:
        return []
    line, row = header
    columns: dict[str, float] = {}
    for other in row:
        for label in labels[other.order]:
            if label.field in ("description", "quantity", "unit_price", "amount"):
                poly = other.span_polygon(label.start, label.end) or box_polygon(other.box)
                box = polygon_box(poly)
                columns.setdefault(label.field, (box[0] + box[2]) / 2)
    header_bottom = max(other.box[3] for other in row)
    body = [other for other in lines if other.page == line.page and other.box[1] >= header_bottom - 1
            and other.order not in {r.order for r in row}]
    rows: list[list[_Line]] = []
    for other in sorted(body, key=lambda o: (o.box[1], o.box[0])):
        if any(label.field in ("total", "subtotal", "tax") for label in labels[other.order]):
            break
        if rows and _same_row(rows[-1][0], other):
            rows[-1].append(other)
        else:
            rows.append([other])
    items = []
    numeric = [name for name in ("quantity", "unit_price", "amount") if name in columns]
    for cells in rows:
        values: dict[str, str] = {}
        description = []
        for cell in sorted(cells, key=lambda c: c.box[0]):
            for word in cell.words or ():
                box = polygon_box(word.polygon)
                centre = (box[0] + box[2]) / 2
                number = v.find_amounts(word.text, decimal=decimal, integers=True)
                near = min(numeric, key=lambda n: abs(columns[n] - centre)) if numeric else None
                if number and near and (not columns.get("description") or
                                        abs(columns[near] - centre) < abs(columns["description"] - centre)):
                    values.setdefault(near, number[-1].value)
                else:
                    description.append(word.text)
            if not cell.words:
                description.append(cell.text)
        if not values.get("amount") and not values.get("unit_price"):
            continue
        polygon = bounding_polygon([box_polygon(c.box) for c in cells])
        items.append(LineItem(len(items), " ".join(description), values.get("quantity"), values.get("unit_price"),
                              values.get("amount"), confidence, cells[0].page, polygon))
    return items


def _same_row(a: _Line, b: _Line) -> bool:
    """Whether two lines are on one row: their middles closer than 0.4 of the smaller height (not their boxes'
    overlap: the boxes of tightly printed lines overlap the next row's)."""
    return abs(a.middle - b.middle) < 0.4 * min(a.height, b.height)


def _consistency(found: dict[str, Field], items: list[LineItem], charges: list[_Candidate],
                 discounts: list[_Candidate]) -> list[str]:
    """Review reasons from amounts that do not add up (subtotal + tax, with the document's charges and
    discounts where it has them, against the total; the line items against the subtotal)."""
    out = []
    total, subtotal, tax = (_dec(found[k].value) if k in found else None for k in ("total", "subtotal", "tax"))
    if total is not None and subtotal is not None and tax is not None:
        extra = sum((_dec(c.value) or Decimal(0) for c in charges), Decimal(0))
        off = sum((abs(_dec(d.value) or Decimal(0)) for d in discounts), Decimal(0))
        if all(abs(subtotal + tax + e - total) > _TOLERANCE for e in {Decimal(0), extra, extra - off, -off}):
            out.append("totals_mismatch")
    amounts = [_dec(item.amount) for item in items if item.amount is not None]
    if amounts and None not in amounts:
        target = subtotal if subtotal is not None else (total if tax is None else None)
        if target is not None and abs(sum(amounts) - target) > _TOLERANCE:
            out.append("line_items_mismatch")
    return out
