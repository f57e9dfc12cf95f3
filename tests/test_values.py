"""Value parsers of invoice fields: amounts, currencies, percentages, dates, labels and tax ids,
including OCR noise and what must not be taken for a value."""

from __future__ import annotations

import pytest

from pipeline.stages.values import (
    DATE_ORDERS,
    LABELS,
    AmountMatch,
    TaxIdMatch,
    currency_code,
    find_amounts,
    find_dates,
    find_labels,
    find_percentages,
    find_tax_ids,
    fold,
)

# -- amounts --------------------------------------------------------------------------------------

#: (text, keyword arguments, [(value, currency, raw), ...])
AMOUNTS = [
    # both conventions
    ("Total 1,234.56", {}, [("1234.56", None, "1,234.56")]),
    ("Summe 1.234,56", {}, [("1234.56", None, "1.234,56")]),
    ("Total TTC 1 234,56", {}, [("1234.56", None, "1 234,56")]),
    ("Total 1\u202f234,56 €", {}, [("1234.56", "EUR", "1\u202f234,56 €")]),
    ("Total 1\u00a0234.56", {}, [("1234.56", None, "1\u00a0234.56")]),
    ("Betrag CHF 1'234.50", {}, [("1234.50", "CHF", "CHF 1'234.50")]),
    ("Betrag 1’234.50", {}, [("1234.50", None, "1’234.50")]),
    ("12,5", {}, [("12.5", None, "12,5")]),
    ("1234,5", {}, [("1234.5", None, "1234,5")]),
    ("0.500", {}, [("0.500", None, "0.500")]),
    ("1,234,567.89", {}, [("1234567.89", None, "1,234,567.89")]),
    ("1.234.567,89", {}, [("1234567.89", None, "1.234.567,89")]),
    ("10.000.000,00 EUR", {}, [("10000000.00", "EUR", "10.000.000,00 EUR")]),
    ("1 234 567,89", {}, [("1234567.89", None, "1 234 567,89")]),
    ("Rs 12,34,567.00", {}, [("1234567.00", "INR", "Rs 12,34,567.00")]),
    ("KWD 1,234.567", {}, [("1234.567", "KWD", "KWD 1,234.567")]),
    ("Unit 0.1234", {}, [("0.1234", None, "0.1234")]),
    # 1.234: thousands unless the hint says otherwise
    ("$1.234", {}, [("1234", "USD", "$1.234")]),
    ("$1,234", {}, [("1234", "USD", "$1,234")]),
    ("Rp 15.000", {}, [("15000", "IDR", "Rp 15.000")]),
    ("1.234", {"decimal": "."}, [("1.234", None, "1.234")]),
    ("1,234", {"decimal": ","}, [("1.234", None, "1,234")]),
    ("$1.234", {"decimal": ","}, [("1234", "USD", "$1.234")]),
    ("1,234.56", {"decimal": ","}, [("1234.56", None, "1,234.56")]),
    # currencies before and after, glued or not
    ("TOTAL:RM9.00", {}, [("9.00", "MYR", "RM9.00")]),
    ("RM 9 .00", {}, [("9.00", "MYR", "RM 9 .00")]),
    ("RM 9. 00", {}, [("9.00", "MYR", "RM 9. 00")]),
    ("12,50 €", {}, [("12.50", "EUR", "12,50 €")]),
    ("12.50EUR", {}, [("12.50", "EUR", "12.50EUR")]),
    ("€12", {}, [("12", "EUR", "€12")]),
    ("EUR 12", {}, [("12", "EUR", "EUR 12")]),
    ("Price: EUR12.50", {}, [("12.50", "EUR", "EUR12.50")]),
    ("usd 12.00", {}, [("12.00", "USD", "usd 12.00")]),
    ("Php 1,250.00", {}, [("1250.00", "PHP", "Php 1,250.00")]),
    ("S$ 12.00", {}, [("12.00", "SGD", "S$ 12.00")]),
    ("A$12.00", {}, [("12.00", "AUD", "A$12.00")]),
    ("C$ 12.00", {}, [("12.00", "CAD", "C$ 12.00")]),
    ("US$12", {}, [("12", "USD", "US$12")]),
    ("HK$ 88.00", {}, [("88.00", "HKD", "HK$ 88.00")]),
    ("R$ 1.234,56", {}, [("1234.56", "BRL", "R$ 1.234,56")]),
    ("£9.99", {}, [("9.99", "GBP", "£9.99")]),
    ("¥1,200", {}, [("1200", "JPY", "¥1,200")]),
    ("1200円", {}, [("1200", "JPY", "1200円")]),
    ("RMB 88.00", {}, [("88.00", "CNY", "RMB 88.00")]),
    ("₹ 500.00", {}, [("500.00", "INR", "₹ 500.00")]),
    ("Rs.150", {}, [("150", "INR", "Rs.150")]),
    ("Fr. 12.50", {}, [("12.50", "CHF", "Fr. 12.50")]),
    ("100 kr", {}, [("100", "SEK", "100 kr")]),
    ("12,50 zł", {}, [("12.50", "PLN", "12,50 zł")]),
    ("150 Kč", {}, [("150", "CZK", "150 Kč")]),
    ("100,- Kč", {}, [("100.00", "CZK", "100,- Kč")]),
    ("1 000 Ft", {}, [("1000", "HUF", "1 000 Ft")]),
    ("₩15,000", {}, [("15000", "KRW", "₩15,000")]),
    ("₱ 250.00", {}, [("250.00", "PHP", "₱ 250.00")]),
    ("฿120", {}, [("120", "THB", "฿120")]),
    ("₺ 99,90", {}, [("99.90", "TRY", "₺ 99,90")]),
    ("₽ 500", {}, [("500", "RUB", "₽ 500")]),
    ("12,50 Euro", {}, [("12.50", "EUR", "12,50 Euro")]),
    ("$12.50 USD", {}, [("12.50", "USD", "$12.50 USD")]),
    ("€ 1 234", {}, [("1234", "EUR", "€ 1 234")]),
    ("1 234 €", {}, [("1234", "EUR", "1 234 €")]),
    ("RM 1 234.56", {}, [("1234.56", "MYR", "RM 1 234.56")]),
    ("RM 12.50 RM 3.00", {}, [("12.50", "MYR", "RM 12.50"), ("3.00", "MYR", "RM 3.00")]),
    ("12.50 RM 3.00", {}, [("12.50", None, "12.50"), ("3.00", "MYR", "RM 3.00")]),
    ("100 € 200 €", {}, [("100", "EUR", "100 €"), ("200", "EUR", "200 €")]),
    ("12,50 € 3,00 €", {}, [("12.50", "EUR", "12,50 €"), ("3.00", "EUR", "3,00 €")]),
    # negatives
    ("-12.00", {}, [("-12.00", None, "-12.00")]),
    ("\u221212,00 €", {}, [("-12.00", "EUR", "\u221212,00 €")]),
    ("Discount -5.00", {}, [("-5.00", None, "-5.00")]),
    ("Discount:-5.00", {}, [("-5.00", None, "-5.00")]),
    ("(12.50)", {}, [("-12.50", None, "(12.50)")]),
    ("( 12.50 )", {}, [("-12.50", None, "( 12.50 )")]),
    ("(RM 12.50)", {}, [("-12.50", "MYR", "(RM 12.50)")]),
    ("-RM12.50", {}, [("-12.50", "MYR", "-RM12.50")]),
    ("RM-12.50", {}, [("-12.50", "MYR", "RM-12.50")]),
    ("-$5", {}, [("-5", "USD", "-$5")]),
    ("Disc 12.50-", {}, [("-12.50", None, "12.50-")]),
    ("+12.50", {}, [("12.50", None, "+12.50")]),
    ("Total - 12.50", {}, [("12.50", None, "12.50")]),  # a spaced dash is punctuation
    # 12,- and 12.-
    ("12,-", {}, [("12.00", None, "12,-")]),
    ("Preis 12,-- EUR", {}, [("12.00", "EUR", "12,-- EUR")]),
    ("Fr. 12.-", {}, [("12.00", "CHF", "Fr. 12.-")]),
    ("12,– €", {}, [("12.00", "EUR", "12,– €")]),
    # OCR letters for digits
    ("l2.5O", {}, [("12.50", None, "l2.5O")]),
    ("1O.OO", {}, [("10.00", None, "1O.OO")]),
    ("RM1O0.00", {}, [("100.00", "MYR", "RM1O0.00")]),
    ("Total 12,5o", {}, [("12.50", None, "12,5o")]),
    ("12.5O%", {}, []),
    # several on a line, and missing spaces
    ("Qty 2 x 12.50 = 25.00", {}, [("12.50", None, "12.50"), ("25.00", None, "25.00")]),
    ("2 Widget, blue 12.50 25.00", {"integers": True},
     [("2", None, "2"), ("12.50", None, "12.50"), ("25.00", None, "25.00")]),
    ("Subtotal12.50 Tax0.75", {}, [("12.50", None, "12.50"), ("0.75", None, "0.75")]),
    ("9.00SR", {}, [("9.00", None, "9.00")]),
    ("12.50/kg", {}, [("12.50", None, "12.50")]),
    ("2x12.50", {"integers": True}, [("2", None, "2"), ("12.50", None, "12.50")]),
    ("12.30 25.00 37.30", {}, [("12.30", None, "12.30"), ("25.00", None, "25.00"), ("37.30", None, "37.30")]),
    ("Service Tax 6% 117.96", {}, [("117.96", None, "117.96")]),
    ("MwSt. 19% 197,11 €", {}, [("197.11", "EUR", "197,11 €")]),
    ("Date 25.12.2018 Total 99.00", {}, [("99.00", None, "99.00")]),
    ("10:30 Total 5.00", {}, [("5.00", None, "5.00")]),
    ("Tel +60 3-1234 5678 Total 12.50", {}, [("12.50", None, "12.50")]),
    ("HP 012-3456789 12.50", {}, [("12.50", None, "12.50")]),
    ("INV-2018-001 12.50", {}, [("12.50", None, "12.50")]),
    ("(1) 125.00", {}, [("125.00", None, "125.00")]),
    ("Total 12.50.", {}, [("12.50", None, "12.50")]),
    # space grouping: decided by the convention, or by the caller
    ("2 100.00", {}, [("100.00", None, "100.00")]),
    ("2 100.00", {"integers": True}, [("2", None, "2"), ("100.00", None, "100.00")]),
    ("2 100.00", {"spaces": True}, [("2100.00", None, "2 100.00")]),
    ("Total 1 234.56", {"spaces": True}, [("1234.56", None, "1 234.56")]),
    ("1 234,56", {"spaces": False}, [("234.56", None, "234,56")]),
    # integers: only with a currency, or when asked
    ("Qty 3", {"integers": True}, [("3", None, "3")]),
    ("1.234", {"integers": True}, [("1234", None, "1.234")]),
    ("1,500 pcs", {"integers": True}, [("1500", None, "1,500")]),
]

#: Texts in which nothing is an amount.
NO_AMOUNTS = [
    "", "Total", "Qty 3", "Total 1.234", "1,234", "25.12.2018", "25/12/2018", "12/25/18", "2018-12-25", "25-12-2018",
    "25. 12. 2018", "10:30", "10:30:15", "10.30 am", "10.30 Uhr", "6%", "6.00 %", "19,5 %", "Tel: +60 3-1234 5678",
    "Tel 03-1234 5678", "(03) 1234 5678", "+33 1.23.45.67.89", "01.23.45.67.89", "555-123-4567", "+6012345678",
    "Fax: 03 12345678", "IBAN DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB29 NWBK 6016 1331 9268 19",
    "1234567890123.00", "12.5kg", "3.5mm", "A4", "Page 1 of 2", "1/2", "INV-2018", "No. 123", "12.50-13.00",
    "10-20", "ISBN 978-3-16-148410-0", "Invoice 20181225", "12.3.4.5", "1.234.5", "v1.2",
    "- 12", "$", "RM", "TRY OUR CAKES",
]

#: Texts in which nothing is an amount even with integers=True.
NO_INTEGERS = [
    "25.12.2018", "25 Dec 2018", "Dec 25, 2018", "20181225", "10:30", "6%", "Tel: 03-1234 5678",
    "IBAN DE89 3704 0044 0532 0130 00", "INV-2018-001", "#12345", "No. 123", "Nr. 5", "N° 12", "A4", "M8",
    "1st", "3rd floor", "0044", "1234567890", "1/2", "12-25", "3-5 days",
]


@pytest.mark.parametrize("text, kwargs, expected", AMOUNTS)
def test_find_amounts(text, kwargs, expected):
    found = find_amounts(text, **kwargs)
    assert [(a.value, a.currency, a.raw) for a in found] == expected
    for a in found:
        assert text[a.start:a.end] == a.raw
        assert a.decimals == (len(a.value.split(".")[1]) if "." in a.value else 0)


@pytest.mark.parametrize("text", NO_AMOUNTS)
def test_no_amounts(text):
    assert find_amounts(text) == []


@pytest.mark.parametrize("text", NO_INTEGERS)
def test_no_integers(text):
    assert find_amounts(text, integers=True) == []


def test_amount_fields():
    (a,) = find_amounts("Total due: RM 1,234.5")
    assert a == AmountMatch(11, 21, "1234.5", "MYR", "RM 1,234.5", 1)
    assert str(a.decimal) == "1234.5"
    assert find_amounts("12,-")[0].decimals == 2
    assert find_amounts("$1,234")[0].decimals == 0


def test_amounts_do_not_overlap():
    for text, kwargs, _ in AMOUNTS:
        found = find_amounts(text, **kwargs)
        assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False)), text


def test_amounts_reject_bad_hint():
    with pytest.raises(ValueError, match="decimal"):
        find_amounts("1.234", decimal=";")


# -- percentages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("6%", [("6", "6%")]),
    ("GST 6.00 %", [("6.00", "6.00 %")]),
    ("MwSt 19,5%", [("19.5", "19,5%")]),
    ("VAT 20% on 100.00", [("20", "20%")]),
    ("TVA 5,5 % et 20 %", [("5.5", "5,5 %"), ("20", "20 %")]),
    ("Total 12.50", []),
    ("100%", [("100", "100%")]),
])
def test_find_percentages(text, expected):
    found = find_percentages(text)
    assert [(p.value, p.raw) for p in found] == expected
    assert all(text[p.start:p.end] == p.raw for p in found)


# -- currencies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, code", [
    ("€", "EUR"), ("EUR", "EUR"), ("Euro", "EUR"), ("$", "USD"), ("US$", "USD"), ("RM", "MYR"),
    ("Total (RM)", "MYR"), ("S$", "SGD"), ("SGD", "SGD"), ("A$", "AUD"), ("C$", "CAD"), ("HK$", "HKD"),
    ("R$", "BRL"), ("£", "GBP"), ("¥", "JPY"), ("RMB", "CNY"), ("元", "CNY"), ("¥ 100 (RMB)", "CNY"),
    ("₹", "INR"), ("Rs", "INR"), ("Rs.", "INR"), ("INR", "INR"), ("CHF", "CHF"), ("Fr.", "CHF"), ("kr", "SEK"),
    ("kr (DKK)", "DKK"), ("NOK 100 kr", "NOK"), ("zł", "PLN"), ("PLN", "PLN"), ("Kč", "CZK"), ("CZK", "CZK"),
    ("₩", "KRW"), ("Rp", "IDR"), ("IDR", "IDR"), ("₱", "PHP"), ("PHP", "PHP"), ("฿", "THB"), ("THB", "THB"),
    ("₺", "TRY"), ("₽", "RUB"), ("Ft", "HUF"), ("JPY", "JPY"), ("Amount in usd", "USD"), ("$ 12.00 (SGD)", "SGD"),
    ("Ringgit Malaysia", "MYR"), ("All amounts in EUR", "EUR"), ("TRY OUR CAKES, pay in $", "USD"),
    ("Total", None), ("VAT", None), ("GST 6%", None), ("", None), ("12 ft", None), ("Try our cakes", None),
    ("Others", None), ("The end", None), ("FRAGILE", None),
])
def test_currency_code(text, code):
    assert currency_code(text) == code


# -- dates ----------------------------------------------------------------------------------------

#: (text, order hint, [(iso, raw, ambiguous, order), ...])
DATES = [
    # numeric
    ("25/12/2018", None, [("2018-12-25", "25/12/2018", False, "DMY")]),
    ("12/25/2018", None, [("2018-12-25", "12/25/2018", False, "MDY")]),
    ("25.12.18", None, [("2018-12-25", "25.12.18", False, "DMY")]),
    ("2018-12-25", None, [("2018-12-25", "2018-12-25", False, "YMD")]),
    ("25-12-2018", None, [("2018-12-25", "25-12-2018", False, "DMY")]),
    ("2018/12/25", None, [("2018-12-25", "2018/12/25", False, "YMD")]),
    ("2018.12.25", None, [("2018-12-25", "2018.12.25", False, "YMD")]),
    ("Datum: 25. 12. 2018", None, [("2018-12-25", "25. 12. 2018", False, "DMY")]),
    ("Date:25/12/2018", None, [("2018-12-25", "25/12/2018", False, "DMY")]),
    ("1.5.2024", None, [("2024-05-01", "1.5.2024", True, "DMY")]),
    ("20181225", None, [("2018-12-25", "20181225", False, "YMD")]),
    ("Printed 2018-12-25 10:30", None, [("2018-12-25", "2018-12-25", False, "YMD")]),
    ("2018-12-25T10:30:00", None, [("2018-12-25", "2018-12-25", False, "YMD")]),
    ("01.01.2024 - 31.01.2024", None,
     [("2024-01-01", "01.01.2024", False, None), ("2024-01-31", "31.01.2024", False, "DMY")]),
    # two-digit years
    ("01/02/69", "DMY", [("2069-02-01", "01/02/69", False, "DMY")]),
    ("01/02/70", "DMY", [("1970-02-01", "01/02/70", False, "DMY")]),
    ("31.12.99", None, [("1999-12-31", "31.12.99", False, "DMY")]),
    # ambiguity and hints
    ("05/06/2020", None, [("2020-06-05", "05/06/2020", True, "DMY")]),
    ("05/06/2020", "DMY", [("2020-06-05", "05/06/2020", False, "DMY")]),
    ("05/06/2020", "MDY", [("2020-05-06", "05/06/2020", False, "MDY")]),
    ("05/05/2020", None, [("2020-05-05", "05/05/2020", False, None)]),
    ("13/06/2020", "MDY", [("2020-06-13", "13/06/2020", False, "DMY")]),
    ("06/13/2020", "DMY", [("2020-06-13", "06/13/2020", False, "MDY")]),
    ("18/12/25", "YMD", [("2018-12-25", "18/12/25", False, "YMD")]),
    ("05/06/2020", "YMD", [("2020-06-05", "05/06/2020", True, "DMY")]),
    # invalid, but shaped like a date
    ("31/02/2020", None, [(None, "31/02/2020", False, "DMY")]),
    ("29/02/2019", None, [(None, "29/02/2019", False, "DMY")]),
    ("45/13/2020", None, [(None, "45/13/2020", False, None)]),
    ("2020-13-45", None, [(None, "2020-13-45", False, None)]),
    ("02/30/2020", None, [(None, "02/30/2020", False, "MDY")]),
    ("29.02.2020", None, [("2020-02-29", "29.02.2020", False, "DMY")]),
    ("25/12/1850", None, [(None, "25/12/1850", False, "DMY")]),
    # written
    ("Dec 25, 2018", None, [("2018-12-25", "Dec 25, 2018", False, None)]),
    ("Dec. 25,2018", None, [("2018-12-25", "Dec. 25,2018", False, None)]),
    ("Dec 25 '18", None, [("2018-12-25", "Dec 25 '18", False, None)]),
    ("25 Dec 2018", None, [("2018-12-25", "25 Dec 2018", False, None)]),
    ("25-Dec-18", None, [("2018-12-25", "25-Dec-18", False, None)]),
    ("25.Dez.2018", None, [("2018-12-25", "25.Dez.2018", False, None)]),
    ("2018-Dec-25", None, [("2018-12-25", "2018-Dec-25", False, None)]),
    ("December 25th, 2018", None, [("2018-12-25", "December 25th, 2018", False, None)]),
    ("Monday, 25th of December 2018", None, [("2018-12-25", "25th of December 2018", False, None)]),
    ("SEPT 3, 2021", None, [("2021-09-03", "SEPT 3, 2021", False, None)]),
    ("02 Juillet 2015", None, [("2015-07-02", "02 Juillet 2015", False, None)]),
    ("1er janvier 2024", None, [("2024-01-01", "1er janvier 2024", False, None)]),
    ("15 août 2023", None, [("2023-08-15", "15 août 2023", False, None)]),
    ("15 aout 2023", None, [("2023-08-15", "15 aout 2023", False, None)]),
    ("3. März 2024", None, [("2024-03-03", "3. März 2024", False, None)]),
    ("3. Marz 2024", None, [("2024-03-03", "3. Marz 2024", False, None)]),
    ("3 Jänner 2024", None, [("2024-01-03", "3 Jänner 2024", False, None)]),
    ("15 de enero de 2024", None, [("2024-01-15", "15 de enero de 2024", False, None)]),
    ("7 SEPTIEMBRE 2022", None, [("2022-09-07", "7 SEPTIEMBRE 2022", False, None)]),
    ("1 gennaio 2024", None, [("2024-01-01", "1 gennaio 2024", False, None)]),
    ("1° maggio 2024", None, [("2024-05-01", "1° maggio 2024", False, None)]),
    ("12 januari 2024", None, [("2024-01-12", "12 januari 2024", False, None)]),
    ("3 mrt 2024", None, [("2024-03-03", "3 mrt 2024", False, None)]),
    ("12 Mei 2019", None, [("2019-05-12", "12 Mei 2019", False, None)]),
    ("5 Ogos 2020", None, [("2020-08-05", "5 Ogos 2020", False, None)]),
    ("1 Dis 2021", None, [("2021-12-01", "1 Dis 2021", False, None)]),
    ("12 Mac 2019", None, [("2019-03-12", "12 Mac 2019", False, None)]),
    ("10 de março de 2023", None, [("2023-03-10", "10 de março de 2023", False, None)]),
    ("5 de outubro de 2022", None, [("2022-10-05", "5 de outubro de 2022", False, None)]),
    ("31 Feb 2020", None, [(None, "31 Feb 2020", False, None)]),
    ("25 Dec 2218", None, [(None, "25 Dec 2218", False, None)]),
    ("May 2, 2018", None, [("2018-05-02", "May 2, 2018", False, None)]),
    ("1 set 2010", None, [("2010-09-01", "1 set 2010", False, None)]),
    ("2018年12月25日", None, [("2018-12-25", "2018年12月25日", False, None)]),
    # OCR
    ("2O18-l2-25", None, [("2018-12-25", "2O18-l2-25", False, "YMD")]),
    ("25/l2/2O18", None, [("2018-12-25", "25/l2/2O18", False, "DMY")]),
    # among other things
    ("2 pcs 25 Dec 2018", None, [("2018-12-25", "25 Dec 2018", False, None)]),
    ("Invoice Date: 25/12/2018 Due: Jan 24, 2019", None,
     [("2018-12-25", "25/12/2018", False, "DMY"), ("2019-01-24", "Jan 24, 2019", False, None)]),
]

#: Texts with no date in them.
NO_DATES = [
    "", "Total 1.234,56", "1.234.567", "10.000.000", "10:30", "12/25", "25.12.", "1/2", "Page 1 of 2",
    "v1.2.3", "192.168.1.1", "1.12.500", "Inv 2018122512", "INV-20181225", "20181325", "20180230",
    "1 set 10", "Qty 2 may 10", "Total 12.50 Dec 2018", "No. 2-3-15, Jalan Bukit", "Lot 12-1-08",
    "Tel 03-1234 5678", "Dec 2018", "25 Dec", "12 items 2018", "Mar 5",
]


@pytest.mark.parametrize("text, order, expected", DATES)
def test_find_dates(text, order, expected):
    found = find_dates(text, order=order)
    assert [(d.iso, d.raw, d.ambiguous, d.order) for d in found] == expected
    assert all(text[d.start:d.end] == d.raw for d in found)


@pytest.mark.parametrize("text", NO_DATES)
def test_no_dates(text):
    assert find_dates(text) == []


def test_dates_reject_bad_order():
    with pytest.raises(ValueError, match="order"):
        find_dates("01/02/2020", order="DM")
    assert DATE_ORDERS == ("DMY", "MDY", "YMD")


# -- labels ---------------------------------------------------------------------------------------

#: (text, [(field, printed span), ...])
LABEL_CASES = [
    ("Total 12.50", [("total", "Total")]),
    ("TOTAL:RM9.00", [("total", "TOTAL:")]),
    ("TOTAL12.50", [("total", "TOTAL")]),
    ("T0TAL 12.00", [("total", "T0TAL")]),
    ("Tota1: 102.40", [("total", "Tota1:")]),  # a label's last letter read as a digit
    ("Invoice1", [("document_type", "Invoice")]),  # ... only when that makes a label's word
    ("Sold By : WS Retail Services", [("supplier_name", "Sold By :"), ("description", "Services")]),
    ("Titulaire du compte : NETPRESSE", [("supplier_name", "Titulaire du compte :")]),
    ("Grand Total", [("total", "Grand Total")]),
    ("Total due", [("total", "Total due")]),
    ("Amount Due: $5", [("total", "Amount Due:")]),
    ("Balance Due", [("total", "Balance Due")]),
    ("Total Amount Due", [("total", "Total Amount Due")]),
    ("Total (RM): 9.00", [("total", "Total (RM):")]),
    ("Rounded Total", [("total", "Rounded Total")]),
    ("Total incl. VAT", [("total", "Total incl. VAT")]),
    ("Total GST inclusive", [("total", "Total GST inclusive")]),
    ("Total Sales (Inclusive of GST)", [("total", "Total Sales (Inclusive of GST)")]),
    ("Gesamtbetrag", [("total", "Gesamtbetrag")]),
    ("Gesamtsumme", [("total", "Gesamtsumme")]),
    ("Endbetrag", [("total", "Endbetrag")]),
    ("Rechnungsbetrag", [("total", "Rechnungsbetrag")]),
    ("Summe", [("total", "Summe")]),
    ("Gesamtbetrag inkl. MwSt.", [("total", "Gesamtbetrag inkl. MwSt.")]),
    ("Montant TTC", [("total", "Montant TTC")]),
    ("Total TTC", [("total", "Total TTC")]),
    ("Net à payer", [("total", "Net à payer")]),
    ("NET A PAYER", [("total", "NET A PAYER")]),
    ("Importe total", [("total", "Importe total")]),
    ("Totale", [("total", "Totale")]),
    ("Totaal", [("total", "Totaal")]),
    ("Te betalen", [("total", "Te betalen")]),
    ("Jumlah", [("total", "Jumlah")]),
    ("Jumlah Besar", [("total", "Jumlah Besar")]),
    ("Valor total", [("total", "Valor total")]),
    # subtotal
    ("Subtotal: 12.50", [("subtotal", "Subtotal:")]),
    ("Sub total", [("subtotal", "Sub total")]),
    ("Sub-Total", [("subtotal", "Sub-Total")]),
    ("SUBTOTAL", [("subtotal", "SUBTOTAL")]),
    ("Net amount", [("subtotal", "Net amount")]),
    ("Total excl. VAT", [("subtotal", "Total excl. VAT")]),
    ("Total excl.", [("subtotal", "Total excl.")]),
    ("Total HT", [("subtotal", "Total HT")]),
    ("Total net", [("subtotal", "Total net")]),
    ("Total exkl. MwSt.", [("subtotal", "Total exkl. MwSt.")]),
    ("Total Sales (Excluding GST)", [("subtotal", "Total Sales (Excluding GST)")]),
    ("Nettobetrag", [("subtotal", "Nettobetrag")]),
    ("Zwischensumme", [("subtotal", "Zwischensumme")]),
    ("Montant HT", [("subtotal", "Montant HT")]),
    ("Sous-total", [("subtotal", "Sous-total")]),
    ("Base imponible", [("subtotal", "Base imponible")]),
    ("Imponibile", [("subtotal", "Imponibile")]),
    ("Subtotaal", [("subtotal", "Subtotaal")]),
    # tax
    ("Tax", [("tax", "Tax")]),
    ("VAT 20%", [("tax", "VAT")]),
    ("GST 6%", [("tax", "GST")]),
    ("Sales tax", [("tax", "Sales tax")]),
    ("Total tax", [("tax", "Total tax")]),
    ("Total VAT", [("tax", "Total VAT")]),
    ("Total GST: 6.00", [("tax", "Total GST:")]),
    ("MwSt. 19%", [("tax", "MwSt.")]),
    ("zzgl. 19% USt.", [("tax", "USt.")]),
    ("zzgl. MwSt.", [("tax", "zzgl. MwSt.")]),
    ("Mehrwertsteuer", [("tax", "Mehrwertsteuer")]),
    ("TVA 20 %", [("tax", "TVA")]),
    ("IVA 21%", [("tax", "IVA")]),
    ("BTW 21%", [("tax", "BTW")]),
    ("SST 6%", [("tax", "SST")]),
    ("Service Tax 6%", [("tax", "Service Tax")]),
    # document number
    ("Invoice No.: 123", [("document_number", "Invoice No.:")]),
    ("Invoice number 123", [("document_number", "Invoice number")]),
    ("Invoice #: 123", [("document_number", "Invoice #:")]),
    ("INVOICE#123", [("document_number", "INVOICE#")]),
    ("Inv No 5", [("document_number", "Inv No")]),
    ("Bill No: 5", [("document_number", "Bill No:")]),
    ("Receipt No. 5", [("document_number", "Receipt No.")]),
    ("Document No", [("document_number", "Document No")]),
    ("Order number", [("document_number", "Order number")]),
    ("Contract number", [("document_number", "Contract number")]),
    ("Rechnungsnummer: 12", [("document_number", "Rechnungsnummer:")]),
    ("Rechnung Nr. 12", [("document_number", "Rechnung Nr.")]),
    ("Rechnungs-Nr.: 12", [("document_number", "Rechnungs-Nr.:")]),
    ("Facture n° 12", [("document_number", "Facture n°")]),
    ("Facture Nº 12", [("document_number", "Facture Nº")]),
    ("N° de facture : 12", [("document_number", "N° de facture :")]),
    ("Número de factura: 5", [("document_number", "Número de factura:")]),
    ("Nº factura 12", [("document_number", "Nº factura")]),
    ("Fattura n. 12", [("document_number", "Fattura n.")]),
    ("Factuurnummer", [("document_number", "Factuurnummer")]),
    ("No. Invois: 123", [("document_number", "No. Invois:")]),
    # dates
    ("Date: 25/12/2018", [("document_date", "Date:")]),
    ("Invoice Date", [("document_date", "Invoice Date")]),
    ("Dated", [("document_date", "Dated")]),
    ("Datum", [("document_date", "Datum")]),
    ("Rechnungsdatum", [("document_date", "Rechnungsdatum")]),
    ("Date de facture", [("document_date", "Date de facture")]),
    ("Fecha", [("document_date", "Fecha")]),
    ("Data", [("document_date", "Data")]),
    ("Factuurdatum", [("document_date", "Factuurdatum")]),
    ("Tarikh", [("document_date", "Tarikh")]),
    ("Due Date", [("due_date", "Due Date")]),
    ("Payment due", [("due_date", "Payment due")]),
    ("Pay by", [("due_date", "Pay by")]),
    ("Fällig am", [("due_date", "Fällig am")]),
    ("Fälligkeitsdatum", [("due_date", "Fälligkeitsdatum")]),
    ("Zahlbar bis", [("due_date", "Zahlbar bis")]),
    ("Échéance", [("due_date", "Échéance")]),
    ("Date d'échéance", [("due_date", "Date d'échéance")]),
    ("Date d’échéance", [("due_date", "Date d’échéance")]),
    ("Vencimiento", [("due_date", "Vencimiento")]),
    ("Scadenza", [("due_date", "Scadenza")]),
    ("Vervaldatum", [("due_date", "Vervaldatum")]),
    ("Order Date", [("other_date", "Order Date")]),
    ("Billing period", [("period", "Billing period")]),
    ("Leistungszeitraum", [("period", "Leistungszeitraum")]),
    ("Période", [("period", "Période")]),
    ("Periodo", [("period", "Periodo")]),
    # customer
    ("Bill To:", [("customer_name", "Bill To:")]),
    ("Billed to", [("customer_name", "Billed to")]),
    ("Customer", [("customer_name", "Customer")]),
    ("Sold To", [("customer_name", "Sold To")]),
    ("Ship To", [("customer_name", "Ship To")]),
    ("Rechnungsempfänger", [("customer_name", "Rechnungsempfänger")]),
    ("Kunde", [("customer_name", "Kunde")]),
    ("Client", [("customer_name", "Client")]),
    ("Facturé à", [("customer_name", "Facturé à")]),
    ("Cliente", [("customer_name", "Cliente")]),
    ("Klant", [("customer_name", "Klant")]),
    ("Customer No: 55", [("customer_number", "Customer No:")]),
    # tax ids
    ("VAT No: GB123456789", [("supplier_tax_id", "VAT No:")]),
    ("VAT Reg. No.", [("supplier_tax_id", "VAT Reg. No.")]),
    ("GST Reg No: 001234567890", [("supplier_tax_id", "GST Reg No:")]),
    ("GST ID", [("supplier_tax_id", "GST ID")]),
    ("Tax ID", [("supplier_tax_id", "Tax ID")]),
    ("TIN", [("supplier_tax_id", "TIN")]),
    ("ABN 12 345 678 901", [("supplier_tax_id", "ABN")]),
    ("USt-IdNr.: DE123456789", [("supplier_tax_id", "USt-IdNr.:")]),
    ("UStIdNr", [("supplier_tax_id", "UStIdNr")]),
    ("USt-ID-Nr.", [("supplier_tax_id", "USt-ID-Nr.")]),
    ("Steuernummer", [("supplier_tax_id", "Steuernummer")]),
    ("N° TVA", [("supplier_tax_id", "N° TVA")]),
    ("SIRET", [("supplier_tax_id", "SIRET")]),
    ("CIF: B12345678", [("supplier_tax_id", "CIF:")]),
    ("NIF", [("supplier_tax_id", "NIF")]),
    ("P.IVA 01234567890", [("supplier_tax_id", "P.IVA")]),
    ("Partita IVA", [("supplier_tax_id", "Partita IVA")]),
    ("BTW-nummer", [("supplier_tax_id", "BTW-nummer")]),
    ("KvK", [("supplier_tax_id", "KvK")]),
    ("Company Reg. No.", [("supplier_tax_id", "Company Reg. No.")]),
    # table headers
    ("Qty Description Unit Price Amount",
     [("quantity", "Qty"), ("description", "Description"), ("unit_price", "Unit Price"), ("amount", "Amount")]),
    ("Menge Bezeichnung Einzelpreis Betrag",
     [("quantity", "Menge"), ("description", "Bezeichnung"), ("unit_price", "Einzelpreis"), ("amount", "Betrag")]),
    ("Qté Désignation P.U. Montant",
     [("quantity", "Qté"), ("description", "Désignation"), ("unit_price", "P.U."), ("amount", "Montant")]),
    ("Cantidad Descripción Precio Importe",
     [("quantity", "Cantidad"), ("description", "Descripción"), ("unit_price", "Precio"), ("amount", "Importe")]),
    # words that keep others from being misread
    ("TAX INVOICE", [("document_type", "TAX INVOICE")]),
    ("Invoice", [("document_type", "Invoice")]),
    ("Cash RM 50.00", [("payment", "Cash")]),
    ("Change", [("payment", "Change")]),
    ("Rounding Adj", [("rounding", "Rounding Adj")]),
    ("Discount", [("discount", "Discount")]),
    ("TOTAL QTY: 3", [("quantity", "TOTAL QTY:")]),
    ("Total Discount", [("discount", "Total Discount")]),
    ("Total Amt Payable: 25.50", [("total", "Total Amt Payable:")]),
    # several on a line
    ("Subtotal 10.00 Tax 0.60 Total 10.60", [("subtotal", "Subtotal"), ("tax", "Tax"), ("total", "Total")]),
    ("Factuurdatum 12 januari 2024 Te betalen € 45,00", [("document_date", "Factuurdatum"), ("total", "Te betalen")]),
]

#: Texts with no label in them (in particular no "total" inside another word).
NO_LABELS = [
    "", "Totally awesome", "Subtotals", "Totalizer", "Datenschutz", "Taxi", "Vatican", "Thank you",
    "Widget blue 12.50", "Kuala Lumpur", "Globex Corporation", "Teller", "Quantum", "Dataset",
]


@pytest.mark.parametrize("text, expected", LABEL_CASES)
def test_find_labels(text, expected):
    found = find_labels(text)
    assert [(m.field, text[m.start:m.end]) for m in found] == expected


@pytest.mark.parametrize("text", NO_LABELS)
def test_no_labels(text):
    assert find_labels(text) == []


def test_total_never_inside_subtotal():
    for text in ("Subtotal", "Sub-total", "Sub total", "SUBTOTAL 5.00", "Sous-total", "Zwischensumme"):
        assert "total" not in {m.field for m in find_labels(text)}, text


def test_label_gives_canonical_phrase():
    (m,) = find_labels("NET À PAYER :")
    assert (m.field, m.label, m.end) == ("total", "net a payer", 13)
    (m,) = find_labels("Total (excl. VAT)")
    assert (m.field, m.label) == ("subtotal", "total excl vat")


def test_labels_are_folded_and_unambiguous():
    required = {"total", "subtotal", "tax", "document_number", "document_date", "due_date", "period", "customer_name",
                "supplier_tax_id", "quantity", "unit_price", "amount", "description"}
    assert required <= LABELS.keys()
    for field, phrases in LABELS.items():
        assert phrases, field
        for phrase in phrases:
            assert phrase == fold(phrase) == phrase.strip(), phrase
            found = find_labels(phrase)
            assert [m.field for m in found] == [field], (field, phrase, found)
            assert found[0].start == 0


def test_fold():
    assert fold("Fällig À PAYER Échéance") == "fallig a payer echeance"
    assert fold("d’échéance") == "d'echeance"
    assert fold("Nº №") == "no #"
    for text in ("İstanbul ﬁle ß Ǆ", "Größe – 12 €", "ﬀ\u00a0x"):
        assert len(fold(text)) == len(text)


# -- tax ids --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("USt-IdNr.: DE123456789", [("DE123456789", "DE123456789")]),
    ("VAT: DE 123 456 789", [("DE 123 456 789", "DE123456789")]),
    ("FR12345678901", [("FR12345678901", "FR12345678901")]),
    ("TVA FR 12 345678901", [("FR 12 345678901", "FR12345678901")]),
    ("VAT Reg No GB123456789", [("GB123456789", "GB123456789")]),
    ("VAT GB 123 4567 89", [("GB 123 4567 89", "GB123456789")]),
    ("NL123456789B01", [("NL123456789B01", "NL123456789B01")]),
    ("ATU12345678", [("ATU12345678", "ATU12345678")]),
    ("ESB12345678", [("ESB12345678", "ESB12345678")]),
    ("IT12345678901", [("IT12345678901", "IT12345678901")]),
    ("be0123456789", []),
    ("BE0123.456.789", [("BE0123.456.789", "BE0123.456.789")]),
    ("CHE-123.456.789 MWST", [("CHE-123.456.789", "CHE-123.456.789")]),
    ("XY12345678", [("XY12345678", "XY12345678")]),
    ("GST Reg No: 001234567890", [("001234567890", "001234567890")]),
    ("SST ID: W10-1808-31000001", [("W10-1808-31000001", "W10-1808-31000001")]),
    ("ABN 12 345 678 901", [("12 345 678 901", "12345678901")]),
    ("ABN 51824753556", [("51824753556", "51824753556")]),
    ("GSTIN 29ABCDE1234F1Z5", [("29ABCDE1234F1Z5", "29ABCDE1234F1Z5")]),
    ("EIN 12-3456789", [("12-3456789", "12-3456789")]),
    ("SIRET 123 456 789 00012", [("123 456 789 00012", "12345678900012")]),
    ("CIF B12345678", [("B12345678", "B12345678")]),
    ("NIF 12345678Z", [("12345678Z", "12345678Z")]),
    ("Steuernummer 12/345/67890", [("12/345/67890", "12/345/67890")]),
    ("DE123456789 / ATU12345678", [("DE123456789", "DE123456789"), ("ATU12345678", "ATU12345678")]),
    # not tax ids
    ("ABN 12345678901", []),  # fails the ABN checksum
    ("IBAN DE89 3704 0044 0532 0130 00", []),
    ("DE89370400440532013000", []),
    ("Tel +60 3-1234 5678", []),
    ("Total 1,234.56", []),
    ("25.12.2018", []),
    ("Invoice INV-2018-001", []),
    ("", []),
])
def test_find_tax_ids(text, expected):
    found = find_tax_ids(text)
    assert [(text[start:end], value) for start, end, value in found] == expected
    assert all(isinstance(m, TaxIdMatch) and m.value == m[2] for m in found)


# -- a page ---------------------------------------------------------------------------------------

def test_receipt_lines_end_to_end():
    lines = {
        "Total (RM) RM 2,083.95": ("total", [("2083.95", "MYR")]),
        "Gesamtbetrag inkl. MwSt. 1.234,56 €": ("total", [("1234.56", "EUR")]),
        "Total TTC 1 234,56 €": ("total", [("1234.56", "EUR")]),
        "Tarikh: 12 Mei 2019 Jumlah RM 9 .00": ("document_date", [("9.00", "MYR")]),
        "Balance due on 2019-01-24: $2,083.95": ("total", [("2083.95", "USD")]),
    }
    for text, (field, amounts) in lines.items():
        assert find_labels(text)[0].field == field, text
        assert [(a.value, a.currency) for a in find_amounts(text)] == amounts, text
    assert [d.iso for d in find_dates("Tarikh: 12 Mei 2019 Jumlah RM 9 .00")] == ["2019-05-12"]
    assert find_dates("Balance due on 2019-01-24: $2,083.95")[0].iso == "2019-01-24"
