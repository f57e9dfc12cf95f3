"""Accuracy metrics for OCR output against labelled pages.

Three views of a page, all reduced to counts so that sets are micro-averaged
by summing counts (a page with 500 words weighs more than one with 5):

- **bag of words**: the multiset of NFKC-normalised whitespace tokens of the
  page text against the GT words (true positives, predicted, GT). Reading order
  and line splits do not matter, which makes it comparable across engines.
- **CER**: character edit distance of matched lines (by polygon IoU), plus the
  whole text of unmatched GT lines (deletions) and unmatched predictions
  (insertions), over the number of GT characters.
- **detection**: one-to-one line matches at IoU >= threshold (precision,
  recall, H-mean).
- **set of words** (TurboOCR's metric, to compare with figures published that
  way): the set of lowercased tokens of at least 2 characters of the page text
  against the GT's, F1 per page, averaged over pages (:func:`word_set_counts`).
  Repeats and 1-character tokens do not count, so it reads higher than the bag
  of words.
- **word boxes** (sets with GT word boxes, FUNSD): of the GT words the system
  read exactly (a predicted word with the same normalised text overlaps the GT
  box), the share whose best such word covers it at IoU >= 0.5: whether the
  system puts its words where they are on the page.

Edge conventions, used by every ratio here:

- precision = tp / n_pred, recall = tp / n_gt; with nothing predicted and
  nothing in the GT both are 1.0; when only one side is empty both are 0.0.
- F1 (and detection H-mean) = 2PR / (P + R), 0.0 when P + R = 0.
- CER = errors / GT characters; with no GT characters it is 0.0 when there are
  no errors and 1.0 otherwise.

GT lines with empty text are "don't care" regions (FUNSD checkbox/logo
entities, untranscribed or handwritten-only ALTO lines): they take part in
matching, but neither they nor the predictions matched to them are counted in
detection or CER.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from measure.datasets import GtLine, GtPage

__all__ = [
    "normalize_text",
    "tokens",
    "word_counts",
    "word_set_counts",
    "edit_distance",
    "cer",
    "polygon_iou",
    "match_lines",
    "detection_counts",
    "line_cer_counts",
    "word_box_counts",
    "line_recall_counts",
    "rescale_polygon",
    "PageScore",
    "score_page",
    "summarize",
]

log = logging.getLogger(__name__)

try:
    from rapidfuzz.distance.Levenshtein import distance as _levenshtein
except ImportError:  # pragma: no cover - a dependency; the pure-Python loop below gives the same numbers
    _levenshtein = None

Point = tuple[float, float]
Polygon = Sequence[Point]


# -- text ----------------------------------------------------------------------


def normalize_text(s: str) -> str:
    """NFKC-normalise, collapse runs of whitespace to one space, strip.

    Note that NFKC folds compatibility characters, e.g. the long s ``ſ`` to
    ``s`` and ligatures like ``ﬁ`` to ``fi``.
    """
    return " ".join(unicodedata.normalize("NFKC", s).split())


def tokens(s: str) -> list[str]:
    """NFKC-normalised whitespace tokens of ``s``."""
    return unicodedata.normalize("NFKC", s).split()


def word_counts(pred_text: str, gt_words: Sequence[str], ignore: Sequence[str] = ()) -> tuple[int, int, int]:
    """Bag-of-words counts of a page.

    Args:
        pred_text: the predicted page text.
        gt_words: GT words; each is tokenised like the prediction, so a GT
            "word" holding a space counts as several tokens.
        ignore: tokens to leave out; each removes one equal token (if any)
            from the prediction and one from the GT.

    Returns:
        (true positives, predicted tokens, GT tokens), where true positives is
        the size of the multiset intersection.
    """
    pred = Counter(tokens(pred_text))
    gt = Counter(t for w in gt_words for t in tokens(w))
    for t in (t for w in ignore for t in tokens(w)):
        if pred[t] > 0:
            pred[t] -= 1
        if gt[t] > 0:
            gt[t] -= 1
    tp = sum((pred & gt).values())
    return tp, sum(pred.values()), sum(gt.values())


def word_set_counts(pred_text: str, gt_words: Sequence[str], ignore: Sequence[str] = ()) -> tuple[int, int, int]:
    """Set-of-words counts of a page, TurboOCR's way: the distinct lowercased tokens of at least 2
    characters (NFKC whitespace tokens, as :func:`tokens`); ``ignore`` tokens are left out of both sides.

    Returns:
        (tokens in both sets, predicted set size, GT set size).
    """
    left_out = {t.lower() for w in ignore for t in tokens(w)}
    pred = {t.lower() for t in tokens(pred_text) if len(t) >= 2} - left_out
    gt = {t.lower() for w in gt_words for t in tokens(w) if len(t) >= 2} - left_out
    return len(pred & gt), len(pred), len(gt)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit-cost insert, delete, substitute) of two strings (rapidfuzz's, where
    it is installed: whole pages of text in reading order are tens of thousands of characters)."""
    if a == b:
        return 0
    if _levenshtein is not None:
        return _levenshtein(a, b)
    # Common prefix and suffix never change the distance; OCR lines share most of theirs.
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _ratio_cer(errors: int, chars: int) -> float:
    if chars == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / chars


def cer(pred: str, gt: str) -> float:
    """Character error rate of ``pred`` against ``gt`` after :func:`normalize_text`.

    Returns edit distance / GT length; for an empty GT, 0.0 if the prediction
    is empty too, else 1.0. May exceed 1.0 (long wrong predictions).
    """
    p, g = normalize_text(pred), normalize_text(gt)
    return _ratio_cer(edit_distance(p, g), len(g))


# -- geometry ------------------------------------------------------------------


def _convex_hull(points: Sequence[Point]) -> list[Point]:
    """Counter-clockwise convex hull (Andrew's monotone chain), no repeated points."""
    pts = sorted(set((float(x), float(y)) for x, y in points))
    if len(pts) < 3:
        return pts

    def cross(o: Point, a: Point, b: Point) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[Point] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[Point] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _area(poly: Sequence[Point]) -> float:
    n = len(poly)
    if n < 3:
        return 0.0
    s = 0.0
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        s += x0 * y1 - x1 * y0
    return abs(s) / 2.0


def _clip_convex(subject: list[Point], clip: list[Point]) -> list[Point]:
    """Sutherland-Hodgman: ``subject`` clipped by the counter-clockwise convex ``clip``."""
    out = subject
    n = len(clip)
    for i in range(n):
        if not out:
            break
        (cx0, cy0), (cx1, cy1) = clip[i], clip[(i + 1) % n]
        ex, ey = cx1 - cx0, cy1 - cy0
        # side > 0: left of the edge, i.e. inside a counter-clockwise polygon.
        sides = [ex * (y - cy0) - ey * (x - cx0) for x, y in out]
        inp, out = out, []
        for j in range(len(inp)):
            p, q, sp, sq = inp[j - 1], inp[j], sides[j - 1], sides[j]
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
            if sq >= 0:
                out.append(q)
    return out


def _bbox(poly: Polygon) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for p in poly]
    ys = [float(p[1]) for p in poly]
    return min(xs), min(ys), max(xs), max(ys)


def _is_axis_rect(poly: Polygon) -> bool:
    return len(poly) == 4 and len({float(p[0]) for p in poly}) <= 2 and len({float(p[1]) for p in poly}) <= 2


def polygon_iou(a: Polygon, b: Polygon) -> float:
    """Intersection over union of two polygons given as sequences of (x, y).

    Computed on the convex hulls, which is exact for convex shapes (all
    predicted quadrilaterals, FUNSD and SROIE boxes) and a close upper bound
    of the area for the wavy line polygons of ALTO ground truth. Polygons with
    fewer than 3 distinct points have no area and give 0.0.
    """
    if len(a) < 3 or len(b) < 3:
        return 0.0
    ax0, ay0, ax1, ay1 = _bbox(a)
    bx0, by0, bx1, by1 = _bbox(b)
    iw = min(ax1, bx1) - max(ax0, bx0)
    ih = min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    if _is_axis_rect(a) and _is_axis_rect(b):
        inter = iw * ih
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        return inter / union if union > 0 else 0.0
    ha, hb = _convex_hull(a), _convex_hull(b)
    area_a, area_b = _area(ha), _area(hb)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter = _area(_clip_convex(ha, hb))
    union = area_a + area_b - inter
    return max(0.0, min(1.0, inter / union)) if union > 0 else 0.0


def rescale_polygon(poly: Polygon, sx: float, sy: float) -> tuple[Point, ...]:
    """Scale a polygon's x by ``sx`` and y by ``sy``."""
    return tuple((float(x) * sx, float(y) * sy) for x, y in poly)


def match_lines(
    pred_polys: Sequence[Polygon | None],
    gt_polys: Sequence[Polygon | None],
    iou_threshold: float = 0.5,
) -> list[tuple[int, int]]:
    """One-to-one matching of predicted to GT polygons.

    Greedy by descending IoU (ties broken by prediction, then GT index): a
    pair is taken when IoU >= ``iou_threshold`` and neither side is taken yet.
    ``None`` or degenerate polygons never match.

    Returns:
        (pred index, GT index) pairs in the order they were matched.
    """
    gt_boxes = [(_bbox(g) if g is not None and len(g) >= 3 else None) for g in gt_polys]
    candidates: list[tuple[float, int, int]] = []
    for i, p in enumerate(pred_polys):
        if p is None or len(p) < 3:
            continue
        px0, py0, px1, py1 = _bbox(p)
        for j, gb in enumerate(gt_boxes):
            if gb is None or gb[0] >= px1 or gb[2] <= px0 or gb[1] >= py1 or gb[3] <= py0:
                continue
            iou = polygon_iou(p, gt_polys[j])
            if iou >= iou_threshold and iou > 0:
                candidates.append((-iou, i, j))
    candidates.sort()
    used_pred: set[int] = set()
    used_gt: set[int] = set()
    matches = []
    for _, i, j in candidates:
        if i in used_pred or j in used_gt:
            continue
        used_pred.add(i)
        used_gt.add(j)
        matches.append((i, j))
    return matches


def detection_counts(
    pred_polys: Sequence[Polygon | None],
    gt_polys: Sequence[Polygon | None],
    iou_threshold: float = 0.5,
    gt_ignore: Sequence[bool] | None = None,
) -> tuple[int, int, int]:
    """Line-detection counts of a page.

    Args:
        pred_polys: predicted line polygons.
        gt_polys: GT line polygons.
        iou_threshold: minimum IoU of a match.
        gt_ignore: per GT line, True for a "don't care" region: it is not
            counted, and a prediction matched to it is not counted either.

    Returns:
        (matched, predicted, GT) counts.
    """
    ignore = list(gt_ignore) if gt_ignore is not None else [False] * len(gt_polys)
    matches = match_lines(pred_polys, gt_polys, iou_threshold)
    dropped = sum(1 for _, j in matches if ignore[j])
    return len(matches) - dropped, len(pred_polys) - dropped, len(gt_polys) - sum(ignore)


def line_cer_counts(
    pred_lines: Sequence[tuple[Polygon | None, str]],
    gt_lines: Sequence[GtLine],
    iou_threshold: float = 0.5,
) -> tuple[int, int]:
    """Character errors of a page's lines, matched by polygon.

    Matched pairs contribute their edit distance; unmatched GT lines count all
    their characters (deletions), unmatched predictions all theirs
    (insertions). Texts are compared after :func:`normalize_text`. GT lines
    with empty text are "don't care": predictions matched to them add nothing.

    Returns:
        (edit errors, GT characters); CER = errors / characters.
    """
    return _line_counts(pred_lines, gt_lines, iou_threshold)[0]


def _line_counts(
    pred_lines: Sequence[tuple[Polygon | None, str]],
    gt_lines: Sequence[GtLine],
    iou_threshold: float,
) -> tuple[tuple[int, int], tuple[int, int, int], set[int]]:
    """((CER errors, chars), (det tp, det pred, det gt), predicted lines matched to a GT "don't care"
    region) from one matching pass."""
    pred_texts = [normalize_text(t) for _, t in pred_lines]
    gt_texts = [normalize_text(g.text) for g in gt_lines]
    ignore = [not t for t in gt_texts]
    matches = match_lines([p for p, _ in pred_lines], [g.polygon for g in gt_lines], iou_threshold)
    matched_pred = {i for i, _ in matches}
    matched_gt = {j for _, j in matches}
    errors = sum(edit_distance(pred_texts[i], gt_texts[j]) for i, j in matches if not ignore[j])
    errors += sum(len(t) for j, t in enumerate(gt_texts) if j not in matched_gt)
    errors += sum(len(t) for i, t in enumerate(pred_texts) if i not in matched_pred)
    chars = sum(len(t) for t in gt_texts)
    dropped = sum(1 for _, j in matches if ignore[j])
    det = (len(matches) - dropped, len(pred_lines) - dropped, len(gt_lines) - sum(ignore))
    return (errors, chars), det, {i for i, j in matches if ignore[j]}


# -- page and set scores -----------------------------------------------------


def word_box_counts(
    pred_words: Sequence[tuple[Polygon, str]], gt_words: Sequence[GtLine], iou_threshold: float = 0.5
) -> tuple[int, int]:
    """(GT words read exactly, of those covered at ``iou_threshold``) on one page.

    A GT word is read exactly when a predicted word with the same normalised text
    overlaps its box; it is covered when the best-overlapping such word reaches
    ``iou_threshold``.
    """
    by_text: dict[str, list[Polygon]] = {}
    for polygon, text in pred_words:
        if polygon is not None:
            by_text.setdefault(normalize_text(text), []).append(polygon)
    read = covered = 0
    for gt in gt_words:
        candidates = by_text.get(normalize_text(gt.text), ())
        if gt.polygon is None or not candidates:
            continue
        best = max(polygon_iou(p, gt.polygon) for p in candidates)
        if best > 0:
            read += 1
            covered += best >= iou_threshold
    return read, covered


def _prf(tp: int, n_pred: int, n_gt: int) -> tuple[float, float, float]:
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0, 1.0
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gt if n_gt else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


@dataclass
class PageScore:
    """Counts of one scored page (see the module docstring for conventions).

    Attributes:
        sample_id: the GT sample.
        tp, n_pred, n_gt: bag-of-words counts.
        cer_errors, cer_chars: character edit errors and GT characters.
        det_tp, det_pred, det_gt: line-detection counts.
        seconds: wall time spent on the page.
        det_scored: False where detection is not meaningful (a GT line that is
            the whole image, or GT without polygons); such pages are left out of
            the set's detection figures.
        box_read, box_covered: GT words read exactly, and of those covered by the
            predicted word at IoU >= 0.5 (:func:`word_box_counts`; 0 without GT word boxes).
        order_errors, order_chars: character edit errors of the whole page text in the system's
            reading order against the GT lines in the GT's reading order, and the GT's characters
            (:func:`reading_order_counts`; 0 where the GT gives no order).
        lines_found, lines_gt: GT text lines some predicted line covers, and GT text lines with a
            polygon (:func:`line_recall_counts`; 0 where detection is not scored).
        set_tp, set_pred, set_gt: set-of-words counts (:func:`word_set_counts`).
    """

    sample_id: str
    tp: int
    n_pred: int
    n_gt: int
    cer_errors: int
    cer_chars: int
    det_tp: int
    det_pred: int
    det_gt: int
    seconds: float
    det_scored: bool = True
    box_read: int = 0
    box_covered: int = 0
    order_errors: int = 0
    order_chars: int = 0
    lines_found: int = 0
    lines_gt: int = 0
    set_tp: int = 0
    set_pred: int = 0
    set_gt: int = 0

    @property
    def set_f1(self) -> float:
        return _prf(self.set_tp, self.set_pred, self.set_gt)[2]

    @property
    def word_box_coverage(self) -> float | None:
        return self.box_covered / self.box_read if self.box_read else None

    @property
    def precision(self) -> float:
        return _prf(self.tp, self.n_pred, self.n_gt)[0]

    @property
    def recall(self) -> float:
        return _prf(self.tp, self.n_pred, self.n_gt)[1]

    @property
    def f1(self) -> float:
        return _prf(self.tp, self.n_pred, self.n_gt)[2]

    @property
    def cer(self) -> float:
        return _ratio_cer(self.cer_errors, self.cer_chars)

    @property
    def det_precision(self) -> float:
        return _prf(self.det_tp, self.det_pred, self.det_gt)[0]

    @property
    def det_recall(self) -> float:
        return _prf(self.det_tp, self.det_pred, self.det_gt)[1]

    @property
    def det_hmean(self) -> float:
        return _prf(self.det_tp, self.det_pred, self.det_gt)[2]


def _whole_image_line(sample: GtPage) -> bool:
    """True when the page's only GT line is the whole image (``lines`` sets)."""
    if len(sample.lines) != 1 or sample.lines[0].polygon is None:
        return False
    if not sample.width or not sample.height:
        return False
    x0, y0, x1, y1 = _bbox(sample.lines[0].polygon)
    tol_x, tol_y = max(1.0, 0.02 * sample.width), max(1.0, 0.02 * sample.height)
    return x0 <= tol_x and y0 <= tol_y and x1 >= sample.width - tol_x and y1 >= sample.height - tol_y


def score_page(
    sample: GtPage,
    pred_lines: Sequence[tuple[Polygon | None, str]],
    pred_text: str,
    seconds: float,
    pred_size: tuple[int, int] | None = None,
    iou_threshold: float = 0.5,
    pred_words: Sequence[tuple[Polygon, str]] = (),
) -> PageScore:
    """Score one page's OCR output against its ground truth.

    Args:
        sample: the GT page.
        pred_lines: predicted (polygon, text) lines in the prediction's pixels, in its reading order.
        pred_text: the predicted page text (for the bag of words and the reading-order CER; where
            lines match GT "don't care" regions, lines with empty text, the reading-order CER reads the
            other lines in their order instead, leaving those out as the line CER does).
        seconds: time spent on the page.
        pred_size: (width, height) of the image the polygons refer to; when it
            differs from the sample's GT frame, polygons are rescaled into it.
        iou_threshold: minimum IoU of a line match (and of a word box).
        pred_words: predicted (polygon, text) words, where the system gives them.

    CER is line-matched, except on pages whose only GT line is the whole image
    (line-image sets) or whose GT has no polygons: there the predicted line
    texts joined by spaces (or ``pred_text`` when there are no lines) are
    compared to the GT line texts joined by spaces, and detection is not
    scored (``det_scored=False``).
    """
    if pred_size is not None and sample.width and sample.height:
        pw, ph = pred_size
        if pw > 0 and ph > 0 and (pw, ph) != (sample.width, sample.height):
            sx, sy = sample.width / pw, sample.height / ph
            pred_lines = [(rescale_polygon(p, sx, sy) if p is not None else None, t) for p, t in pred_lines]
            pred_words = [(rescale_polygon(p, sx, sy), t) for p, t in pred_words]

    tp, n_pred, n_gt = word_counts(pred_text, sample.words, sample.ignore_words)
    set_counts = word_set_counts(pred_text, sample.words, sample.ignore_words)
    has_geometry = any(g.polygon is not None for g in sample.lines)
    if _whole_image_line(sample) or not has_geometry:
        joined = " ".join(t for _, t in pred_lines) if pred_lines else pred_text
        pred_norm = normalize_text(joined)
        gt_norm = normalize_text(" ".join(g.text for g in sample.lines))
        cer_counts = (edit_distance(pred_norm, gt_norm), len(gt_norm))
        det, det_scored, dont_care = (0, 0, 0), False, set()
    else:
        cer_counts, det, dont_care = _line_counts(pred_lines, sample.lines, iou_threshold)
        det_scored = True
    recall = line_recall_counts([p for p, _ in pred_lines], sample.lines) if det_scored else (0, 0)
    box_read, box_covered = word_box_counts(pred_words, sample.word_boxes, iou_threshold)
    if dont_care:  # what was read in the GT's "don't care" regions counts in no CER, as in the line CER
        pred_text = "\n".join(t for i, (_, t) in enumerate(pred_lines) if i not in dont_care)
    order = reading_order_counts(pred_text, sample) if sample.ordered else (0, 0)
    return PageScore(
        sample_id=sample.sample_id,
        tp=tp,
        n_pred=n_pred,
        n_gt=n_gt,
        cer_errors=cer_counts[0],
        cer_chars=cer_counts[1],
        det_tp=det[0],
        det_pred=det[1],
        det_gt=det[2],
        seconds=float(seconds),
        det_scored=det_scored,
        box_read=box_read,
        box_covered=box_covered,
        order_errors=order[0],
        order_chars=order[1],
        lines_found=recall[0],
        lines_gt=recall[1],
        set_tp=set_counts[0],
        set_pred=set_counts[1],
        set_gt=set_counts[2],
    )


def line_recall_counts(pred_polys: Sequence[Polygon | None], gt_lines: Sequence[GtLine],
                       min_cover: float = 0.5) -> tuple[int, int]:
    """(GT text lines found, GT text lines with a polygon): a GT line is found when the predicted lines
    that overlap it cover at least ``min_cover`` of its box, however many pieces the system read it
    in. A line no predicted line covers is text the output lost without a trace.
    """
    boxes = [_bbox(p) for p in pred_polys if p is not None]
    found = total = 0
    for gt in gt_lines:
        if not gt.text.strip() or gt.polygon is None:
            continue
        total += 1
        x0, y0, x1, y1 = _bbox(gt.polygon)
        area = max((x1 - x0) * (y1 - y0), 1e-9)
        # the overlaps of disjoint pieces add up; those of overlapping ones can count twice, capped at 1
        covered = sum(max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1]))
                      for b in boxes)
        found += covered / area >= min_cover
    return found, total


def reading_order_counts(pred_text: str, sample: GtPage) -> tuple[int, int]:
    """Character errors of the page text in reading order: the system's whole page text against the GT
    lines joined in the GT's order, both after :func:`normalize_text` (so line breaks and spacing do not
    count, the order of the words does). Ignored GT tokens are left out of both.

    Returns:
        (edit errors, GT characters).
    """
    gt = " ".join(g.text for g in sample.lines if g.text)
    if sample.ignore_words:
        drop = set(t for w in sample.ignore_words for t in tokens(w))
        gt = " ".join(t for t in tokens(gt) if t not in drop)
        pred_text = " ".join(t for t in tokens(pred_text) if t not in drop)
    p, g = normalize_text(pred_text), normalize_text(gt)
    return edit_distance(p, g), len(g)


def summarize(scores: Sequence[PageScore]) -> dict:
    """Set-level figures from page scores.

    Returns:
        A dict with ``pages``; ``word_precision``, ``word_recall``, ``word_f1``
        micro-averaged over all words of the set and ``word_f1_mean`` (macro,
        mean of page F1); ``cer`` (total errors / total GT characters);
        ``det_precision``, ``det_recall``, ``det_hmean`` micro-averaged over the
        pages where detection is scored (None when none is); ``seconds_per_page``
        (mean) and ``seconds_total``; the raw totals ``words_tp``,
        ``words_pred``, ``words_gt``, ``cer_errors``, ``cer_chars``, ``det_tp``,
        ``det_pred``, ``det_gt``, ``det_pages``; ``word_box_coverage`` (covered over read
        exactly, :func:`word_box_counts`; None when no page has GT word boxes or no word was
        read) with ``word_boxes_read`` and ``word_boxes_covered``; ``order_cer``, the CER of the page
        texts in reading order (:func:`reading_order_counts`; None where no page's GT gives an order),
        with ``order_errors`` and ``order_chars``; ``line_recall``, the share of GT text lines some
        predicted line covers (:func:`line_recall_counts`, over the pages where detection is scored),
        with ``lines_found`` and ``lines_gt``; ``word_set_f1``, TurboOCR's metric: the mean over pages of
        the F1 of their sets of words (:func:`word_set_counts`). With no pages, every ratio is None.
    """
    n = len(scores)
    tp = sum(s.tp for s in scores)
    n_pred = sum(s.n_pred for s in scores)
    n_gt = sum(s.n_gt for s in scores)
    errors = sum(s.cer_errors for s in scores)
    chars = sum(s.cer_chars for s in scores)
    det_pages = [s for s in scores if s.det_scored]
    dtp = sum(s.det_tp for s in det_pages)
    dpred = sum(s.det_pred for s in det_pages)
    dgt = sum(s.det_gt for s in det_pages)
    seconds = sum(s.seconds for s in scores)
    box_read = sum(s.box_read for s in scores)
    box_covered = sum(s.box_covered for s in scores)
    order_errors = sum(s.order_errors for s in scores)
    order_chars = sum(s.order_chars for s in scores)
    lines_found = sum(s.lines_found for s in det_pages)
    lines_gt = sum(s.lines_gt for s in det_pages)
    wp, wr, wf = _prf(tp, n_pred, n_gt) if n else (None, None, None)
    dp, dr, df = _prf(dtp, dpred, dgt) if det_pages else (None, None, None)
    return {
        "pages": n,
        "word_precision": wp,
        "word_recall": wr,
        "word_f1": wf,
        "word_f1_mean": sum(s.f1 for s in scores) / n if n else None,
        "word_set_f1": sum(s.set_f1 for s in scores) / n if n else None,
        "cer": _ratio_cer(errors, chars) if n else None,
        "det_precision": dp,
        "det_recall": dr,
        "det_hmean": df,
        "line_recall": lines_found / lines_gt if lines_gt else None,
        "lines_found": lines_found,
        "lines_gt": lines_gt,
        "seconds_per_page": seconds / n if n else None,
        "seconds_total": seconds,
        "words_tp": tp,
        "words_pred": n_pred,
        "words_gt": n_gt,
        "cer_errors": errors,
        "cer_chars": chars,
        "det_tp": dtp,
        "det_pred": dpred,
        "det_gt": dgt,
        "det_pages": len(det_pages),
        "word_box_coverage": box_covered / box_read if box_read else None,
        "word_boxes_read": box_read,
        "word_boxes_covered": box_covered,
        "order_cer": _ratio_cer(order_errors, order_chars) if order_chars else None,
        "order_errors": order_errors,
        "order_chars": order_chars,
    }
