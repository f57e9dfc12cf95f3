"""Detection post-processing, recognition decoding and batching, reading order: known answers."""

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import DetectionConfig, FolioConfig
from pipeline.models.detection import STRIDE, DBPostProcessor, DetectionPreprocessor, order_quad
from pipeline.imaging.geometry import crop_band, crop_quad, crop_with_frame
from pipeline.models.recognition import CTCDecoder, plan_buckets
from pipeline.stages.layout import order_lines
from pipeline.types import Line, PageImage, Word


def _read(readings) -> list[tuple[str, float]]:
    """(text, confidence) of each reading."""
    return [(r.text, r.confidence) for r in readings]

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _map_with_rectangles(shape, rects, value=0.9):
    prob = np.zeros(shape, np.float32)
    for x0, y0, x1, y1 in rects:
        prob[y0:y1, x0:x1] = value
    return prob


def test_db_finds_each_rectangle_and_unclips_it():
    # DB predicts shrunk kernels; unclip grows them back by area * ratio / perimeter.
    prob = _map_with_rectangles((200, 400), [(50, 40, 250, 60), (60, 120, 160, 150)])
    boxes, scores, _ = DBPostProcessor(DetectionConfig())(prob, scale=1.0, page_hw=(200, 400))
    assert len(boxes) == 2
    boxes = boxes[np.argsort(boxes[:, 0, 1])]
    (x0, y0), (x1, y1) = boxes[0].min(axis=0), boxes[0].max(axis=0)
    w, h = 200, 20
    d = w * h * 1.6 / (2 * (w + h))  # unclip distance for the 200x20 kernel
    assert x0 == pytest.approx(50 - d, abs=2.5) and x1 == pytest.approx(250 + d, abs=2.5)
    assert y0 == pytest.approx(40 - d, abs=2.5) and y1 == pytest.approx(60 + d, abs=2.5)
    assert np.all(scores > 0.85)


def test_db_scales_boxes_back_to_page_pixels_and_clips():
    prob = _map_with_rectangles((100, 100), [(0, 10, 50, 20)])
    boxes, _, _ = DBPostProcessor(DetectionConfig())(prob, scale=0.5, page_hw=(200, 200))
    assert boxes[..., 0].min() == 0  # clipped at the page edge
    d = 50 * 10 * 1.6 / (2 * (50 + 10))  # unclip distance in map pixels
    assert boxes[..., 0].max() == pytest.approx((50 + d) / 0.5, abs=2.5)


def test_db_thresholds_drop_faint_and_tiny_regions():
    prob = _map_with_rectangles((100, 200), [(10, 10, 150, 30)], value=0.4)  # above thresh, below box_thresh
    prob[60:62, 10:12] = 0.95  # 2x2 speck: below min_size
    boxes, scores, _ = DBPostProcessor(DetectionConfig())(prob, 1.0, (100, 200))
    assert len(boxes) == 0 and len(scores) == 0
    lenient = DBPostProcessor(DetectionConfig(box_thresh=0.3))
    assert len(lenient(prob, 1.0, (100, 200))[0]) == 1


def test_a_bent_line_is_scored_on_its_outline_not_its_rectangle():
    """A line bending up towards a book's spine: its minimum-area rectangle is mostly paper, so scored on
    the rectangle (score_mode: box) it falls below box_thresh and vanishes; scored on its own outline, it stays."""
    import cv2

    prob = np.zeros((300, 600), np.float32)
    xs = np.arange(20, 580)
    ys = 60 + 180 * ((580 - xs) / 560) ** 2  # rises 180 px over the line's length
    pts = np.stack([xs, ys], 1).round().astype(np.int32)
    cv2.polylines(prob, [pts], False, 0.9, thickness=10)
    assert len(DBPostProcessor(DetectionConfig(score_mode="box"))(prob, 1.0, (300, 600))[0]) == 0
    boxes, scores, bands = DBPostProcessor(DetectionConfig(score_mode="contour"))(prob, 1.0, (300, 600))
    assert len(boxes) == 1 and scores[0] > 0.8
    assert DetectionConfig().score_mode == "contour"
    # its outline goes with it, and the line is cut along it: straightened, the ink runs along the crop's middle
    assert bands[0] is not None and DBPostProcessor(DetectionConfig(bent_lines="rect"))(prob, 1.0, (300, 600))[2] == (None,)
    page = np.full((300, 600, 3), 255, np.uint8)
    cv2.polylines(page, [pts], False, (0, 0, 0), thickness=6)
    crop, frame = crop_band(page, boxes[0], bands[0])
    straight, _ = crop_with_frame(page, boxes[0])
    assert crop.shape[0] < 0.3 * straight.shape[0] and crop.shape[1] == pytest.approx(straight.shape[1], rel=0.05)
    ink_rows = [np.flatnonzero(crop[:, x, 0] < 128).mean() for x in range(20, crop.shape[1] - 20, 40)]
    assert max(ink_rows) - min(ink_rows) < 4  # the bend is gone
    middle = frame.to_page(np.array([[x, crop.shape[0] / 2] for x in range(20, crop.shape[1] - 20, 40)]))
    curve_y = 60 + 180 * ((580 - middle[:, 0]) / 560) ** 2
    assert np.abs(middle[:, 1] - curve_y).max() < 4  # and its frame puts the crop back on the bend
    straight_band = DBPostProcessor(DetectionConfig())(_map_with_rectangles((200, 400), [(50, 40, 250, 60)]), 1.0,
                                                        (200, 400))
    assert straight_band.bands == (None,)  # a straight line is cut as before


def test_db_empty_map_gives_empty_arrays():
    boxes, scores, _ = DBPostProcessor(DetectionConfig())(np.zeros((64, 64), np.float32), 1.0, (64, 64))
    assert boxes.shape == (0, 4, 2) and scores.shape == (0,)


def test_order_quad_is_clockwise_from_top_left():
    quad = np.array([[10, 20], [0, 0], [0, 20], [10, 0]], np.float32)
    np.testing.assert_array_equal(order_quad(quad), [[0, 0], [10, 0], [10, 20], [0, 20]])


def test_preprocessor_keeps_aspect_and_pads_to_stride():
    pre = DetectionPreprocessor(DetectionConfig(min_side_len=100, max_side_len=1000))
    image = np.full((500, 3000, 3), 255, np.uint8)
    out = pre(image)
    assert out.scale == pytest.approx(1000 / 3000)
    assert out.valid_hw == (167, 1000)
    assert out.tensor.shape == (1, 3, 192, 1024)
    assert out.tensor.shape[2] % STRIDE == 0 and out.tensor.shape[3] % STRIDE == 0
    assert out.tensor.max() == pytest.approx(1.0) and out.tensor.min() == pytest.approx(1.0)  # padded in paper colour
    with pytest.raises(ValueError, match="RGB uint8"):
        pre(np.zeros((10, 10), np.uint8))


def test_preprocessor_upscales_small_pages():
    pre = DetectionPreprocessor(DetectionConfig(min_side_len=736, max_side_len=2000))
    assert pre.scale_for(368, 500) == pytest.approx(2.0)
    assert pre.scale_for(100, 1900) == pytest.approx(2000 / 1900)  # max side wins


def test_ctc_collapses_repeats_and_drops_blanks():
    decoder = CTCDecoder(["a", "b", "c"])  # classes: 0 blank, 1 a, 2 b, 3 c, 4 space
    seq = [1, 1, 0, 1, 2, 4, 4, 3, 0]  # a a _ a b ' ' ' ' c _ -> "aab c"
    probs = np.full((1, len(seq), 5), 0.025, np.float32)
    for t, k in enumerate(seq):
        probs[0, t, k] = 0.9
    [(text, conf)] = _read(decoder(probs))
    assert text == "aab c"
    assert conf == pytest.approx(0.9)


def test_ctc_all_blank_is_empty_with_zero_confidence():
    probs = np.zeros((2, 4, 5), np.float32)
    probs[:, :, 0] = 1.0
    assert _read(CTCDecoder(["a", "b", "c"])(probs)) == [("", 0.0), ("", 0.0)]


def _one_hot(seq, classes=5):
    probs = np.full((1, len(seq), classes), 0.025, np.float32)
    for t, k in enumerate(seq):
        probs[0, t, k] = 0.9
    return probs


def test_ctc_space_gap_inserts_space_at_wide_blank_run():
    # a _ b _ c (6 blanks) a _ b: typical gap 1 frame, one gap of 6
    seq = [1, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 1, 0, 2]
    assert CTCDecoder(["a", "b", "c"])(_one_hot(seq))[0][0] == "abcab"
    [(text, conf)] = _read(CTCDecoder(["a", "b", "c"], space_gap=3.0)(_one_hot(seq)))
    assert text == "abc ab"
    assert conf == pytest.approx(0.9)  # confidence is over emitted characters only
    assert CTCDecoder(["a", "b", "c"], space_gap=8.0)(_one_hot(seq))[0][0] == "abcab"  # gap not wide enough
    assert CTCDecoder(["a", "b", "c"], space_gap=0)(_one_hot(seq))[0][0] == "abcab"  # 0 disables


def test_ctc_space_gap_keeps_model_spaces_and_short_lines():
    decoder = CTCDecoder(["a", "b", "c"], space_gap=2.0)
    # the model already put a space in the wide gap: no second space
    assert decoder(_one_hot([1, 0, 2, 0, 4, 0, 0, 0, 0, 0, 3, 0, 1, 0, 2, 0, 3]))[0][0] == "ab cabc"
    # too few character pairs for a typical gap: unchanged
    assert decoder(_one_hot([1, 0, 0, 0, 0, 0, 0, 2]))[0][0] == "ab"
    # repeated frames of one character are not a gap
    assert decoder(_one_hot([1, 1, 1, 1, 0, 2, 0, 3, 0, 1, 1, 1, 1, 1, 0, 2]))[0][0] == "abcab"


def test_ctc_space_prob_inserts_space_the_model_nearly_emitted():
    seq = [1, 0, 2, 0, 0, 3, 0, 1]  # "abca"
    probs = _one_hot(seq)
    probs[0, 4, 4] = 0.3  # space is runner-up in the blank run between b and c
    assert CTCDecoder(["a", "b", "c"])(probs)[0][0] == "abca"
    [(text, conf)] = _read(CTCDecoder(["a", "b", "c"], space_prob=0.1)(probs))
    assert text == "ab ca" and conf == pytest.approx(0.9)
    assert CTCDecoder(["a", "b", "c"], space_prob=0.5)(probs)[0][0] == "abca"
    probs[0, 5, 4] = 0.3  # on a character frame, not in a gap: ignored
    probs[0, 4, 4] = 0.025
    assert CTCDecoder(["a", "b", "c"], space_prob=0.1)(probs)[0][0] == "abca"


def test_ctc_min_word_prob_drops_words_with_an_unsure_character():
    decoder = CTCDecoder(["a", "b", "c"])
    seq = [1, 0, 2, 4, 3, 1, 4, 2, 2, 0, 3]  # "ab ca bc"
    probs = _one_hot(seq)
    probs[0, 4, 3] = 0.4  # the "c" of "ca" is unsure
    assert decoder(probs)[0][0] == "ab ca bc"
    [(text, conf)] = _read(decoder(probs, min_word_prob=0.5))
    assert text == "ab bc"
    assert conf == pytest.approx(0.9)  # over the characters kept
    assert decoder(probs, min_word_prob=0.3) == decoder(probs)  # nothing dropped: as without the option
    assert _read(decoder(probs, min_word_prob=0.95)) == [("", 0.0)]  # every word dropped
    # spaces decoding inserts separate words too, and best-class decoding reads the same
    spaced = CTCDecoder(["a", "b", "c"], space_prob=0.1)
    seq = [1, 0, 2, 0, 0, 3, 0, 1]  # "ab" (a near space) "ca"
    probs = _one_hot(seq)
    probs[0, 4, 4] = 0.3
    probs[0, 0, 1] = 0.45
    assert _read(spaced(probs, min_word_prob=0.5)) == [("ca", pytest.approx(0.9))]
    best = probs.argmax(axis=2)
    best_p = probs.max(axis=2)
    assert spaced.decode_best(best, best_p, probs[:, :, 4], 0.5) == spaced(probs, min_word_prob=0.5)


def test_the_stage_corrects_and_drops_words_but_the_dewarp_check_reads_them_as_they_are(monkeypatch):
    """recognition.lexicon and min_word_confidence apply to the stage's lines; the orientation check,
    which compares whole readings both ways up, gets the model's own reading."""
    from pipeline.models.bundle import OcrModels
    from pipeline.models.recognition import ALTERNATIVES, Reading
    from pipeline.stages.dewarp import DewarpStage
    from pipeline.stages.ocr import OcrStage

    config = FolioConfig.model_validate({"recognition": {"min_word_confidence": 0.7}})
    models = OcrModels.load(config)
    stage, dewarp = OcrStage(config, models), DewarpStage(config, models)
    seen = []
    monkeypatch.setattr(models.recognizer.decode, "decode_best",
                        lambda *args: seen.append(args[3:]) or [Reading("x", 1.0)] * len(args[0]))
    crop = np.full((48, 200, 3), 255, np.uint8)
    stage._recognize([crop])
    dewarp.dewarper.recognize([crop])
    (min_word, alternatives, lexicon), dewarp_args = seen
    assert min_word == 0.7 and lexicon.languages == ("en",)
    assert [a.shape[2] for a in alternatives] == [ALTERNATIVES, ALTERNATIVES]
    assert dewarp_args == (None, None, None)


def _lexicon(*words, min_prob=0.05):
    from pipeline.models.lexicon import Lexicon

    return Lexicon(("test",), frozenset(words), min_prob)


def test_lexicon_corrects_one_character_to_make_a_word():
    lexicon = _lexicon("manuscript", "date", "cat", "car")

    def correct(word, alts):
        chars = list(word)
        return lexicon.correct(chars, [0.9] * len(chars), [alts.get(i, []) for i in range(len(chars))])

    assert correct("Maruscript", {2: [("n", 0.3)]}) == (list("Manuscript"), [0.9, 0.9, pytest.approx(1.0)] + [0.9] * 7)
    fixed, probs = correct("(OATE:", {1: [("D", 0.2)], 4: [("F", 0.4)]})
    assert "".join(fixed) == "(DATE:" and probs[1] == pytest.approx(1.0)  # punctuation kept around the word
    assert correct("Manuscript", {2: [("x", 0.3)]}) is None  # a word already (case-insensitive)
    assert correct("c4t", {1: [("a", 0.4)]}) is None  # holds a digit
    assert correct("ct", {0: [("a", 0.4)]}) is None  # too short
    assert correct("cxr", {0: [("z", 0.4)]}) is None  # no single replacement makes a word
    # of two replacements that make words, the one the model found likelier against what it replaces
    chars = list("cax")
    fixed, _ = lexicon.correct(chars, [0.9, 0.9, 0.5], [[], [], [("t", 0.2), ("r", 0.3)]])
    assert "".join(fixed) == "car"


def test_lexicon_languages_and_the_shipped_word_lists():
    from pipeline.config import RecognitionConfig
    from pipeline.models.lexicon import load_lexicon, parse_languages

    assert parse_languages("en+FR+en") == ("en", "fr")
    assert parse_languages(None) == parse_languages("") == ()
    with pytest.raises(ValueError, match="xx"):
        parse_languages("en+xx")
    assert RecognitionConfig(lexicon="EN").lexicon == "en"
    assert RecognitionConfig(lexicon="").lexicon is None
    with pytest.raises(Exception, match="no word list for xx"):
        RecognitionConfig(lexicon="xx")
    assert load_lexicon(None) is None
    english = load_lexicon("en", 0.1)
    assert "Manuscript" in english and "maruscript" not in english and english.min_prob == 0.1


def test_ctc_lexicon_corrects_a_misread_word_from_full_and_best_class_outputs():
    decoder = CTCDecoder(["c", "a", "t", "r"])  # 0 blank, 1 c, 2 a, 3 t, 4 r, 5 space
    seq = [1, 0, 4, 0, 3]  # "crt"; at the r frame, "a" is the runner-up
    probs = _one_hot(seq, classes=6)
    probs[0, 2, 4], probs[0, 2, 2] = 0.6, 0.3
    lexicon = _lexicon("cat")
    assert decoder(probs)[0][0] == "crt"
    [(text, conf)] = _read(decoder(probs, lexicon=lexicon))
    assert text == "cat" and conf == pytest.approx(0.9)  # the corrected character counts 0.6 + 0.3
    assert decoder(probs, lexicon=_lexicon("cat", min_prob=0.5)) == decoder(probs)  # runner-up too unlikely
    # the engine's best-class outputs with alternatives read the same
    order = np.argsort(-probs, axis=2, kind="stable")
    alternatives = (order[:, :, 1:3], np.take_along_axis(probs, order[:, :, 1:3], axis=2))
    best, best_p = probs.argmax(axis=2), probs.max(axis=2)
    assert _read(decoder.decode_best(best, best_p, probs[:, :, 5], None, alternatives, lexicon)) == [("cat", conf)]
    # the word filter comes after the correction: the corrected word is sure enough to stay
    assert decoder(probs, min_word_prob=0.7, lexicon=lexicon)[0][0] == "cat"
    assert decoder(probs, min_word_prob=0.7)[0][0] == ""


def test_recognition_config_space_defaults():
    from pipeline.config import RecognitionConfig

    assert RecognitionConfig().space_gap is None  # gap width alone did not help on FUNSD/SROIE
    assert RecognitionConfig().space_prob == pytest.approx(0.1)


def test_ctc_rejects_mismatched_charset():
    with pytest.raises(ValueError, match="charset"):
        CTCDecoder(["a"])(np.zeros((1, 3, 5), np.float32))


def test_ctc_charset_never_emits_a_class_outside_it():
    decoder = CTCDecoder(["a", "中", "b"], "latin")  # classes: 0 blank, 1 a, 2 中, 3 b, 4 space
    probs = _one_hot([1, 0, 2, 0, 3])
    probs[0, 2, 3] = 0.5  # 中 wins the frame, b is the best class the charset allows
    assert CTCDecoder(["a", "中", "b"])(probs)[0][0] == "a中b"
    assert decoder(probs)[0][0] == "abb"
    assert decoder.kept_classes() == [0, 1, 3, 4]
    assert CTCDecoder(["a", "b"], "latin").kept_classes() is None  # every class allowed


def test_ctc_restricted_decoder_reads_a_cut_head_as_the_full_one_reads_the_whole():
    """A model whose head outputs only the kept classes (softmax over them) decodes to the same text
    as the full model with the charset's mask."""
    decoder = CTCDecoder(["a", "中", "b"], "latin", space_prob=0.1)
    probs = _one_hot([1, 0, 2, 0, 3, 0, 0, 1])
    probs[0, 2, 3] = 0.5
    probs[0, 5, 4] = 0.3
    keep = decoder.kept_classes()
    cut = probs[:, :, keep] / probs[:, :, keep].sum(axis=2, keepdims=True)
    restricted = decoder.restricted(keep)
    assert list(restricted.characters) == ["", "a", "b", " "]
    assert [r.text for r in restricted(cut)] == [r.text for r in decoder(probs)] == ["abb a"]
    with pytest.raises(ValueError, match="blank"):
        decoder.restricted([1, 3, 4])


def _head_model(classes: int = 6, features: int = 4):
    """A tiny ONNX model ending as PP-OCR recognition does: MatMul -> Add -> Softmax -> Identity."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.normal(size=(features, classes)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=classes).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"], name="head"),
        helper.make_node("Add", ["logits", "b"], ["biased"]),
        helper.make_node("Softmax", ["biased"], ["probs"], axis=2),
        helper.make_node("Identity", ["probs"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", classes])], [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_select_classes_cuts_the_head_to_the_kept_classes():
    import onnxruntime as ort

    from pipeline.errors import ModelError
    from pipeline.models.graph import select_classes

    x = np.random.default_rng(4).normal(size=(2, 3, 4)).astype(np.float32)
    full_model = _head_model()
    full = ort.InferenceSession(full_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    keep = [0, 2, 5]
    cut_model = _head_model()
    select_classes(cut_model, keep)
    cut = ort.InferenceSession(cut_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert cut.shape == (2, 3, 3)
    expected = full[:, :, keep] / full[:, :, keep].sum(axis=2, keepdims=True)
    np.testing.assert_allclose(cut, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="below 6"):
        select_classes(_head_model(), [0, 6])
    headless = _head_model()
    headless.graph.node[2].op_type = "Relu"
    with pytest.raises(ModelError, match="MatMul -> Add -> Softmax"):
        select_classes(headless, keep)


def test_append_best_class_outputs_what_decoding_reads_of_the_full_output():
    """The graph's best class, its probability and the last class's probability equal numpy's
    argmax (first index on a tie), max and last column of the full output, with or without a cut head."""
    import onnxruntime as ort

    from pipeline.errors import ModelError
    from pipeline.models.graph import ALTERNATIVE_OUTPUTS, BEST_CLASS_OUTPUTS, append_best_class, select_classes

    def run(model, x):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    x = np.random.default_rng(5).normal(size=(3, 7, 4)).astype(np.float32)
    x[0, 0] = 0.0  # logits = bias alone in this frame; and a frame where two classes tie:
    tie = _head_model()
    w = tie.graph.initializer[0]
    from onnx import numpy_helper

    weights = numpy_helper.to_array(w).copy()
    weights[:, 4] = weights[:, 1]
    w.CopyFrom(numpy_helper.from_array(weights, "w"))
    b = numpy_helper.to_array(tie.graph.initializer[1]).copy()
    b[4] = b[1] = b.max() + 5.0
    tie.graph.initializer[1].CopyFrom(numpy_helper.from_array(b, "b"))
    import copy

    for model, keep in ((_head_model(), None), (_head_model(), [0, 2, 3, 5]), (tie, None)):
        if keep is not None:
            select_classes(model, keep)
        [full] = run(model, x)
        with_alternatives = copy.deepcopy(model)
        append_best_class(model)
        assert [o.name for o in model.graph.output] == list(BEST_CLASS_OUTPUTS)
        best, best_p, last_p = run(model, x)
        assert best.dtype == np.int64 and best.shape == best_p.shape == last_p.shape == (3, 7)
        np.testing.assert_array_equal(best, full.argmax(axis=2))
        np.testing.assert_array_equal(best_p, full.max(axis=2))
        np.testing.assert_array_equal(last_p, full[:, :, -1])
        # with alternatives, one TopK gives the same three and the next classes by falling probability
        append_best_class(with_alternatives, alternatives=2)
        assert [o.name for o in with_alternatives.graph.output] == list(BEST_CLASS_OUTPUTS + ALTERNATIVE_OUTPUTS)
        best2, best_p2, last_p2, alt, alt_p = run(with_alternatives, x)
        for a, b in ((best2, best), (best_p2, best_p), (last_p2, last_p)):
            np.testing.assert_array_equal(a, b)
        order = np.argsort(-full, axis=2, kind="stable")  # on a tie the lower class first
        np.testing.assert_array_equal(alt, order[:, :, 1:3])
        np.testing.assert_array_equal(alt_p, np.take_along_axis(full, order[:, :, 1:3], axis=2))
    assert (best[0] == 1).all()  # the tie between classes 1 and 4 goes to the first, as in numpy
    assert (alt[0, :, 0] == 4).all()  # and the other is the first alternative
    with pytest.raises(ModelError, match="alternatives"):
        append_best_class(_head_model(), alternatives=6)
    flat = _head_model()
    flat.graph.output[0].type.tensor_type.shape.dim.pop()
    with pytest.raises(ModelError, match="classes"):
        append_best_class(flat)


def test_flush_denormals_zeroes_subnormal_weights_and_keeps_the_outputs():
    import onnxruntime as ort
    from onnx import numpy_helper

    from pipeline.models.graph import flush_denormals

    model = _head_model()
    weights = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, :3] = [1e-40, -3e-39, 0.0]  # two subnormal float32s and a true zero
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, "w"))
    x = np.random.default_rng(6).normal(size=(2, 3, 4)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run(model)
    assert flush_denormals(model) == 2
    flushed = numpy_helper.to_array(model.graph.initializer[0])
    assert (flushed[0, :3] == 0).all()
    np.testing.assert_array_equal(flushed[1:], weights[1:])
    np.testing.assert_array_equal(run(model), before)
    assert flush_denormals(model) == 0
    half = np.array([1.0, 1e-7, -3e-6, 0.0, 6.2e-5], np.float16)  # 1e-7 and -3e-6 are subnormal in float16
    model.graph.initializer.append(numpy_helper.from_array(half, "h"))
    assert flush_denormals(model) == 2
    assert numpy_helper.to_array(model.graph.initializer[-1]).tolist() == [1.0, 0.0, 0.0, 0.0, half[4]]


def test_flush_denormals_finds_them_where_the_cpu_treats_subnormals_as_zero():
    """A session built with ONNX Runtime's set_denormal_as_zero leaves its thread reading every
    subnormal as 0 for good; flush_denormals finds them by their bits, so it works there too.
    (In a subprocess, so that this test's own thread stays as it was.)"""
    import subprocess
    import sys

    code = """
import numpy as np, onnxruntime as ort
from onnx import helper, numpy_helper, TensorProto
w = np.ones((4, 2), np.float32); w[0, 0] = 1e-40
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [numpy_helper.from_array(w, "w")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
options = ort.SessionOptions()
options.add_session_config_entry("session.set_denormal_as_zero", "1")
ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
from pipeline.models.graph import flush_denormals
print(bool(np.float32(1e-40) != 0), flush_denormals(model))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "1"]  # a comparison sees the weight as 0 already; its bits do not


def test_the_detection_engine_runs_the_shipped_model_flushed_with_the_same_output(caplog):
    """PP-OCRv6's detection model holds subnormal weights, which cost CPU time and nothing else;
    the engine flushes them and returns what ONNX Runtime returns on the file as it is."""
    import onnxruntime as ort

    from pipeline.models.engine import OnnxRuntimeEngine
    from pipeline.models.graph import flush_denormals
    from pipeline.models.zoo import load_onnx
    from pipeline.models.bundle import model_files

    config = FolioConfig()
    det = model_files(config)["detection"]
    assert flush_denormals(load_onnx(det)) > 100_000
    x = np.random.default_rng(7).random((1, 3, 96, 128), dtype=np.float32)
    plain = ort.InferenceSession(str(det.path), providers=["CPUExecutionProvider"])
    expected = plain.run(None, {plain.get_inputs()[0].name: x})[0]
    with caplog.at_level(logging.DEBUG, logger="pipeline.models.engine"):
        engine = OnnxRuntimeEngine(det, config.engine)
    assert any("subnormal weights set to zero" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(engine(x), expected, rtol=1e-5, atol=1e-6)


def test_ctc_decode_best_reads_as_the_full_probabilities_read():
    rng = np.random.default_rng(6)
    probs = rng.dirichlet(np.full(5, 0.3), size=(4, 30)).astype(np.float32)
    decoder = CTCDecoder(["a", "b", "c"], space_prob=0.1)
    best = probs.argmax(axis=2)
    assert decoder.decode_best(best, probs.max(axis=2), probs[:, :, 4]) == decoder(probs)
    with pytest.raises(ValueError, match="out of range"):
        decoder.decode_best(best + 5, probs.max(axis=2), probs[:, :, 4])
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        decoder.decode_best(best[:, :3], probs.max(axis=2), probs[:, :, 4])


@pytest.mark.skipif(not DEJAVU.is_file(), reason="DejaVuSans.ttf is not installed")
def test_a_restricted_charset_runs_a_cut_recognition_head():
    """recognition.charset=latin builds the model with only the latin classes in its head, and a
    clean printed line reads the same as with the whole head."""
    from PIL import Image, ImageDraw, ImageFont

    from pipeline.config import load_config
    from pipeline.models.bundle import OcrModels

    line = Image.new("RGB", (760, 56), "white")
    ImageDraw.Draw(line).text((10, 8), "Invoice No. 4711 total EUR 128.50", font=ImageFont.truetype(str(DEJAVU), 32),
                              fill="black")
    crops = [np.asarray(line)]
    whole = OcrModels.load(load_config(overrides={"recognition.charset": "all"}, environ={})).recognizer
    latin = OcrModels.load(load_config(overrides={"recognition.charset": "latin"}, environ={})).recognizer
    assert whole.engine.classes is None
    assert whole.engine.best_class and latin.engine.best_class  # the stage's engines return best classes
    assert latin.engine.classes is not None and 100 < len(latin.engine.classes) < 2000
    assert len(latin.decode.characters) == len(latin.engine.classes)
    assert latin(crops)[0][0] == whole(crops)[0][0] == "Invoice No. 4711 total EUR 128.50"


def test_buckets_cover_every_crop_once_and_pad_each_crop_by_its_own_width():
    from pipeline.models.recognition import padded_width

    rng = np.random.default_rng(0)
    widths = rng.integers(20, 2000, size=200).tolist()
    batches = plan_buckets(widths, batch_size=16, max_batch_pixels=48 * 4000 * 16, width_step=32, height=48, min_width=128)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 16
        assert len({padded_width(widths[i], 128, 32) for i in b}) == 1  # one padded width per batch
    assert padded_width(100, 128, 32) == 128 and padded_width(129, 128, 32) == 160 and padded_width(160, 128, 32) == 160


def test_buckets_respect_pixel_cap():
    batches = plan_buckets([3000] * 10, batch_size=32, max_batch_pixels=48 * 3008 * 3, width_step=32, height=48)
    assert [len(b) for b in batches] == [3, 3, 3, 1]


def test_recognition_does_not_depend_on_batch_company():
    """A line reads identically alone and batched with others (runners batch pages differently)."""
    import cv2

    from pipeline.models.bundle import OcrModels

    recognizer = OcrModels.load(FolioConfig()).recognizer
    crop = np.full((40, 300, 3), 255, np.uint8)
    cv2.putText(crop, "Total 118.40", (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    other = np.full((40, 320, 3), 255, np.uint8)
    cv2.putText(other, "Subtotal 99.9", (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    alone = recognizer([crop])[0]
    together = recognizer([other, crop, other[:, :200]])[1]
    assert alone.text == together.text
    assert alone.confidence == pytest.approx(together.confidence, abs=1e-5)  # BLAS may block a batch differently
    assert [(w.text, w.start, w.end) for w in alone.words] == [(w.text, w.start, w.end) for w in together.words]


def test_crop_quad_straightens_a_rotated_rectangle():
    import cv2

    image = np.full((200, 300, 3), 255, np.uint8)
    rect = ((150, 100), (160, 40), 10.0)
    quad = order_quad(cv2.boxPoints(rect))
    cv2.fillPoly(image, [quad.round().astype(np.int32)], (0, 0, 0))
    crop = crop_quad(image, quad)
    assert abs(crop.shape[1] - 160) <= 2 and abs(crop.shape[0] - 40) <= 2
    assert crop[5:-5, 5:-5].mean() < 30  # all ink: the rectangle came out axis-aligned


def test_crop_quad_turns_vertical_text():
    image = np.zeros((300, 100, 3), np.uint8)
    crop = crop_quad(image, np.array([[10, 10], [40, 10], [40, 250], [10, 250]], np.float32))
    assert crop.shape[1] > crop.shape[0]


def _quad(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _line(text, conf, x0, y0, x1, y1) -> Line:
    return Line(text, conf, tuple((float(x), float(y)) for x, y in _quad(x0, y0, x1, y1)))


def test_reading_order_rows_then_columns_and_blocks():
    from pipeline.types import Page

    lines = [_line("right", 0.9, 300, 12, 400, 30), _line("left", 0.8, 10, 10, 200, 30),
             _line("second", 0.7, 10, 40, 200, 60), _line("far below", 0.6, 10, 200, 200, 220)]
    blocks, text = order_lines(lines)
    assert [[l.text for l in b.lines] for b in blocks] == [["left", "right", "second"], ["far below"]]
    assert text == "left right\nsecond\n\nfar below"
    assert blocks[0].lines[1].confidence == pytest.approx(0.9)
    assert blocks[0].polygon == ((10.0, 10.0), (400.0, 10.0), (400.0, 60.0), (10.0, 60.0))
    page = Page("k", "d", 0, blocks=blocks, text=text)
    assert [(b, i, l.text) for b, i, l in page.iter_lines()] == [
        (0, 0, "left"), (0, 1, "right"), (0, 2, "second"), (1, 3, "far below")]


def test_reading_order_empty():
    assert order_lines([]) == ((), "")


def test_default_config_models_resolve_with_hashes():
    from pipeline.models.bundle import model_files

    files = model_files(FolioConfig())
    # the line classifier is the dewarp step's quick way-up check; it does not flip recognised lines
    assert set(files) == {"detection", "recognition", "orientation"}
    assert all(len(f.sha256) == 64 for f in files.values())
    assert set(model_files(FolioConfig.model_validate({"dewarp": {"enabled": False}}))) == {"detection", "recognition"}


def test_corrupt_model_is_refused(tmp_path):
    from pipeline.errors import ModelError
    from pipeline.models.zoo import resolve_model

    (tmp_path / "PP-OCRv6_det_small.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="sha256"):
        resolve_model("PP-OCRv6_det_small.onnx", tmp_path)
    with pytest.raises(ModelError, match="never downloads"):
        resolve_model("missing.onnx", tmp_path)


def test_recognizer_reads_rendered_text():
    """The real models on a crop we render: the whole detect-crop-recognize path, no mocks."""
    import cv2

    from pipeline.stages.factory import create_page_stage

    page = np.full((200, 900, 3), 255, np.uint8)
    cv2.putText(page, "Invoice 2024-118 Total 1,234.56", (30, 110), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3)
    [out] = create_page_stage(FolioConfig())([PageImage("d", "d", 0, page)])
    assert out.status == "ok"
    assert out.text.replace(" ", "") == "Invoice2024-118Total1,234.56"
    assert out.lines[0].confidence > 0.8


def test_line_classifier_keeps_upright_text_and_turns_upside_down_text():
    """The optional 180-degree classifier (off by default) on real models."""
    import cv2

    from pipeline.config import load_config
    from pipeline.stages.factory import create_page_stage

    page = np.full((160, 900, 3), 255, np.uint8)
    cv2.putText(page, "Quarterly report 2024", (30, 100), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3)
    stage = create_page_stage(load_config(overrides={"classifier.enabled": True, "dewarp.enabled": False},
                                          environ={}))
    assert "classifier" in stage.models
    xs = {}
    for name, image in (("upright", page), ("upside down", np.ascontiguousarray(page[::-1, ::-1]))):
        [out] = stage([PageImage("d", "d", 0, image)])
        assert out.text.replace(" ", "") == "Quarterlyreport2024"
        # words read from a crop turned upright are placed where they are on the page as it came in
        xs[name] = [np.mean([x for x, _ in w.polygon]) for w in out.lines[0].words]
    assert xs["upright"] == sorted(xs["upright"]) and xs["upside down"] == sorted(xs["upside down"], reverse=True)


def test_split_at_gaps_cuts_wide_gaps_only():
    from pipeline.imaging.geometry import split_at_gaps

    crop = np.full((40, 600, 3), 255, np.uint8)
    crop[12:30, 10:100] = 0  # "Date:"
    crop[12:30, 115:200] = 0  # a normal word space (15 px) later on the same field
    crop[12:30, 320:450] = 0  # a field 120 px (3 line heights) further right
    crop[34:36, 100:320] = 0  # the underline between them, below the middle band
    quad = np.array([[100, 50], [700, 50], [700, 90], [100, 90]], np.float32)
    pieces = split_at_gaps(crop, quad, 1.5)
    assert len(pieces) == 2
    (left, lq, lx), (right, rq, rx) = pieces
    assert left.shape[1] < 230 and right.shape[1] < 160
    assert lq[0, 0] == pytest.approx(100 + 10 - 40 // 6) and rq[1, 0] <= 700 and rq[0, 0] > lq[1, 0]  # page coordinates
    assert lx == 10 - 40 // 6 and rx > lx + left.shape[1]  # where each piece starts in the crop
    assert split_at_gaps(crop, quad, 0) == [(crop, quad, 0)]  # disabled
    assert len(split_at_gaps(crop, quad, 4.0)) == 1  # gap narrower than 4 line heights


def test_split_at_gaps_leaves_blank_and_short_crops():
    from pipeline.imaging.geometry import split_at_gaps

    quad = np.zeros((4, 2), np.float32)
    blank = np.full((40, 600, 3), 255, np.uint8)
    assert len(split_at_gaps(blank, quad, 1.0)) == 1
    short = np.zeros((40, 60, 3), np.uint8)
    assert len(split_at_gaps(short, quad, 1.0)) == 1


def _text_page(lines: list[str], size=(900, 700)) -> np.ndarray:
    import cv2

    page = np.full((*size, 3), 250, np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(page, text, (30, 60 + 50 * k), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2)
    return page


def test_detection_in_batches_finds_what_it_finds_page_by_page():
    """Pages of one padded size share an engine call; each page's boxes are those it gets alone, and a
    page the engine fails on is that page's error, not its batch's."""
    from pipeline.models.bundle import OcrModels
    from pipeline.models.detection import TextDetector

    config = FolioConfig()
    engine = OcrModels.load(config).detector.engine
    pages = [_text_page(["Invoice 2291", "Total 118.40"]), _text_page(["Subtotal 99.90"] * 3),
             _text_page(["a different size"], size=(500, 800)), _text_page(["Tax 18.50", "Due 2024-01-31"])]
    alone = TextDetector(engine, config.detection, batch_pages=1).detect_many(pages)
    calls = []

    def counting(batch):
        calls.append(batch.shape[0])
        return engine(batch)

    counting.model = engine.model
    batched = TextDetector(counting, config.detection, batch_pages=8).detect_many(pages)
    assert sorted(calls) == [1, 3]  # three pages of one size in one call, the other alone
    for (a, _, _), (b, _, _) in zip(alone, batched):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a, b, atol=0.5)

    def failing(batch):  # refuses any batch holding the page filled with 1s at its corner
        if (batch[:, :, 0, 0] == 1.0).any():
            raise RuntimeError("engine refused the input")
        return engine(batch)

    bad = pages[0].copy()
    bad[0, 0] = 255  # (255 / 127.5 - 1) = 1.0 at the corner of the tensor
    results = TextDetector(failing, config.detection, batch_pages=8).detect_many([pages[1], bad, pages[3]])
    assert isinstance(results[1], RuntimeError)
    for k, ok in ((0, alone[1]), (2, alone[3])):
        np.testing.assert_allclose(results[k][0], ok[0], atol=0.5)


def test_pages_padded_to_a_size_multiple_share_a_shape():
    config = DetectionConfig(size_multiple=128)
    a = DetectionPreprocessor(config)(np.full((900, 700, 3), 255, np.uint8))
    b = DetectionPreprocessor(config)(np.full((910, 690, 3), 255, np.uint8))
    assert a.tensor.shape == b.tensor.shape and a.tensor.shape[2] % 128 == 0 == a.tensor.shape[3] % 128
    default = DetectionPreprocessor(DetectionConfig())
    assert default(np.full((900, 700, 3), 255, np.uint8)).tensor.shape != default(
        np.full((910, 690, 3), 255, np.uint8)).tensor.shape
    models = {"detection": "abc"}
    from pipeline.run import fingerprint
    from tests.conftest import fake_models

    base = fingerprint(FolioConfig(), fake_models(**models))
    assert fingerprint(FolioConfig(detection=DetectionConfig(size_multiple=32)), fake_models(**models)) == base
    assert fingerprint(FolioConfig(detection=DetectionConfig(size_multiple=128)), fake_models(**models)) != base
    assert fingerprint(FolioConfig(detection=DetectionConfig(batch_pages=4)), fake_models(**models)) == base


def _column_page(columns=3, rows=12, headline=True):
    """Lines of a newspaper page: a running header with a page number, a full-width headline, and
    ``columns`` columns of ``rows`` lines each, every column's lines on the same baselines."""
    lines = [_line("THE DAILY TIMES", 0.9, 40, 20, 300, 40), _line("7", 0.9, 1150, 20, 1165, 40)]
    if headline:
        lines.append(_line("Council votes on the new bridge", 0.9, 40, 80, 1160, 140))
    width = (1120 - 40 * (columns - 1)) / columns
    for c in range(columns):
        x0 = 40 + c * (width + 40)
        for r in range(rows):
            y0 = 180 + r * 30
            lines.append(_line(f"c{c}r{r} words of running text here", 0.9, x0, y0, x0 + width, y0 + 20))
    return lines


def test_reading_order_reads_each_column_to_its_end_before_the_next():
    import random

    lines = _column_page()
    shuffled = lines[:]
    random.Random(3).shuffle(shuffled)
    blocks, text = order_lines(shuffled, page_height=1600)
    order = [l.text for b in blocks for l in b.lines]
    assert order == [l.text for l in lines]  # header, page number, headline, column 0, 1, 2
    assert [b.kind for b in blocks] == ["header", "page-number", "heading", "text", "text", "text"]
    assert text.split("\n\n")[2] == "Council votes on the new bridge"
    assert "c0r0" in text.split("\n\n")[3] and "c1r0" not in text.split("\n\n")[3]
    # the same page read row by row interleaves the columns, as Folio did before
    rows_text = order_lines(shuffled, page_height=1600, reading_order="rows")[1]
    assert "c0r0 words of running text here c1r0" in rows_text


def test_a_line_that_crosses_a_gutter_is_cut_between_its_words():
    lines = _column_page(columns=2, headline=False)
    r5 = [i for i, l in enumerate(lines) if l.text.startswith("c0r5")][0]
    c1r5 = [i for i, l in enumerate(lines) if l.text.startswith("c1r5")][0]
    left, right = lines[r5], lines[c1r5]
    words = []
    for line in (left, right):  # the detector saw the two columns' lines as one
        x0, y0 = line.polygon[0]
        x1, y1 = line.polygon[2]
        parts = line.text.split()
        step = (x1 - x0) / len(parts)
        words += [Word(w, 0.9, tuple((float(x), float(y)) for x, y in _quad(x0 + k * step, y0, x0 + (k + 1) * step - 8, y1)))
                  for k, w in enumerate(parts)]
    merged = Line(left.text + " " + right.text, 0.9, tuple((float(x), float(y)) for x, y in _quad(
        left.polygon[0][0], left.polygon[0][1], right.polygon[2][0], right.polygon[2][1])), tuple(words))
    page_lines = [l for i, l in enumerate(lines) if i not in (r5, c1r5)] + [merged]
    blocks, text = order_lines(page_lines, page_height=1600)
    order = [l.text for b in blocks for l in b.lines]
    assert order.index(left.text) < order.index("c0r6 words of running text here") < order.index(right.text)
    assert left.text + " " + right.text not in text


def test_a_form_of_labels_and_values_is_read_row_by_row():
    labels = ["Name:", "Date:", "Phone:", "Account:"]
    values = ["John Smith", "12 March 1988", "555 0100", "4471-22"]
    lines = []
    for r, (label, value) in enumerate(zip(labels, values)):
        lines += [_line(label, 0.9, 40, 100 + 40 * r, 140, 120 + 40 * r), _line(value, 0.9, 400, 100 + 40 * r, 600, 120 + 40 * r)]
    text = order_lines(lines, page_height=1000)[1]
    assert text.splitlines()[:2] == ["Name: John Smith", "Date: 12 March 1988"]


def test_regions_recognition_reads_nothing_in_are_counted_on_the_page():
    """A detected line that reads as nothing (or below recognition.min_confidence) is not silently lost:
    the page says how many there were."""
    import cv2

    from pipeline.models.bundle import OcrModels
    from pipeline.models.recognition import Reading
    from pipeline.stages.ocr import OcrStage

    image = np.full((240, 900, 3), 255, np.uint8)
    for k, text in enumerate(("first line of text", "second line of text", "third line of text")):
        cv2.putText(image, text, (30, 60 + 70 * k), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3)
    config = FolioConfig()
    models = OcrModels.load(config)
    stage = OcrStage(config, models)
    [page] = stage([PageImage("k", "d", 0, image)])
    assert len(page.lines) == 3 and page.unread_regions == 0
    read = models.recognizer

    def lose_the_second(crops, word_steps=False):
        readings = read(crops, word_steps)
        order = sorted(range(len(crops)), key=lambda i: -crops[i].shape[1])  # the longest: "second ..."
        readings[order[0]] = Reading("", 0.0)
        return readings

    models.recognizer = lose_the_second
    [page] = stage([PageImage("k", "d", 0, image)])
    assert len(page.lines) == 2 and page.unread_regions == 1
    assert not any("second" in line.text for line in page.lines)
