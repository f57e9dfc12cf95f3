"""Value parsers for invoice and receipt fields: amounts, currencies, percentages, dates, labels and tax ids.

Pure functions over one line of text (OCR'd or born-digital), with no state
and no I/O, fast enough to run on every line of every page (tens of
microseconds a line). :mod:`pipeline.stages.fields` decides what the values
mean from where they are; this module only says what a piece of text *is*:

* :func:`find_amounts`: money-looking numbers in both decimal conventions
  (``1,234.56``, ``1.234,56``, ``1 234,56``, ``1'234.56``, ``12,-``), with
  their currency, sign and parentheses, tolerant of OCR noise (``l2.5O``,
  ``RM 9 .00``, ``TOTAL:RM9.00``); never dates, times, percentages, phone
  numbers, IBANs or long digit runs;
* :func:`currency_code`: the ISO 4217 code a symbol or code stands for;
* :func:`find_percentages`: ``6%``, ``6,5 %`` (tax rates, kept apart from amounts);
* :func:`find_dates`: numeric (``25.12.18``, ``12/25/2018``, ``2018-12-25``,
  ``20181225``) and written dates in eight languages (``Dec 25, 2018``,
  ``3. März 2024``, ``15 de enero de 2024``, ``12 Mei 2019``), ISO 8601 out,
  with day-month ambiguity made explicit rather than guessed silently;
* :data:`LABELS` and :func:`find_labels`: the words that announce a field
  (``Total``, ``Gesamtbetrag``, ``Montant TTC``, ``No. Invois``...);
* :func:`find_tax_ids`: VAT, GST and company registration numbers.

Every match carries its ``start``/``end`` offsets in the text it was given
and its ``raw`` text as printed, so the caller can map it back to words and
boxes. Text is read through a same-length "shadow" (OCR letter-for-digit
fixes, typographic spaces and dashes made plain) so offsets always refer to
the original string.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "AmountMatch",
    "PercentMatch",
    "DateMatch",
    "LabelMatch",
    "TaxIdMatch",
    "LABELS",
    "DATE_ORDERS",
    "fold",
    "find_amounts",
    "find_percentages",
    "currency_code",
    "find_dates",
    "find_labels",
    "find_tax_ids",
]

log = logging.getLogger(__name__)

#: The values :func:`find_dates` takes as its ``order`` hint.
DATE_ORDERS = ("DMY", "MDY", "YMD")


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmountMatch:
    """A money-looking number in a line.

    Attributes:
        start / end: the span of the whole printed amount in the text given, sign, currency and
            parentheses included (``text[start:end] == raw``).
        value: the amount as a plain decimal string: ``-`` for negatives, ``.`` as the decimal mark,
            no thousands separators, as many decimals as printed (``"1234.56"``, ``"-12.00"``, ``"9"``);
            ``12,-`` is ``"12.00"``.
        currency: the ISO 4217 code of a currency printed next to it, else None.
        raw: the printed text.
        decimals: how many decimals the value has (0 for an integer).
    """

    start: int
    end: int
    value: str
    currency: str | None
    raw: str
    decimals: int

    @property
    def decimal(self) -> Decimal:
        """The value as a :class:`~decimal.Decimal`."""
        return Decimal(self.value)


@dataclass(frozen=True, slots=True)
class PercentMatch:
    """A percentage (``6%``, ``6,00 %``): its span, its value as a decimal string (``"6.00"``), its text."""

    start: int
    end: int
    value: str
    raw: str


@dataclass(frozen=True, slots=True)
class DateMatch:
    """A date in a line.

    Attributes:
        start / end / raw: where it is and what was printed.
        iso: ``YYYY-MM-DD``, or None when the text has the shape of a date but is no valid date
            (``31/02/2020``, ``45/13/2020``): the caller can flag it.
        ambiguous: a numeric date whose first two parts could each be the day or the month
            (``05/06/2020``) and no ``order`` hint said which; its ``iso`` is read day-first.
        order: the order a numeric date was read in (``DMY``, ``MDY``, ``YMD``); None when no order
            gives a valid date, or when both do and give the same date (``05/05/2020``, unless an
            ``order`` hint was given). Written dates (``25 Dec 2018``) have None: a month name settles the
            question, so they are no evidence of how the document writes numeric dates.
    """

    start: int
    end: int
    iso: str | None
    raw: str
    ambiguous: bool
    order: str | None


@dataclass(frozen=True, slots=True)
class LabelMatch:
    """A label in a line: the field it announces (a key of :data:`LABELS`), its span (a trailing
    ``:``, ``#``, ``.`` or ``)`` included, so the value starts at ``end``), and the canonical label
    as listed in :data:`LABELS` (lowercase, accent-folded)."""

    field: str
    start: int
    end: int
    label: str


class TaxIdMatch(NamedTuple):
    """A tax or company id: ``(start, end, value)``, the value as printed, uppercase, whitespace removed."""

    start: int
    end: int
    value: str


# -- folding and the shadow text ------------------------------------------------------------------


class _FoldTable(dict):
    """A ``str.translate`` table that maps each character to exactly one character (so offsets
    survive): lowercase, accents stripped, typographic apostrophes and dashes made plain."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        low = ch.lower()
        if len(low) != 1:
            low = ch
        base = "".join(c for c in unicodedata.normalize("NFKD", low) if not unicodedata.combining(c))
        out = base.lower() if len(base) == 1 and len(base.lower()) == 1 else low
        self[code] = out
        return out


_FOLD = _FoldTable({ord(k): v for k, v in {
    "\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'", "\u2032": "'",
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2116": "#",  # numero sign
    "\u00ba": "o",  # masculine ordinal (nº)
}.items()})


def fold(text: str) -> str:
    """Fold text the way :data:`LABELS` is written: lowercase, accents stripped (``Fällig`` ->
    ``fallig``), typographic apostrophes and dashes made ASCII, ``№`` as ``#``.

    Every character folds to exactly one character, so offsets into the folded text are offsets into
    the original.
    """
    return text.translate(_FOLD)


# The shadow a line's numbers are read from: same length as the line, typographic spaces, quotes,
# minus signs and full-width digits made ASCII.
_SHADOW = str.maketrans({
    "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2008": " ", "\t": " ",
    "\u2019": "'", "\u2018": "'", "\u2032": "'", "\u00b4": "'",
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-", "\ufe63": "-", "\uff0d": "-",
    "\uff0c": ",", "\uff0e": ".", "\uff05": "%", "\u066b": ",",
    **{chr(0xFF10 + i): str(i) for i in range(10)},
})
_NARROW_SPACES = frozenset("\u00a0\u202f\u2009\u2007\u2008")
# OCR reads 0 as O/o and 1 as l/I. A run of those letters next to a digit (or next to a decimal mark
# next to a digit) is digits, unless a letter outside the set touches it (a word: "Total10").
_OCR_RUN = re.compile(r"(?<=[0-9])[OoIl]+|(?<=[0-9][.,])[OoIl]+|[OoIl]+(?=[.,]?[0-9])")
_OCR_DIGITS = str.maketrans("OoIl", "0011")
_DIGIT = re.compile(r"[0-9\uff10-\uff19]")


def _is_word_letter(ch: str) -> bool:
    return ch.isalpha() and ch not in "OoIl"


def _shadow(text: str) -> str:
    s = text.translate(_SHADOW)
    fixed = _ocr_fix(s)
    # a second pass for runs that only touch a digit once the first is fixed ("1O.OO")
    return fixed if fixed is s else _ocr_fix(fixed)


def _ocr_fix(s: str) -> str:
    fixed = None
    for m in _OCR_RUN.finditer(s):
        a, b = m.span()
        if (a > 0 and _is_word_letter(s[a - 1])) or (b < len(s) and _is_word_letter(s[b])):
            continue
        run = m.group()
        trailing = b >= len(s) or not (s[b].isdigit() or (s[b] in ".," and b + 1 < len(s) and s[b + 1].isdigit()))
        if trailing and ("l" in run or "I" in run):
            continue  # "1.5l" is litres, "2I" is not 21
        if fixed is None:
            fixed = list(s)
        fixed[a:b] = run.translate(_OCR_DIGITS)
    return s if fixed is None else "".join(fixed)


# -- currencies -----------------------------------------------------------------------------------

#: The ISO 4217 codes recognised as currencies when printed as three letters.
_ISO = frozenset([
    "USD", "EUR", "GBP", "JPY", "CNY", "HKD", "SGD", "MYR", "AUD", "CAD", "NZD", "CHF", "SEK", "NOK", "DKK",
    "ISK", "PLN", "CZK", "HUF", "RON", "BGN", "RUB", "UAH", "TRY", "INR", "IDR", "PHP", "THB", "VND", "KRW",
    "TWD", "BRL", "MXN", "ARS", "CLP", "COP", "PEN", "ZAR", "NGN", "KES", "EGP", "AED", "SAR", "QAR", "KWD",
    "BHD", "OMR", "ILS", "PKR", "BDT", "LKR"
])
#: Codes that are also English words (a receipt's "TRY OUR CAKES"): the weakest evidence of all.
_ISO_WORDS = frozenset(["TRY", "PEN", "COP"])
#: Codes also taken in lower or mixed case (``eur``, ``Php``); the others are words too (try, pen, cop).
_ISO_ANY_CASE = frozenset([
    "USD", "EUR", "GBP", "JPY", "CNY", "HKD", "SGD", "MYR", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN",
    "CZK", "HUF", "INR", "IDR", "PHP", "THB", "VND", "KRW", "BRL", "MXN", "ZAR", "AED"
])
# symbol (as matched, upper-cased) -> (code, rank); rank 0 is an explicit code, 2 a symbol several
# currencies use ($, kr, ¥, Fr.), which an explicit code elsewhere in the text overrides.
_SYMBOLS = {
    "US$": ("USD", 1), "HK$": ("HKD", 1), "S$": ("SGD", 1), "SG$": ("SGD", 1), "A$": ("AUD", 1),
    "AU$": ("AUD", 1), "C$": ("CAD", 1), "CA$": ("CAD", 1), "NZ$": ("NZD", 1), "NT$": ("TWD", 1),
    "MX$": ("MXN", 1), "R$": ("BRL", 1), "$": ("USD", 2), "€": ("EUR", 1), "£": ("GBP", 1),
    "¥": ("JPY", 2), "￥": ("JPY", 2), "円": ("JPY", 1), "元": ("CNY", 1), "RMB": ("CNY", 1),
    "₹": ("INR", 1), "₨": ("INR", 2), "RS": ("INR", 2), "RM": ("MYR", 1), "RP": ("IDR", 1),
    "SFR": ("CHF", 1), "FR": ("CHF", 2), "KR": ("SEK", 2), "ZŁ": ("PLN", 1), "ZL": ("PLN", 1),
    "KČ": ("CZK", 1), "KC": ("CZK", 1), "FT": ("HUF", 1), "₩": ("KRW", 1), "₱": ("PHP", 1),
    "฿": ("THB", 1), "₺": ("TRY", 1), "₽": ("RUB", 1), "₫": ("VND", 1), "₪": ("ILS", 1),
    "EURO": ("EUR", 1), "EUROS": ("EUR", 1), "RINGGIT": ("MYR", 1), "RUPIAH": ("IDR", 1),
    "RUPEE": ("INR", 1), "RUPEES": ("INR", 1),
}
_WL = r"[^\W\d_]"  # a letter
_CUR = (
    rf"(?:(?<!{_WL})(?:US|HK|SG|AU|CA|NZ|NT|MX|[SACR])\$"
    r"|[$€£¥￥₹₨₩₱฿₺₽₫₪円元]"
    rf"|(?<!{_WL})(?:RMB|RM|(?i:rs)|(?i:rp)|SFr|Fr(?=\.)|(?i:kr)|z[łl]|Z[ŁL]|K[čcČ]|Ft"
    rf"|(?i:euros?|ringgit|rupiah|rupees?)|(?i:[a-z]{{3}}))(?!{_WL}))"
)
_CUR_ANY = re.compile(_CUR)
_CUR_BEFORE = re.compile(rf"(?:{_CUR})\.?$")  # searched within a short window ending at the number
_CUR_AFTER = re.compile(rf" {{0,2}}(?:{_CUR})\.?")
_NUMBER_NEXT = re.compile(r" {0,2}[-+(]?[0-9]")


def _currency_of(token: str) -> tuple[str, int] | None:
    """The (code, rank) a matched currency token stands for, None for a three-letter word."""
    token = token.rstrip(".")
    up = token.upper()
    hit = _SYMBOLS.get(up)
    if hit is not None:
        return hit
    if len(token) == 3 and up in _ISO and (token == up or up in _ISO_ANY_CASE):
        return up, 3 if up in _ISO_WORDS else 0
    return None


def currency_code(text: str) -> str | None:
    """The ISO 4217 code of the currency a short text names (a label, an amount, a line).

    Symbols and codes: ``€`` EUR, ``$`` USD (``RM`` MYR, ``S$`` SGD, ``A$`` AUD, ``C$`` CAD, ``US$``
    USD, ``HK$`` HKD, ``R$`` BRL), ``£`` GBP, ``¥`` JPY (``RMB``/``元`` CNY), ``₹``/``Rs`` INR,
    ``CHF``/``Fr.``, ``kr`` SEK, ``zł`` PLN, ``Kč`` CZK, ``₩`` KRW, ``Rp`` IDR, ``₱`` PHP, ``฿`` THB,
    ``₺`` TRY, ``₽`` RUB, ``Ft`` HUF, and the common three-letter codes. An explicit code wins over a
    symbol that several currencies use (``kr ... DKK`` is DKK, ``$ ... SGD`` is SGD); otherwise the
    first one found.

    Args:
        text: any text; longer texts are scanned whole.

    Returns:
        The code, or None when no currency is named.
    """
    best: tuple[int, str] | None = None
    for m in _CUR_ANY.finditer(text):
        hit = _currency_of(m.group())
        if hit is not None and (best is None or hit[1] < best[0]):
            best = (hit[1], hit[0])
            if hit[1] == 0:
                break
    return best[1] if best else None


# -- amounts --------------------------------------------------------------------------------------

_NUM_SRC = r"""
    (?<![0-9])(?<![0-9][.,'])
    (?:
        (?P<ind>[0-9]{1,2}(?:,[0-9]{2})+,[0-9]{3})                    # Indian grouping 12,34,567
      | (?P<grp>[0-9]{1,3}(?P<sep>[,.'])[0-9]{3}(?:(?P=sep)[0-9]{3})*) # 1,234,567  1.234  1'234
      SPACE
      | (?P<pln>[0-9]+)
    )
    (?:
        (?P<dm>[.,])(?P<frac>[0-9]{1,4})
      | \ (?P<dm2>[.,])\ ?(?P<frac2>[0-9]{2})(?![0-9])                # "9 .00" (OCR)
      | (?P<dm3>[.,])\ (?P<frac3>[0-9]{2})(?![0-9])                   # "9. 00" (OCR)
      | (?P<dash>[.,]-{1,2})                                          # 12,-
    )?
    (?![0-9])(?![.,'][0-9])
"""
_NUM = re.compile(_NUM_SRC.replace("SPACE", r"| (?P<spc>[0-9]{1,3}(?:\ [0-9]{3})+)"), re.VERBOSE)
_NUM_NO_SPACE = re.compile(_NUM_SRC.replace("SPACE", ""), re.VERBOSE)

# What looks like a number but is not an amount; found first, amounts inside are dropped.
_BLOCK = re.compile(r"""
    (?<![0-9])(?<![0-9][.,/-])[0-9]{1,2}(?P<s1>\ ?[./]\ ?|-)[0-9]{1,2}(?P=s1)(?:[0-9]{4}|[0-9]{2})(?![0-9])  # dates
  | (?<![0-9])(?<![0-9][.,/-])[0-9]{4}(?P<s2>\ ?[./]\ ?|-)[0-9]{1,2}(?P=s2)[0-9]{1,2}(?![0-9])
  | (?<![0-9])[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?(?![0-9])(?:\ ?(?i:[ap]\.?m\b\.?|h\b|uhr\b))?       # 10:30
  | (?<![0-9.,])[0-9]{1,2}[.h][0-9]{2}\ ?(?i:[ap]\.?m\b\.?|uhr\b)                                   # 10.30 am
  | \+\ ?[0-9]{1,3}[\ (\-][\ ()\-/0-9]{5,20}[0-9](?![0-9]|[.,][0-9])                                # +60 3-1234 5678
  | \+\ ?[0-9]{2}\ ?[0-9](?:[.\ ][0-9]{2}){4}(?![0-9])                                              # +33 1.23.45.67.89
  | \+[0-9]{8,15}(?![0-9])
  | (?<![0-9.,])\(0?[0-9]{1,4}\)\ ?[0-9][0-9\ \-]{4,12}[0-9](?![0-9]|[.,][0-9])                   # (03) 1234 5678
  | (?<![0-9.,])0[0-9]{1,4}[\ \-/][0-9]{3,4}[\ \-]?[0-9]{3,5}(?![0-9])                              # 03-1234 5678
  | (?<![0-9.,])0[0-9](?:[.\ ][0-9]{2}){4}(?![0-9])                                                 # 01.23.45.67.89
  | (?<![0-9.,])[0-9]{3}[-.][0-9]{3}[-.][0-9]{4}(?![0-9])                                           # 555-123-4567
  | (?i:\b(?:tel|t[eé]l|phone|ph|fax|hp|mobile|mob|telefon|telp|handphone|tlf|cell)\b\.?\ ?(?:no\.?\ ?)?[:.]?\ ?)
    [+(]?[0-9][0-9\ \-/()]{5,18}[0-9](?![0-9]|[.,][0-9])                                           # Tel: ...
  | \b[A-Z]{2}[0-9]{2}(?:\ ?[A-Z0-9]{4}){3,7}(?:\ ?[A-Z0-9]{1,3})?\b                                # IBAN
""", re.VERBOSE)
_PERCENT_AFTER = re.compile(r" ?%")
_ID_MARK_BEFORE = re.compile(r"(?:#|№|\b[Nn][o°º]\.?|\b[Nn]r\.?|\b[Nn]\.)\ ?$")
_CLOSE = re.compile(r" ?\)")


def _glued(ch: str) -> bool:
    """Whether a character touching a number makes it part of a word or an id."""
    return ch.isalpha() or ch == "_"


def _parse_number(m: re.Match, decimal: str | None) -> tuple[str, str, bool] | None:
    """(integer digits, fraction digits, dash form) of a number match, None when it is malformed."""
    frac = m.group("frac") or m.group("frac2") or m.group("frac3") or ""
    dm = m.group("dm") or m.group("dm2") or m.group("dm3")
    dash = m.group("dash") is not None
    if m.group("ind") is not None:
        if dm == ",":
            return None
        return m.group("ind").replace(",", ""), frac, dash
    grp = m.group("grp")
    if grp is not None:
        sep = m.group("sep")
        head, *groups = grp.split(sep)
        if dm is None and not dash and len(groups) == 1 and sep in ".,":
            # 1.234 / 1,234: a thousands group, unless the caller says this is the decimal mark or
            # the head is 0 (0.500 is no thousands).
            if decimal == sep or head == "0":
                return head, groups[0], False
            return head + groups[0], "", False
        if dm is not None and dm == sep and len(frac) != 2:
            return None  # 1.234.5: no amount
        if head == "0" and sep in ".,":
            return None
        return head + "".join(groups), frac, dash
    spc = m.groupdict().get("spc")
    if spc is not None:
        return spc.replace(" ", ""), frac, dash
    digits = m.group("pln")
    return digits, frac, dash


def find_amounts(text: str, *, decimal: str | None = None, integers: bool = False,
                 spaces: bool | None = None) -> list[AmountMatch]:
    """Every money-looking number in a line of text, left to right.

    Both decimal conventions are read (``1,234.56``, ``1.234,56``, ``1 234,56``, ``1'234.56``,
    ``12,34,567.00``, ``1234,5``); a lone separator followed by exactly three digits (``1.234``,
    ``1,234``) is a thousands separator unless ``decimal`` says it is the decimal mark (or the number
    starts ``0``). A leading ``-``, a trailing ``-`` (``12.50-``) or parentheses (``(12.50)``) make it
    negative; a currency before or after it (``RM9.00``, ``12,50 €``, ``12.50EUR``, ``Rs.150``) is
    given as its ISO code. OCR noise is tolerated: ``O``/``o`` for 0 and ``l``/``I`` for 1 next to
    digits, a stray space around the decimal mark (``RM 9 .00``), no space after a label
    (``TOTAL:RM9.00``).

    Not amounts: dates (``25.12.2018``, ``12/25/18``), times (``10:30``), percentages (``6%``: see
    :func:`find_percentages`), phone numbers, IBANs, numbers inside words or ids (``INV-2018``,
    ``A4``), integers of more than 9 digits, and integers with no currency unless ``integers``.
    A space as thousands separator (``1 234,56``) is taken with a decimal comma, a currency before
    the number (``RM 1 234.56``), a currency after an integer (``1 234 €``), or a narrow or no-break
    space; otherwise ``2 100.00`` is read as ``2`` and ``100.00`` (a quantity and a price), unless
    ``spaces`` says otherwise.

    Args:
        text: one line of text.
        decimal: ``","`` or ``"."`` when the document's decimal mark is known; it settles
            ``1.234`` / ``1,234`` only (everything else says what it is).
        integers: also give integers that have no currency (quantities in a table).
        spaces: whether digit groups separated by single spaces are one number: True always
            (a value beside a ``Total`` label: ``1 234.56``), False never (a table row), None
            decide as above.

    Returns:
        The amounts, in the order they appear, not overlapping.

    Raises:
        ValueError: ``decimal`` is not None, ``","`` or ``"."``.
    """
    if decimal not in (None, ",", "."):
        raise ValueError(f"decimal must be None, ',' or '.', not {decimal!r}")
    if not text or not _DIGIT.search(text):
        return []
    s = _shadow(text)
    blocked = [m.span() for m in _BLOCK.finditer(s)]
    if integers:
        blocked += [(d.start, d.end) for d in find_dates(text)]
    out: list[AmountMatch] = []
    n = len(s)
    pos = 0
    floor = 0  # an amount's span may not reach back into the previous one
    while (m := _NUM.search(s, pos)) is not None:
        start = m.start()
        if m.group("spc") is not None and not (spaces if spaces is not None else
                                               _space_grouping_kept(m, s, text, floor)):
            m = _NUM_NO_SPACE.match(s, start)
            if m is None:
                pos = start + 1
                continue
        end = m.end()
        pos = end
        if any(a < end and start < b for a, b in blocked):
            continue
        parsed = _parse_number(m, decimal)
        if parsed is None:
            continue
        int_digits, frac, dash = parsed
        found = _amount_context(s, start, end, floor)
        if found is None:
            continue
        left, right, negative, currency, cur_before = found
        before = s[left - 1] if left > 0 else " "
        after = s[right] if right < n else " "

        # What touches it: a word or an id ("INV2018", "A4"), a fraction, a unit. Money-looking
        # numbers (two decimals, "12,-") survive a missing space ("TOTAL12.50", "9.00SR").
        money_look = len(frac) == 2 or dash
        if not money_look:
            if currency is None and _glued(s[start - 1] if start > 0 else " "):
                continue
            if currency is None and _glued(after) and not (after in "xX" and not s[right + 1:right + 2].isalpha()):
                continue
            if after in "/#" or before in "#":
                continue
        if before == "/" and not cur_before:
            continue
        if not frac and not dash:
            if currency is None and not integers:
                continue
            if m.group("pln") is not None and (len(int_digits) > 9 or (len(int_digits) > 1 and int_digits[0] == "0")):
                continue
            if currency is None and _ID_MARK_BEFORE.search(s, max(0, left - 4), left):
                continue
        if len(int_digits.lstrip("0")) > 12:
            continue

        if dash:
            frac = "00"
        number = (int_digits.lstrip("0") or "0") + ("." + frac if frac else "")
        out.append(AmountMatch(left, right, ("-" if negative else "") + number, currency, text[left:right],
                               len(frac)))
        floor = right
        pos = max(pos, right)
    return out


def _space_grouping_kept(m: re.Match, s: str, text: str, floor: int) -> bool:
    """Whether a number with spaces as thousands separators (``1 234,56``) is read as one number.

    A decimal comma (``1 234,56``, the convention that groups with spaces), a currency before it
    (``RM 1 234.56``: a currency is not printed before a quantity) or after an integer
    (``1 234 €``), and a narrow or no-break space keep the grouping; otherwise (``2 100.00``) it is
    two numbers, a quantity and a price.
    """
    a = m.start("spc")
    if any(text[a + i] in _NARROW_SPACES for i, ch in enumerate(m.group("spc")) if ch == " "):
        return True
    mark = m.group("dm") or m.group("dm2") or m.group("dm3") or (m.group("dash") or "?")[0]
    if mark == ",":
        return True
    at = m.start()
    while at > floor and s[at - 1] in " -+(":
        at -= 1
    cm = _CUR_BEFORE.search(s, max(floor, at - 8), at)
    if cm is not None and _currency_of(cm.group()) is not None:
        return True
    if mark != "?":
        return False
    am = _CUR_AFTER.match(s, m.end())
    return am is not None and _currency_of(am.group().strip()) is not None


def _suffix_currency(s: str, after: int) -> bool:
    """Whether a currency printed after a number belongs to it: not when the next number follows it
    and has no currency after itself (``12.50 RM 3.00``: RM is 3.00's), yes in ``100 € 200 €``."""
    nm = _NUMBER_NEXT.match(s, after)
    if nm is None:
        return True
    num = _NUM_NO_SPACE.match(s, nm.end() - 1)
    if num is None:
        return True
    am = _CUR_AFTER.match(s, num.end())
    return am is not None and _currency_of(am.group().strip()) is not None


def _amount_context(s: str, start: int, end: int, floor: int) -> tuple[int, int, bool, str | None, bool] | None:
    """What is printed around a number: ``(left, right, negative, currency, currency_before)``, the
    span grown over its sign, currency and parentheses; None when it is a percentage or a hyphen
    makes it part of an id or a range."""
    n = len(s)
    left = start
    sign = ""
    if left > floor and s[left - 1] in "-+":
        sign = s[left - 1]
        left -= 1
    currency, rank, cur_before = None, 9, False
    at = left
    while at > floor and at > left - 2 and s[at - 1] == " ":
        at -= 1
    cm = _CUR_BEFORE.search(s, max(floor, at - 8), at)
    if cm is not None:
        hit = _currency_of(cm.group())
        if hit is not None:
            (currency, rank), cur_before = hit, True
            left = cm.start()
            if not sign and left > floor and s[left - 1] in "-+":
                sign = s[left - 1]
                left -= 1
    if sign and not cur_before:
        before = s[left - 1] if left > 0 else " "
        if before.isalnum() or before in "/.":
            return None  # a hyphen in an id or a range (INV-2018, 10-20), no minus sign
    if _PERCENT_AFTER.match(s, end):
        return None
    right = end
    if rank == 2 or currency is None:
        am = _CUR_AFTER.match(s, end)
        if am is not None:
            hit = _currency_of(am.group().strip())
            if hit is not None and hit[1] < rank and _suffix_currency(s, am.end()):
                currency, right = hit[0], am.end()
    if right == end and end < n and s[end] == "-" and not sign:
        if end + 1 < n and (s[end + 1].isalnum() or s[end + 1] in ".,"):
            return None  # 2018-001, 10-20
        sign, right = "-", end + 1  # 12.50- (receipts print discounts so)
    negative = sign == "-"
    p = left
    if p > floor and s[p - 1] == " ":
        p -= 1
    if p > floor and s[p - 1] == "(":
        close = _CLOSE.match(s, right)
        if close is not None:
            negative, left, right = True, p - 1, close.end()
    return left, right, negative, currency, cur_before


_PERCENT = re.compile(r"(?<![0-9.,])([0-9]{1,3}(?:[.,][0-9]{1,3})?) ?%")


def find_percentages(text: str) -> list[PercentMatch]:
    """Percentages in a line (``6%``, ``6.00 %``, ``19,5%``), left to right.

    Args:
        text: one line of text.

    Returns:
        The percentages, value as a decimal string with ``.`` as the decimal mark (``"6.00"``).
    """
    if "%" not in text and "\uff05" not in text:
        return []
    s = _shadow(text)
    out = []
    for m in _PERCENT.finditer(s):
        value = _strip_zeros(m.group(1).replace(",", "."))
        out.append(PercentMatch(m.start(), m.end(), value, text[m.start():m.end()]))
    return out


def _strip_zeros(number: str) -> str:
    head, _, tail = number.partition(".")
    head = head.lstrip("0") or "0"
    return head + ("." + tail if tail else "")


# -- dates ----------------------------------------------------------------------------------------

_MONTH_NAMES = {
    1: "january jan januar janner jaenner janvier janv enero ene gennaio gen januari janeiro",
    2: "february feb febr februar fevrier fevr fev febrero febbraio februari fevereiro",
    3: "march mar marz maerz mars marzo maart mrt marco mac",
    4: "april apr avril avr abril abr aprile",
    5: "may mai mayo maggio mag mei maio",
    6: "june jun juni juin junio giugno giu junho",
    7: "july jul juli juillet juil julio luglio lug julho julai",
    8: "august aug aout agosto ago augustus ogos ogo",
    9: "september sep sept septembre septiembre setiembre settembre set setembro",
    10: "october oct oktober octobre octubre ottobre ott okt outubro out",
    11: "november nov novembre noviembre novembro",
    12: "december dec dezember dez decembre diciembre dic dicembre dezembro disember dis",
}
_MONTHS = {name: number for number, names in _MONTH_NAMES.items() for name in names.split()}
# Month names that are also common words: they need a four-digit year ("1 set 10" is no date).
_RISKY_MONTHS = frozenset(["may", "mar", "set", "out", "ago", "dis", "gen", "mag", "mac", "ene"])
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_NUM_DATE = re.compile(r"""
    (?<![0-9])(?<![0-9][.,/-])
    (?P<a>[0-9]{1,4})(?P<sep>\ ?[./]\ ?|-)(?P<b>[0-9]{1,2})(?P=sep)(?P<c>[0-9]{1,4})
    (?![0-9])(?![./-][0-9])(?!,[0-9])
""", re.VERBOSE)
_COMPACT_DATE = re.compile(r"""
    (?<![\w./-])(?P<y>19[0-9]{2}|20[0-9]{2}|2100)(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12][0-9]|3[01])
    (?![\w/-])(?![.,][0-9])
""", re.VERBOSE)
_YEAR = r"(?P<y>'?[0-9]{4}|'?[0-9]{2})(?![0-9])(?![.,:][0-9])"
_W_DMY = re.compile(rf"""
    (?<![0-9])(?<![0-9][.,])(?P<d>[0-9]{{1,2}})(?:\ ?(?i:st|nd|rd|th|er|re|e)(?!{_WL}))?[°º]?\.?
    [\ \-/.,]{{0,2}}(?:(?i:de|of)\ +)?
    (?P<m>{_WL}{{3,10}})(?!{_WL})\.?
    [\ \-/.,]{{0,3}}(?:(?i:de|del)\ +)?
    {_YEAR}
""", re.VERBOSE)
_W_MDY = re.compile(rf"""
    (?<!{_WL})(?P<m>{_WL}{{3,10}})(?!{_WL})\.?[\ \-/.]{{0,2}}
    (?P<d>[0-9]{{1,2}})(?![0-9])(?:(?i:st|nd|rd|th))?(?!{_WL})
    [\ ,.\-/]{{0,3}}
    {_YEAR}
""", re.VERBOSE)
_W_YMD = re.compile(rf"""
    (?<![0-9])(?P<y>[0-9]{{4}})[\ \-/.]{{1,2}}(?P<m>{_WL}{{3,10}})(?!{_WL})\.?[\ \-/.]{{1,2}}
    (?P<d>[0-9]{{1,2}})(?![0-9])
""", re.VERBOSE)
_CJK_DATE = re.compile(r"(?P<y>[0-9]{4}) ?[年년] ?(?P<m>[0-9]{1,2}) ?[月월] ?(?P<d>[0-9]{1,2}) ?[日일]?")
_HAS_LETTERS = re.compile(rf"{_WL}{{3}}")
# Unit and house numbers look like dates ("No. 2-3-15, Jalan ..."): not after these words.
_ADDRESS_BEFORE = re.compile(r"(?i:\b(?:no|lot|unit|blk|block|level|lvl|suite|apt|jalan|jln)\b\.?|#) ?$")


def _valid(y: int, m: int, d: int) -> bool:
    if not (1900 <= y <= 2100 and 1 <= m <= 12 and 1 <= d <= _DAYS_IN_MONTH[m]):
        return False
    return not (m == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))


def _year(text: str) -> int:
    text = text.lstrip("'")
    y = int(text)
    if len(text) == 2:
        y += 2000 if y < 70 else 1900
    return y


def _iso(y: int, m: int, d: int) -> str | None:
    return f"{y:04d}-{m:02d}-{d:02d}" if _valid(y, m, d) else None


def _numeric_date(m: re.Match, s: str, text: str, order: str | None) -> DateMatch | None:
    a, b, c = m.group("a"), m.group("b"), m.group("c")
    start, end = m.span()
    raw = text[start:end]
    if len(a) == 4:
        if len(c) > 2:
            return None
        y, mo, d = int(a), int(b), int(c)
        return DateMatch(start, end, _iso(y, mo, d), raw, False, "YMD" if _valid(y, mo, d) else None)
    if len(a) == 3 or len(c) not in (2, 4):
        return None
    if _ADDRESS_BEFORE.search(s, max(0, start - 8), start):
        return None
    if order == "YMD" and len(a) == 2 and len(c) == 2:
        y, mo, d = _year(a), int(b), int(c)
        return DateMatch(start, end, _iso(y, mo, d), raw, False, "YMD" if _valid(y, mo, d) else None)
    y = _year(c)
    p, q = int(a), int(b)
    dmy, mdy = _valid(y, q, p), _valid(y, p, q)
    if dmy and mdy:
        if p == q:  # 05/05/2020: either way; no evidence of an order
            return DateMatch(start, end, _iso(y, q, p), raw, False, order if order in ("DMY", "MDY") else None)
        if order == "MDY":
            return DateMatch(start, end, _iso(y, p, q), raw, False, "MDY")
        if order == "DMY":
            return DateMatch(start, end, _iso(y, q, p), raw, False, "DMY")
        return DateMatch(start, end, _iso(y, q, p), raw, True, "DMY")
    if dmy:
        return DateMatch(start, end, _iso(y, q, p), raw, False, "DMY")
    if mdy:
        return DateMatch(start, end, _iso(y, p, q), raw, False, "MDY")
    # No valid reading: say which order the shape implies, if any.
    shape = "DMY" if p > 12 >= q else "MDY" if q > 12 >= p else (order if order in ("DMY", "MDY") else None)
    if shape is None and p <= 12 and q <= 12:
        shape = "DMY"
    return DateMatch(start, end, None, raw, False, shape)


def _written_date(m: re.Match, text: str) -> DateMatch | None:
    name = fold(m.group("m"))
    month = _MONTHS.get(name)
    if month is None:
        return None
    year = m.group("y")
    if len(year) == 2 and name in _RISKY_MONTHS:
        return None
    y = _year(year)
    start, end = m.span()
    return DateMatch(start, end, _iso(y, month, int(m.group("d"))), text[start:end], False, None)


def find_dates(text: str, order: str | None = None) -> list[DateMatch]:
    """Every date in a line of text, left to right.

    Numeric dates: ``25/12/2018``, ``12/25/2018``, ``25.12.18``, ``25. 12. 2018``, ``25-12-2018``,
    ``2018-12-25``, ``2018/12/25``, and ``20181225`` when it stands alone and is a valid date.
    Written dates, month names and abbreviations in English, German, French, Spanish, Italian,
    Dutch, Portuguese and Malay, any case, accents optional: ``Dec 25, 2018``, ``25 Dec 2018``,
    ``25-Dec-18``, ``December 25th, 2018``, ``02 Juillet 2015``, ``3. März 2024``,
    ``15 de enero de 2024``, ``12 Mei 2019``; and ``2018年12月25日``.

    Two-digit years: 00-69 are 20xx, 70-99 19xx. A numeric date whose first two parts are both at
    most 12 is read in the ``order`` given; without one it is ``ambiguous`` and read day-first.
    A date only one order makes valid (``12/25/2018``) is not ambiguous. Text shaped like a date
    that is none (``31/02/2020``, ``45/13/2020``) comes back with ``iso=None``.

    Args:
        text: one line of text.
        order: ``"DMY"``, ``"MDY"`` or ``"YMD"``: how the document writes numeric dates, if known.
            ``YMD`` applies to two-digit-year dates like ``18/12/25``.

    Returns:
        The dates, in the order they appear, not overlapping.

    Raises:
        ValueError: an ``order`` that is not one of :data:`DATE_ORDERS`.
    """
    if order is not None and order not in DATE_ORDERS:
        raise ValueError(f"order must be None or one of {DATE_ORDERS}, not {order!r}")
    if not text or not _DIGIT.search(text):
        return []
    s = _shadow(text)
    found: list[DateMatch] = []
    for m in _NUM_DATE.finditer(s):
        d = _numeric_date(m, s, text, order)
        if d is not None:
            found.append(d)
    for m in _COMPACT_DATE.finditer(s):
        y, mo, d = int(m.group("y")), int(m.group("m")), int(m.group("d"))
        if _valid(y, mo, d):
            found.append(DateMatch(m.start(), m.end(), _iso(y, mo, d), text[m.start():m.end()], False, "YMD"))
    if _HAS_LETTERS.search(s):
        for pattern in (_W_DMY, _W_MDY, _W_YMD):
            pos = 0
            while (m := pattern.search(s, pos)) is not None:
                d = _written_date(m, text)
                if d is None:
                    pos = m.start() + 1  # a failed candidate may hide a real date ("2 pcs 25 Dec 2018")
                    continue
                found.append(d)
                pos = m.end()
    if "年" in s or "년" in s:
        for m in _CJK_DATE.finditer(s):
            y, mo, d = int(m.group("y")), int(m.group("m")), int(m.group("d"))
            found.append(DateMatch(m.start(), m.end(), _iso(y, mo, d), text[m.start():m.end()], False, None))
    if len(found) < 2:
        return found
    found.sort(key=lambda d: (d.start, d.start - d.end))
    out: list[DateMatch] = []
    for d in found:
        if out and d.start < out[-1].end:
            continue
        out.append(d)
    return out


# -- labels ---------------------------------------------------------------------------------------


def _numbered(nouns: str, suffixes: str = "no|nr|number|num|#|n°|id") -> tuple[str, ...]:
    """``invoice no``, ``invoice #``, ... for each noun and suffix."""
    return tuple(f"{noun} {suffix}" for noun in nouns.split("|") for suffix in suffixes.split("|"))


#: Label words and phrases of each field, lowercase and accent-folded (:func:`fold`). Besides the
#: fields of :data:`~pipeline.types.FIELDS` and the table headers (``quantity``, ``unit_price``,
#: ``amount``, ``description``), some keys exist so that their words are *not* taken for another
#: field: ``document_type`` (``Tax invoice`` is no tax), ``other_date`` (``Order date`` is no
#: document date), ``customer_number`` (``Customer No`` is no customer name), ``discount``,
#: ``rounding`` and ``payment`` (``Cash``, ``Change``: a receipt's largest amounts that are no total).
#: Punctuation in a label is optional when matching (``p.iva``, ``ust-idnr``, ``n°``).
LABELS: dict[str, tuple[str, ...]] = {
    "total": (
        "total", "grand total", "total due", "amount due", "balance due", "total amount", "total amount due",
        "total amount payable", "amount payable", "total payable", "net payable", "invoice total",
        "total invoice", "invoice amount", "total to pay", "amount to pay", "total incl vat", "total inc vat",
        "total including vat", "total incl tax", "total including tax", "total incl gst", "total inc gst",
        "total including gst", "total inclusive gst", "total gst inclusive", "total inclusive of gst",
        "total gst incl", "total sales inclusive gst", "total sales inclusive of gst", "total sales incl gst",
        "total (rm)", "total rm", "total rounded", "rounded total", "net total", "nett total", "total gross",
        "gross total", "gross amount", "please pay", "amount due now", "total value", "total amt", "total amt due",
        "total amt payable", "amt due", "amt payable", "total incl", "total inclusive", "total amount (rm)",
        # de
        "gesamt", "gesamtbetrag", "gesamtsumme", "endbetrag", "endsumme", "rechnungsbetrag", "rechnungssumme",
        "summe", "bruttobetrag", "brutto", "gesamt brutto", "summe brutto", "gesamtbetrag brutto", "zu zahlen",
        "zahlbetrag", "zu zahlender betrag", "total inkl mwst", "gesamt inkl mwst", "summe inkl mwst",
        "gesamtbetrag inkl mwst", "rechnungsbetrag brutto",
        # fr
        "montant ttc", "total ttc", "net a payer", "montant total", "montant total ttc", "total a payer",
        "montant a payer", "montant du", "total general", "somme a payer", "total facture", "reste a payer",
        # es
        "importe total", "total a pagar", "total factura", "importe a pagar", "total con iva",
        "total iva incluido", "importe total factura",
        # it
        "totale", "totale fattura", "totale documento", "totale da pagare", "importo totale", "totale generale",
        "netto a pagare", "totale complessivo", "totale ivato",
        # nl
        "totaal", "totaalbedrag", "totaal te betalen", "te betalen", "totaal incl btw", "totaal inclusief btw",
        "te voldoen", "totaal bedrag",
        # pt
        "valor total", "total geral", "total da fatura", "valor a pagar", "total do documento",
        # ms
        "jumlah", "jumlah besar", "jumlah keseluruhan", "jumlah perlu dibayar", "jumlah bayaran",
        "jumlah bersih", "jumlah termasuk cukai", "jumlah (rm)", "jumlah rm",
    ),
    "subtotal": (
        "subtotal", "sub total", "sub-total", "net amount", "nett amount", "total excl", "total excl vat",
        "total ex vat", "total excluding vat", "total exclusive of vat", "total excl tax", "total excluding tax",
        "total before tax", "total pre tax", "total excl gst", "total excluding gst", "total ex gst",
        "total before gst", "total sales excluding gst", "total sales excl gst", "total sales exclusive of gst",
        "total sales exclusive gst", "total net", "total nett", "amount before tax", "amount excl vat",
        "amount before gst", "taxable amount", "net value", "goods total",
        # de
        "nettobetrag", "netto", "nettosumme", "summe netto", "gesamt netto", "zwischensumme",
        "gesamtbetrag netto", "rechnungsbetrag netto", "netto betrag", "total exkl mwst", "gesamt exkl mwst",
        "summe ohne mwst", "gesamt ohne mwst", "warenwert",
        # fr
        "montant ht", "total ht", "total hors taxes", "total hors taxe", "montant hors taxes", "montant hors taxe",
        "sous-total", "sous total", "base ht", "net ht", "total net ht", "montant net ht",
        # es
        "base imponible", "importe neto", "subtotal sin iva", "total sin iva", "neto", "importe base",
        # it
        "imponibile", "totale imponibile", "totale netto", "imponibile iva", "subtotale", "totale senza iva",
        # nl
        "subtotaal", "totaal excl btw", "totaal exclusief btw", "netto bedrag", "nettobedrag",
        "bedrag excl btw",
        # pt
        "valor liquido", "total sem iva", "base tributavel", "valor sem iva",
        # ms
        "jumlah kecil", "subjumlah", "jumlah sebelum cukai", "jumlah tidak termasuk cukai",
    ),
    "tax": (
        "tax", "taxes", "vat", "gst", "hst", "pst", "qst", "sst", "sales tax", "service tax", "tax amount",
        "vat amount", "gst amount", "sst amount", "total tax", "total vat", "total gst", "total sst",
        "total taxes", "tax total", "vat total", "gst total", "tax rate", "vat rate", "gst rate", "plus vat",
        "add vat", "gst payable", "vat payable", "tax payable",
        # de
        "mwst", "ust", "umsatzsteuer", "mehrwertsteuer", "steuer", "steuerbetrag", "mwst betrag",
        "zzgl mwst", "zzgl ust", "inkl mwst", "inkl ust", "zuzuglich mwst", "zuzuglich umsatzsteuer",
        "enthaltene mwst", "enthaltene umsatzsteuer", "mwst satz", "summe mwst", "gesamt mwst",
        # fr
        "tva", "montant tva", "total tva", "dont tva", "taux tva",
        # es
        "iva", "cuota iva", "importe iva", "impuesto", "impuestos", "total iva",
        # it
        "imposta", "totale iva", "importo iva", "aliquota iva",
        # nl
        "btw", "btw bedrag", "totaal btw", "bedrag btw",
        # pt
        "imposto", "valor iva", "valor do iva",
        # ms / id
        "cukai", "cukai jualan", "cukai perkhidmatan", "jumlah cukai", "ppn",
    ),
    "document_number": (
        *_numbered("invoice|inv|tax invoice|bill|receipt|rcpt|document|doc|order|purchase order|po|contract|"
                   "credit note|quotation|quote|transaction|trans|txn|check|chk|reference|ref|statement|ticket"),
        "invoice reference", "invoice ref", "bill ref", "serial no",
        # ms
        "no invois", "no resit", "no bil", "no dokumen", "nombor invois", "invois no", "resit no", "bil no",
        "no rujukan",
        # de
        "rechnungsnummer", "rechnungsnr", "rechnung nr", "rechnungs nr", "re nr", "rg nr", "beleg nr",
        "belegnummer", "belegnr", "auftragsnummer", "auftrags nr", "auftragsnr", "bestellnummer", "bestell nr",
        "bestellnr", "vertragsnummer", "vertrags nr", "quittung nr", "gutschrift nr", "rechnung nummer",
        "gutschriftsnummer", "bon nr",
        # fr
        "facture n°", "facture no", "facture n", "facture numero", "n° de facture", "n° facture",
        "numero de facture", "numero facture", "n° de commande", "numero de commande", "bon de commande n°",
        "n° de contrat", "avoir n°", "ticket n°", "recu n°", "n° de piece", "reference facture",
        # es
        "factura n°", "factura no", "factura num", "factura numero", "numero de factura", "n° de factura",
        "num factura", "num de factura", "n° factura", "numero factura", "pedido n°", "numero de pedido",
        "n° de pedido", "folio",
        # it
        "fattura n", "fattura n°", "fattura nr", "fattura no", "fattura numero", "numero fattura",
        "n fattura", "n° fattura", "numero documento", "documento n", "documento n°", "ordine n",
        "numero ordine", "scontrino n",
        # nl
        "factuurnummer", "factuurnr", "factuur nr", "factuur nummer", "factuur no", "bestelnummer",
        "ordernummer", "contractnummer", "bonnummer",
        # pt
        "fatura n°", "fatura no", "fatura numero", "numero da fatura", "n° da fatura", "nota fiscal n°",
    ),
    "document_date": (
        "date", "invoice date", "date of invoice", "dated", "date of issue", "issue date", "issued", "issued on",
        "bill date", "billing date", "receipt date", "document date", "doc date", "tax date", "tax point",
        "tax point date", "invoice issue date", "date issued", "transaction date", "trans date", "txn date",
        # de
        "datum", "rechnungsdatum", "belegdatum", "ausstellungsdatum", "datum der rechnung", "rechnungs datum",
        # fr
        "date de facture", "date facture", "date de facturation", "date d'emission", "date emission",
        "emise le", "fait le",
        # es
        "fecha", "fecha de factura", "fecha factura", "fecha de emision", "fecha emision",
        "fecha de expedicion", "fecha de la factura",
        # it
        "data", "data fattura", "data documento", "data emissione", "data di emissione", "data della fattura",
        "data doc",
        # nl
        "factuurdatum", "datum factuur", "datum van uitgifte",
        # pt
        "data da fatura", "data de emissao", "data emissao",
        # ms
        "tarikh", "tarikh invois", "tarikh resit", "tarikh bil", "tarikh dikeluarkan",
    ),
    "due_date": (
        "due date", "due", "date due", "payment due", "payment due date", "due by", "due on", "pay by",
        "payable by", "payment deadline", "payment terms due", "please pay by", "due date for payment",
        # de
        "fallig", "fallig am", "faellig", "faellig am", "falligkeit", "falligkeitsdatum", "faelligkeitsdatum",
        "zahlbar bis", "zahlbar bis zum", "zahlungsziel", "zahlungsfrist", "zahlbar am",
        # fr
        "echeance", "date d'echeance", "date echeance", "date limite de paiement", "a payer avant le",
        "payable avant le", "date limite de reglement", "a regler avant le",
        # es
        "vencimiento", "fecha de vencimiento", "fecha vencimiento", "fecha limite de pago", "fecha limite",
        "pagar antes de",
        # it
        "scadenza", "data scadenza", "data di scadenza", "scadenza pagamento", "da pagare entro",
        # nl
        "vervaldatum", "vervaldag", "uiterste betaaldatum", "te betalen voor", "betalen voor",
        "betaaldatum",
        # pt
        "vencimento", "data de vencimento", "data vencimento", "data limite de pagamento",
        # ms
        "tarikh akhir", "tarikh akhir bayaran", "tarikh matang", "tarikh tamat", "bayar sebelum",
    ),
    "period": (
        "period", "billing period", "service period", "invoice period", "statement period", "invoicing period",
        "period of service", "supply period", "period covered", "billing cycle",
        "leistungszeitraum", "abrechnungszeitraum", "zeitraum", "abrechnungsperiode",
        "periode", "periode de facturation", "periode de service", "periode de consommation",
        "periodo", "periodo de facturacion", "periodo facturado", "periodo di fatturazione",
        "periodo di riferimento", "periodo di competenza", "factuurperiode", "facturatieperiode",
        "periodo de faturacao", "periodo de referencia", "tempoh", "tempoh bil", "tempoh bil semasa",
    ),
    "customer_name": (
        "bill to", "billed to", "billing to", "invoice to", "invoiced to", "customer", "customer name",
        "sold to", "ship to", "shipped to", "deliver to", "delivery to", "client", "client name", "buyer",
        "purchaser", "attention", "attn", "bill to party", "customer details",
        # de
        "rechnungsempfanger", "rechnungsempfaenger", "empfanger", "empfaenger", "kunde", "kundenname",
        "rechnungsadresse", "lieferadresse", "auftraggeber",
        # fr
        "facture a", "facturer a", "facture au nom de", "adresse de facturation", "destinataire",
        "nom du client", "livre a", "livrer a",
        # es
        "cliente", "facturar a", "facturado a", "nombre del cliente", "datos del cliente", "enviar a",
        # it
        "intestatario", "destinatario", "spettabile", "spett le",
        # nl
        "klant", "klantnaam", "factuuradres", "afnemer", "geadresseerde",
        # pt
        "faturado a", "nome do cliente", "faturar a",
        # ms
        "pelanggan", "nama pelanggan", "kepada", "dibil kepada", "nama",
    ),
    # who is paid: a seller's label, or the holder of the account to pay into
    "supplier_name": (
        "sold by", "seller", "vendor", "supplier", "merchant", "merchant name", "account holder", "account name",
        "beneficiary", "beneficiary name", "payee", "pay to", "payable to", "make cheques payable to",
        "make checks payable to",
        # de
        "verkaufer", "verkaeufer", "lieferant", "kontoinhaber", "zahlungsempfanger", "zahlungsempfaenger",
        # fr
        "vendu par", "vendeur", "fournisseur", "titulaire du compte", "titulaire", "beneficiaire",
        # es
        "vendido por", "vendedor", "proveedor", "titular de la cuenta", "titular", "beneficiario",
        # it
        "venduto da", "venditore", "fornitore", "titolare del conto", "beneficiario",
        # nl
        "verkocht door", "verkoper", "leverancier", "rekeninghouder", "ten name van", "t n v", "begunstigde",
        # pt
        "vendido por", "fornecedor", "titular da conta",
        # ms
        "penjual", "pembekal", "nama akaun",
    ),
    "customer_number": (
        *_numbered("customer|client|account|acct|member", "no|nr|number|num|#|id|code"),
        "kundennummer", "kunden nr", "kundennr", "kunden-nr", "n° client", "numero client", "numero de client",
        "code client", "ref client", "numero de cliente", "n° de cliente", "codigo cliente", "codigo de cliente",
        "codice cliente", "klantnummer", "klantnr", "debiteurnummer", "no akaun", "no pelanggan",
        "numero do cliente",
    ),
    "supplier_tax_id": (
        *_numbered("vat|vat reg|vat registration|gst|gst reg|gst registration|sst|sst reg|sst registration|tax|"
                   "tax reg|tax registration|tin|company|company reg|company registration|co reg|co|reg|"
                   "registration|business reg|business registration|roc|ssm|brn|abn|acn|uen|gstin|ein"),
        "vat id", "gst id", "tax id", "tin", "ein", "abn", "acn", "uen", "gstin", "npwp", "brn", "roc",
        "tax identification number", "vat identification number", "company registration", "gst reg",
        "sst reg", "vat reg",
        # de
        "ust-idnr", "ust-id", "ust-id-nr", "ustid", "ust-nr", "umsatzsteuer-id", "umsatzsteuer-idnr",
        "umsatzsteuer-identifikationsnummer", "umsatzsteuer-nr", "steuernummer", "steuer-nr", "st-nr",
        "steuer nr", "handelsregister", "hrb", "hra", "mwst-nr", "mwst nr", "uid", "uid-nr",
        "registernummer", "amtsgericht",
        # fr
        "n° tva", "n° de tva", "numero de tva", "numero tva", "tva intracommunautaire",
        "n° tva intracommunautaire", "tva intracom", "n° tva intracom", "n° intracommunautaire", "siret",
        "siren", "rcs", "n° siret", "n° siren", "code ape", "tva intra",
        # es
        "cif", "nif", "nif/cif", "n° cif", "n° nif", "nif-iva", "nie", "rfc", "cuit", "rut",
        # it
        "p iva", "partita iva", "codice fiscale", "c f", "p iva/c f", "c f/p iva",
        # nl
        "btw-nummer", "btw nr", "btw-nr", "btw nummer", "btw id", "btw-id", "kvk", "kvk-nummer", "kvk nr",
        "kvk nummer", "btw-identificatienummer", "ondernemingsnummer",
        # pt
        "cnpj", "nipc", "contribuinte", "n° contribuinte",
    ),
    "quantity": (
        "qty", "quantity", "qnty", "qty ordered", "qty shipped", "units", "no of units", "total qty",
        "total quantity", "total items", "total item", "total pcs", "total units", "item count", "no of items",
        "jumlah kuantiti", "anzahl artikel",
        "menge", "anzahl", "anz", "stuck", "qte", "quantite", "cantidad", "cant", "quantita", "qta",
        "aantal", "quantidade", "qtd", "kuantiti", "kuantiti unit",
    ),
    "unit_price": (
        "unit price", "price", "unit cost", "rate", "price per unit", "u price", "unit amount", "price each",
        "unit rate", "each",
        "einzelpreis", "e-preis", "ep", "preis", "stuckpreis", "einheitspreis", "preis/einheit",
        "prix unitaire", "prix unit", "pu", "prix", "prix ht", "pu ht",
        "precio unitario", "precio unit", "precio", "prezzo unitario", "prezzo", "prezzo unit",
        "stukprijs", "prijs", "eenheidsprijs", "prijs per stuk",
        "preco unitario", "preco", "valor unitario",
        "harga seunit", "harga unit", "harga", "harga per unit",
    ),
    "amount": (
        "amount", "amt", "line total", "ext price", "extended price", "extension", "total price", "net price",
        "line amount", "amount (rm)", "amount rm",
        "betrag", "gesamtpreis", "preis gesamt", "montant", "importe", "importo", "bedrag", "valor", "amaun",
        "harga jumlah", "jumlah harga",
    ),
    "description": (
        "description", "desc", "item", "items", "item description", "product", "products", "service",
        "services", "article", "details", "particulars", "product description", "item name",
        "beschreibung", "bezeichnung", "artikel", "artikelbezeichnung", "leistung", "leistungsbeschreibung",
        "designation", "libelle", "descripcion", "concepto", "articulo", "descrizione", "articolo",
        "omschrijving", "produk", "perkara", "keterangan", "butiran", "descricao", "produto", "servico",
    ),
    "document_type": (
        "invoice", "tax invoice", "commercial invoice", "proforma invoice", "pro forma invoice", "receipt",
        "official receipt", "cash receipt", "sales receipt", "credit note", "debit note", "bill", "cash bill",
        "cash sale", "simplified tax invoice", "statement",
        "rechnung", "quittung", "gutschrift", "kassenbon", "facture", "avoir", "recu", "ticket de caisse",
        "factura", "recibo", "factura simplificada", "fattura", "ricevuta", "scontrino", "factuur",
        "kwitantie", "invois", "invois cukai", "resit", "resit rasmi", "fatura", "nota fiscal", "fatura-recibo",
    ),
    "other_date": (
        "order date", "delivery date", "ship date", "shipping date", "date shipped", "date of supply",
        "supply date", "service date", "date of service", "print date", "date printed", "payment date",
        "date paid", "date of delivery", "expiry date", "valid until",
        "lieferdatum", "leistungsdatum", "bestelldatum", "auftragsdatum", "date de livraison",
        "date de commande", "fecha de entrega", "fecha de pedido", "data di consegna", "data ordine",
        "leverdatum", "besteldatum", "tarikh penghantaran", "data de entrega",
    ),
    "discount": (
        "discount", "disc", "rebate", "rabatt", "nachlass", "skonto", "remise", "rabais", "descuento", "dto",
        "sconto", "korting", "diskaun", "desconto", "promo", "voucher", "total discount", "total savings",
        "you saved",
    ),
    "rounding": (
        "rounding", "rounding adj", "rounding adjustment", "round off", "rounding off", "rounding adjust",
        "rundung", "arrondi", "redondeo", "arrotondamento", "afronding", "pembundaran", "arredondamento",
    ),
    "payment": (
        "cash", "change", "change due", "tendered", "cash tendered", "amount tendered", "paid", "amount paid",
        "card", "credit card", "debit card", "visa", "mastercard", "total tender", "total tendered", "ruckgeld",
        "gegeben", "bar",
        "especes", "rendu", "monnaie rendue", "efectivo", "cambio", "contanti", "resto", "contant",
        "wisselgeld", "tunai", "baki", "troco", "dinheiro",
    ),
}

_TOKEN = re.compile(r"[^\W_]+|[#°]")
_OCR_IN_WORD = re.compile(r"(?<=[^\W\d_])[01](?=[^\W\d_])")
_OCR_AT_END = re.compile(r"(?<=[^\W\d_]{3})[01]$")
_LETTERS_OR_DIGITS = re.compile(r"[^\W\d_]+|[0-9]+")
_LABEL_TAIL = re.compile(r"[ \t]*[)\]]?\.?[ \t]*[:#]?")
_MAX_GAP = 3  # tokens more than this many characters apart are not one label (table columns)
# "n°" is printed n°, nº, no, n., nr: each spelling is listed.
_NUMERO_SPELLINGS = ("n°", "no", "nr", "n")
# After a bare "total": these words make it a subtotal ("Total excl.", "Total HT") or a tax ("Total VAT").
_TOTAL_THEN_SUBTOTAL = frozenset([
    "excl", "excluding", "exclusive", "exkl", "ex", "before", "pre", "ht", "hors", "net", "nett", "netto",
    "sans", "sin", "senza", "zonder", "sebelum", "tidak", "ohne", "sem"
])
_TOTAL_THEN_TAX = frozenset([
    "tax", "taxes", "vat", "gst", "sst", "hst", "mwst", "ust", "tva", "iva", "btw", "cukai", "ppn"
])
_BARE_TOTALS = frozenset(["total", "totale", "totaal", "gesamt", "summe", "jumlah"])


def _ocr_letter(m: re.Match) -> str:
    return "o" if m.group() == "0" else "l"


@functools.cache
def _label_words() -> frozenset[str]:
    """Every word of every label, folded."""
    return frozenset(w for phrases in LABELS.values() for phrase in phrases for w in _TOKEN.findall(fold(phrase)))


def _label_tokens(folded: str) -> list[tuple[int, int, str, bool]]:
    """The words of folded text as ``(start, end, word, glued)``. A word that mixes letters and
    digits has its digits between letters read as letters (OCR's ``T0TAL``) and is then cut where
    letters and digits meet (a missing space: ``TOTAL12.50``); ``glued`` marks letters cut off a
    number that follows them (``RM`` of ``RM9.00``: a currency, no part of a label before it)."""
    out = []
    for m in _TOKEN.finditer(folded):
        tok = m.group()
        if tok.isalpha() or tok.isdigit() or len(tok) == 1:
            out.append((m.start(), m.end(), tok, False))
            continue
        tok = _OCR_IN_WORD.sub(_ocr_letter, tok)
        at_end = _OCR_AT_END.sub(_ocr_letter, tok)
        if at_end != tok and at_end in _label_words():
            tok = at_end  # a label's last letter read as a digit ("Tota1")
        for p in _LETTERS_OR_DIGITS.finditer(tok):
            glued = p.end() < len(tok) and tok[p.end()].isdigit()
            out.append((m.start() + p.start(), m.start() + p.end(), p.group(), glued))
    return out


def _label_key(phrase: str) -> str:
    return "".join(t[2] for t in _label_tokens(fold(phrase)))


def _build_label_index() -> tuple[dict[str, tuple[str, str]], int]:
    index: dict[str, tuple[str, str]] = {}
    most = 1
    for name, phrases in LABELS.items():
        for phrase in phrases:
            spellings = [phrase]
            if "n°" in phrase:
                spellings = [phrase.replace("n°", alt) for alt in _NUMERO_SPELLINGS]
            for spelling in spellings:
                key = _label_key(spelling)
                if key and key not in index:
                    index[key] = (name, phrase)
                most = max(most, len(_label_tokens(fold(spelling))))
    return index, most


_LABEL_INDEX, _LABEL_MAX_TOKENS = _build_label_index()
_LABEL_MAX_TOKENS += 2  # words OCR split in two ("To tal")
_LABEL_MAX_KEY = max(len(k) for k in _LABEL_INDEX)


def find_labels(text: str) -> list[LabelMatch]:
    """The field labels in a line of text (:data:`LABELS`), left to right.

    Matching is by whole words, case- and accent-insensitive, with punctuation and spacing inside
    a label optional (``Sub-total``, ``Sub total``, ``Subtotal``; ``USt-IdNr.``, ``UStIdNr``) and
    digits OCR read into a word put back (``T0TAL``). The longest label wins at each place
    (``Total amount due`` over ``Total``), so ``total`` never matches inside ``subtotal``; a bare
    ``Total`` followed by ``excl``/``HT``/``net``... is a ``subtotal``, by ``tax``/``VAT``/``GST``...
    a ``tax``. A trailing ``:``, ``#``, ``.`` or ``)`` is part of the match.

    Args:
        text: one line of text.

    Returns:
        The labels found, not overlapping, in the order they appear.
    """
    if not text:
        return []
    toks = _label_tokens(fold(text))
    out: list[LabelMatch] = []
    n = len(toks)
    i = 0
    while i < n:
        key = ""
        best = None
        for j in range(i, min(n, i + _LABEL_MAX_TOKENS)):
            if j > i and (toks[j][0] - toks[j - 1][1] > _MAX_GAP or toks[j][3]):
                break
            key += toks[j][2]
            if len(key) > _LABEL_MAX_KEY:
                break
            hit = _LABEL_INDEX.get(key)
            if hit is not None:
                best = (j, hit)
        if best is None:
            i += 1
            continue
        j, (name, label) = best
        if name == "total" and label in _BARE_TOTALS and j + 1 < n \
                and toks[j + 1][0] - toks[j][1] <= _MAX_GAP:
            nxt = toks[j + 1][2]
            if nxt in _TOTAL_THEN_SUBTOTAL:
                name, label, j = "subtotal", f"{label} {nxt}", j + 1
            elif nxt in _TOTAL_THEN_TAX:
                name, label, j = "tax", f"{label} {nxt}", j + 1
        start, end = toks[i][0], toks[j][1]
        tail = _LABEL_TAIL.match(text, end)
        if tail is not None:
            end = tail.end()
            while end > toks[j][1] and text[end - 1] in " \t":
                end -= 1
        out.append(LabelMatch(name, start, end, label))
        i = j + 1
    return out


# -- tax ids --------------------------------------------------------------------------------------


def _digits(low: int, high: int | None = None) -> str:
    """``low`` to ``high`` digits, single spaces, dots or dashes allowed between them."""
    high = low if high is None else high
    return rf"[0-9](?:[ .\-]?[0-9]){{{low - 1},{high - 1}}}"


_GB = rf"(?:{_digits(12)}|{_digits(9)}|(?:GD|HA)[0-9]{{3}})"
_VAT_BODIES = {
    "AT": r"U" + _digits(8), "BE": rf"(?:[01][ .]?)?{_digits(9)}", "BG": _digits(9, 10),
    "CY": _digits(8) + "[A-Z]", "CZ": _digits(8, 10), "DE": _digits(9), "DK": _digits(8), "EE": _digits(9),
    "EL": _digits(9), "ES": rf"[0-9A-Z]{_digits(7)}[0-9A-Z]", "FI": _digits(8),
    "FR": rf"[0-9A-HJ-NP-Z]{{2}}[ .]?{_digits(9)}", "GB": _GB, "XI": _GB, "HR": _digits(11), "HU": _digits(8),
    "IE": r"[0-9][0-9A-Z+*][0-9]{5}[A-Z]{1,2}", "IT": _digits(11), "LT": rf"(?:{_digits(12)}|{_digits(9)})",
    "LU": _digits(8), "LV": _digits(11), "MT": _digits(8), "NL": rf"{_digits(9)}[ .]?B[ .]?[0-9]{{2}}",
    "PL": _digits(10), "PT": _digits(9), "RO": _digits(6, 10), "SE": _digits(12), "SI": _digits(8),
    "SK": _digits(10), "NO": rf"{_digits(9)}(?: ?MVA)?",
}
_B = r"(?<![A-Za-z0-9])"
_E = r"(?![A-Za-z0-9])"
_TAX_IDS = re.compile("|".join([
    rf"{_B}(?:{'|'.join(f'{cc}[ -]?{body}' for cc, body in _VAT_BODIES.items())}){_E}",
    rf"{_B}CHE[ -]?[0-9]{{3}}\.?[0-9]{{3}}\.?[0-9]{{3}}{_E}",  # Swiss UID
    rf"{_B}[A-Z]{{2}}[0-9]{{8,12}}{_E}",  # other country-prefixed ids
    rf"{_B}[0-9]{{2}}[A-Z]{{5}}[0-9]{{4}}[A-Z][1-9A-Z]Z[0-9A-Z]{_E}",  # India GSTIN
    rf"{_B}00[0-9]{{10}}{_E}",  # Malaysia GST (12 digits)
    rf"{_B}[A-Z][0-9]{{2}}-[0-9]{{4}}-[0-9]{{8}}{_E}",  # Malaysia SST
    rf"{_B}[0-9]{{2}} [0-9]{{3}} [0-9]{{3}} [0-9]{{3}}{_E}",  # ABN, printed 12 345 678 901
    rf"{_B}(?P<abn>[0-9]{{11}}){_E}",  # ABN, unspaced: checked by its checksum
    rf"{_B}[0-9]{{2}}-[0-9]{{7}}{_E}",  # US EIN
    rf"{_B}[0-9]{{3}} ?[0-9]{{3}} ?[0-9]{{3}} ?[0-9]{{5}}{_E}",  # SIRET
    rf"{_B}[ABCDEFGHJNPQRSUVW]-?[0-9]{{7}}[0-9A-J]{_E}",  # Spain CIF
    rf"{_B}[XYZ]-?[0-9]{{7}}-?[A-Z]{_E}|{_B}[0-9]{{8}}-?[A-Z]{_E}",  # Spain NIE, NIF
    rf"{_B}[0-9]{{2,3}}/[0-9]{{3,4}}/[0-9]{{4,5}}{_E}",  # German Steuernummer
]))
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_ABN_WEIGHTS = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)


def _abn_ok(digits: str) -> bool:
    d = [int(c) for c in digits]
    d[0] -= 1
    return sum(w * x for w, x in zip(_ABN_WEIGHTS, d, strict=True)) % 89 == 0


def find_tax_ids(text: str) -> list[TaxIdMatch]:
    """VAT, GST and company registration numbers in a line of text, left to right.

    EU VAT numbers by their country's format (``DE123456789``, ``DE 123 456 789``,
    ``FR12345678901``, ``GB123456789``, ``NL123456789B01``, ``ATU12345678``), the Swiss UID
    (``CHE-123.456.789 MWST``), any two letters and 8 to 12 digits, India's GSTIN, Malaysia's GST
    (``001234567890``) and SST (``W10-1808-31000001``) numbers, Australian ABNs (``12 345 678 901``,
    or 11 digits that pass the ABN checksum), US EINs (``12-3456789``), French SIRETs, Spanish
    CIF/NIF/NIE, German Steuernummern (``12/345/67890``). IBANs are not taken.

    Args:
        text: one line of text.

    Returns:
        ``(start, end, value)`` tuples (:class:`TaxIdMatch`), the value uppercase with whitespace
        removed.
    """
    if not text or not _DIGIT.search(text):
        return []
    s = text.translate(_SHADOW)
    ibans = [m.span() for m in _IBAN.finditer(s)]
    out: list[TaxIdMatch] = []
    for m in _TAX_IDS.finditer(s):
        start, end = m.span()
        if any(a < end and start < b for a, b in ibans):
            continue
        if m.group("abn") is not None and not _abn_ok(m.group("abn")):
            continue
        out.append(TaxIdMatch(start, end, re.sub(r"\s+", "", text[start:end]).upper()))
    return out
