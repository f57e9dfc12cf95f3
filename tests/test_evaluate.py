"""Metric functions of measure.scoring on hand-made cases with known answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from measure.datasets import GtLine, GtPage
from measure.scoring import (
    PageScore,
    cer,
    detection_counts,
    edit_distance,
    line_cer_counts,
    match_lines,
    normalize_text,
    polygon_iou,
    score_page,
    summarize,
    tokens,
    word_counts,
    word_set_counts,
)


def rect(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def page(lines: list[tuple[str, tuple | None]], width: int | None = 100, height: int | None = 100, **kw) -> GtPage:
    gt_lines = tuple(GtLine(t, p) for t, p in lines)
    words = kw.pop("words", tuple(w for t, _ in lines for w in t.split()))
    return GtPage("p", Path("p.png"), 0, width, height, gt_lines, words, **kw)


# -- text ----------------------------------------------------------------------


def test_normalize_text_nfkc_and_whitespace():
    assert normalize_text("  a\u00a0b\t\n c  ") == "a b c"
    assert normalize_text("\ufb01ne") == "fine"  # ligature fi
    assert normalize_text("ſ") == "s"  # NFKC folds the long s
    assert tokens(" x  y\nz ") == ["x", "y", "z"]
    assert tokens("") == []


def test_word_counts_perfect_empty_and_half():
    gt = ["the", "cat", "sat", "down"]
    assert word_counts("the cat sat down", gt) == (4, 4, 4)
    assert word_counts("down sat\ncat  the", gt) == (4, 4, 4)  # order does not matter
    assert word_counts("", gt) == (0, 0, 4)
    tp, n_pred, n_gt = word_counts("the cat", gt)
    assert (tp, n_pred, n_gt) == (2, 2, 4)
    s = PageScore("x", tp, n_pred, n_gt, 0, 0, 0, 0, 0, 0.0)
    assert s.recall == 0.5 and s.precision == 1.0 and s.f1 == pytest.approx(2 / 3)


def test_word_counts_is_a_multiset_intersection():
    assert word_counts("a a a b", ["a", "b", "b"]) == (2, 4, 3)


def test_word_counts_splits_gt_words_and_normalises():
    assert word_counts("New York \ufb01sh", ["New York", "fish"]) == (3, 3, 3)


def test_word_counts_ignore_removes_one_occurrence_each_side():
    assert word_counts("~~~ a b", ["a", "b", "~~~", "~~~"], ignore=["~~~"]) == (2, 2, 3)
    assert word_counts("a b", ["a", "b"], ignore=["~~~", "~~~"]) == (2, 2, 2)


def test_word_set_counts_turboocr_style():
    # distinct lowercased tokens of 2+ characters: repeats, case and 1-character tokens do not count
    assert word_set_counts("The the THE a cat sat", ["the", "Cat", "on", "a", "mat"]) == (2, 3, 4)
    assert word_set_counts("~~~ ab", ["ab", "~~~"], ignore=["~~~"]) == (1, 1, 1)
    scored = score_page(page([("The cat", rect(0, 0, 50, 10)), ("a cat", rect(0, 20, 50, 30))]), [], "the cat a", 0.0)
    assert (scored.set_tp, scored.set_pred, scored.set_gt) == (2, 2, 2) and scored.set_f1 == 1.0
    assert scored.f1 < 1.0  # the bag of words misses the second "cat"
    assert summarize([scored, PageScore("e", 0, 0, 1, 0, 0, 0, 0, 0, 0.0, set_gt=1)])["word_set_f1"] == 0.5


def test_prf_conventions():
    assert PageScore("x", 0, 0, 0, 0, 0, 0, 0, 0, 0.0).f1 == 1.0  # empty GT, empty prediction
    empty_pred = PageScore("x", 0, 0, 5, 0, 0, 0, 0, 0, 0.0)
    assert (empty_pred.precision, empty_pred.recall, empty_pred.f1) == (0.0, 0.0, 0.0)
    spurious = PageScore("x", 0, 3, 0, 0, 0, 0, 0, 0, 0.0)
    assert (spurious.precision, spurious.recall, spurious.f1) == (0.0, 0.0, 0.0)
    assert PageScore("x", 0, 2, 2, 0, 0, 0, 0, 0, 0.0).f1 == 0.0  # P + R = 0


# -- edit distance and CER -----------------------------------------------------


@pytest.mark.parametrize(
    "a, b, d",
    [
        ("kitten", "sitting", 3),
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("abc", "abc", 0),
        ("flaw", "lawn", 2),
        ("Straße", "Strasse", 2),
        ("abcdef", "azcdqf", 2),
        ("ab", "ba", 2),
    ],
)
def test_edit_distance(a, b, d):
    assert edit_distance(a, b) == d
    assert edit_distance(b, a) == d


def test_cer_known_edits():
    assert cer("abcd", "abcd") == 0.0
    assert cer("abce", "abcd") == 0.25
    assert cer("ab", "abcd") == 0.5
    assert cer("", "abcd") == 1.0
    assert cer("a  b", " a b ") == 0.0  # whitespace is normalised
    assert cer("", "") == 0.0
    assert cer("xy", "") == 1.0


# -- geometry ------------------------------------------------------------------


def test_iou_of_known_rectangles():
    a = rect(0, 0, 10, 10)
    assert polygon_iou(a, rect(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert polygon_iou(a, rect(5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert polygon_iou(a, a) == pytest.approx(1.0)
    assert polygon_iou(a, rect(2, 2, 7, 7)) == pytest.approx(25 / 100)
    assert polygon_iou(a, rect(10, 0, 20, 10)) == 0.0  # touching edges
    assert polygon_iou(a, rect(30, 30, 40, 40)) == 0.0


def test_iou_of_rotated_and_general_polygons():
    square = rect(0, 0, 10, 10)
    diamond = ((5, -5), (15, 5), (5, 15), (-5, 5))  # area 200, contains the square
    assert polygon_iou(square, diamond) == pytest.approx(0.5)
    # Same square with the points in another order and orientation.
    assert polygon_iou(square, ((0, 10), (10, 10), (10, 0), (0, 0))) == pytest.approx(1.0)
    # A triangle covering the lower-left half of the square.
    assert polygon_iou(square, ((0, 0), (10, 0), (0, 10))) == pytest.approx(0.5)


def test_iou_degenerate_polygons():
    assert polygon_iou(rect(0, 0, 10, 10), ((0, 0), (10, 10))) == 0.0
    assert polygon_iou(rect(0, 0, 10, 10), ((0, 0), (5, 5), (10, 10))) == 0.0  # collinear
    assert polygon_iou(rect(0, 0, 0, 10), rect(0, 0, 10, 10)) == 0.0


def test_match_lines_is_one_to_one_and_greedy():
    gt = [rect(0, 0, 10, 10)]
    preds = [rect(1, 0, 11, 10), rect(0, 0, 10, 10)]  # both overlap the one GT line
    assert match_lines(preds, gt) == [(1, 0)]  # the better one wins, only once
    gts = [rect(0, 0, 10, 10), rect(0, 20, 10, 30)]
    preds = [rect(0, 21, 10, 31), rect(0, 1, 10, 11), None]
    assert sorted(match_lines(preds, gts)) == [(0, 1), (1, 0)]
    assert match_lines([rect(5, 0, 15, 10)], gt) == []  # IoU 1/3 under 0.5
    assert match_lines([rect(5, 0, 15, 10)], gt, iou_threshold=0.3) == [(0, 0)]
    assert match_lines([], gt) == [] and match_lines(gt, []) == []


def test_detection_counts():
    gts = [rect(0, 0, 10, 10), rect(0, 20, 10, 30), rect(0, 40, 10, 50)]
    preds = [rect(0, 0, 10, 10), rect(0, 20, 10, 30), rect(50, 50, 60, 60)]
    assert detection_counts(preds, gts) == (2, 3, 3)
    assert detection_counts([], gts) == (0, 0, 3)
    # A prediction on a "don't care" region is neither a hit nor a false alarm.
    assert detection_counts(preds, gts, gt_ignore=[False, True, False]) == (1, 2, 2)


def test_line_cer_counts():
    gt = [GtLine("hello", rect(0, 0, 50, 10)), GtLine("world", rect(0, 20, 50, 30))]
    assert line_cer_counts([(rect(0, 0, 50, 10), "hello"), (rect(0, 20, 50, 30), "world")], gt) == (0, 10)
    # one substitution on line 1, line 2 missed (5 deletions)
    assert line_cer_counts([(rect(0, 0, 50, 10), "hallo")], gt) == (6, 10)
    # a spurious line elsewhere counts its characters as insertions
    pred = [(rect(0, 0, 50, 10), "hello"), (rect(0, 20, 50, 30), "world"), (rect(0, 60, 50, 70), "xyz")]
    assert line_cer_counts(pred, gt) == (3, 10)
    # a prediction matched to an empty ("don't care") GT line adds nothing
    gt_dc = gt + [GtLine("", rect(0, 60, 50, 70))]
    assert line_cer_counts(pred, gt_dc) == (0, 10)
    assert line_cer_counts([], []) == (0, 0)


# -- page and set scores -----------------------------------------------------


def test_score_page_perfect_and_empty():
    sample = page([("Invoice 42", rect(10, 10, 60, 20)), ("Total 9.00", rect(10, 30, 70, 40))])
    pred = [(rect(10, 10, 60, 20), "Invoice 42"), (rect(10, 30, 70, 40), "Total 9.00")]
    s = score_page(sample, pred, "Invoice 42\nTotal 9.00", 0.5)
    assert (s.f1, s.cer, s.det_hmean, s.seconds) == (1.0, 0.0, 1.0, 0.5)
    e = score_page(sample, [], "", 0.1)
    assert (e.f1, e.cer, e.det_hmean) == (0.0, 1.0, 0.0)


def test_score_page_rescales_predictions_into_gt_frame():
    sample = page([("Invoice 42", rect(10, 10, 60, 20))], width=100, height=100)
    pred = [(rect(5, 5, 30, 10), "Invoice 42")]  # made on a half-size render
    assert score_page(sample, pred, "Invoice 42", 0.0, pred_size=(50, 50)).det_hmean == 1.0
    assert score_page(sample, pred, "Invoice 42", 0.0).det_hmean == 0.0
    assert score_page(sample, pred, "Invoice 42", 0.0, pred_size=(100, 100)).det_hmean == 0.0
    # anisotropic: x halved only
    pred_x = [(((5, 10), (30, 10), (30, 20), (5, 20)), "Invoice 42")]
    assert score_page(sample, pred_x, "Invoice 42", 0.0, pred_size=(50, 100)).det_tp == 1


def test_score_page_whole_image_line_compares_joined_text():
    sample = page([("Hello world", rect(0, 0, 200, 20))], width=200, height=20)
    pred = [(rect(2, 2, 60, 18), "Hello"), (rect(70, 2, 150, 18), "wor1d")]
    s = score_page(sample, pred, "Hello wor1d", 0.0)
    assert (s.cer_errors, s.cer_chars) == (1, 11)
    assert not s.det_scored and (s.det_tp, s.det_pred, s.det_gt) == (0, 0, 0)
    assert (s.tp, s.n_pred, s.n_gt) == (1, 2, 2)


def test_score_page_without_gt_geometry_falls_back_to_page_text():
    sample = page([("abc", None), ("def", None)], width=None, height=None)
    s = score_page(sample, [(None, "abc"), (None, "dxf")], "abc dxf", 0.0)
    assert (s.cer_errors, s.cer_chars) == (1, 7) and not s.det_scored


def test_score_page_ignore_words():
    sample = page([("a b", rect(0, 0, 10, 10))], words=("a", "b"), ignore_words=("~~~",))
    s = score_page(sample, [(rect(0, 0, 10, 10), "a b")], "a b", 0.0)
    assert s.f1 == 1.0


def test_summarize_micro_and_macro():
    a = PageScore("a", tp=10, n_pred=10, n_gt=10, cer_errors=0, cer_chars=100,
                  det_tp=4, det_pred=4, det_gt=4, seconds=1.0)
    b = PageScore("b", tp=0, n_pred=0, n_gt=2, cer_errors=20, cer_chars=20,
                  det_tp=0, det_pred=0, det_gt=1, seconds=3.0)
    out = summarize([a, b])
    assert out["pages"] == 2
    assert out["word_precision"] == 1.0
    assert out["word_recall"] == pytest.approx(10 / 12)
    assert out["word_f1"] == pytest.approx(2 * (10 / 12) / (1 + 10 / 12))
    assert out["word_f1_mean"] == pytest.approx(0.5)  # macro: (1.0 + 0.0) / 2
    assert out["cer"] == pytest.approx(20 / 120)
    assert out["det_recall"] == pytest.approx(4 / 5) and out["det_precision"] == 1.0
    assert out["det_hmean"] == pytest.approx(2 * 0.8 / 1.8)
    assert out["seconds_per_page"] == 2.0


def test_summarize_leaves_out_unscored_detection_and_handles_empty():
    s = PageScore("l", 2, 2, 2, 0, 11, 0, 0, 0, 0.2, det_scored=False)
    out = summarize([s])
    assert out["det_hmean"] is None and out["det_pages"] == 0 and out["word_f1"] == 1.0
    empty = summarize([])
    assert empty["pages"] == 0 and empty["word_f1"] is None and empty["cer"] is None


def test_line_recall_counts_a_line_read_in_pieces_and_misses_a_lost_one():
    from measure.scoring import line_recall_counts

    def box(x0, y0, x1, y1):
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))

    gt = [GtLine("a long bent line", box(0, 0, 100, 10)), GtLine("lost", box(0, 20, 100, 30)),
          GtLine("", box(0, 40, 100, 50)), GtLine("no polygon", None)]
    # the first line read in two pieces covering 30% + 30% of it; nothing over the second
    assert line_recall_counts([box(0, 0, 30, 10), box(40, 0, 70, 10)], gt) == (1, 2)
    assert line_recall_counts([box(0, 0, 30, 10)], gt) == (0, 2)  # 30%: not found
    assert line_recall_counts([], gt) == (0, 2)
