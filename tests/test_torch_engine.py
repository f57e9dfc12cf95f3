"""The torch engine against ONNX Runtime: same models, same numbers, same text.

CPU only by default (torch comes with the dev extra); the CUDA half-precision
check is opt-in with ``-m gpu``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from pipeline.cli import EXIT_OK, main
from pipeline.config import DetectionConfig, EngineConfig, FolioConfig, load_config
from pipeline.errors import ModelError
from pipeline.models.detection import DetectionPreprocessor
from pipeline.models.engine import OnnxRuntimeEngine, create_engine, engine_label, resolve_engine, resolve_engine_name
from pipeline.models.recognition import CTCDecoder
from pipeline.models.torch_engine import TorchEngine, network_stride, rewrite_graph, torch_available
from pipeline.models.zoo import resolve_model
from pipeline.run import fingerprint, settle
from pipeline.stages.assemble import Assembler
from pipeline.types import DoneIndex, SourceDocument
from tests.conftest import fake_models

assert torch_available()  # imports torch the engine's way (idle OpenMP threads sleep; see torch_engine)
import torch  # noqa: E402

DET, REC, CLS = "PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
TORCH_CPU = EngineConfig(name="torch", device="cpu")
ORT = EngineConfig()


@pytest.fixture(scope="module")
def engines():
    """(ONNX Runtime, torch) engine per model, built once."""
    return {name: (OnnxRuntimeEngine(resolve_model(name), ORT), TorchEngine(resolve_model(name), TORCH_CPU))
            for name in (DET, REC, CLS)}


def _text_image(text: str, height: int, width: int, scale: float = 1.0) -> np.ndarray:
    image = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(image, text, (4, int(height * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 2, cv2.LINE_AA)
    return image


def _line_batch(texts: list[str], height: int, width: int) -> np.ndarray:
    """Line images normalised as recognition does ((x / 255 - 0.5) / 0.5), NCHW."""
    images = [_text_image(t, height, width, scale=1.1) for t in texts]
    return np.stack([im.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0 for im in images])


def _page_tensor() -> np.ndarray:
    page = np.full((320, 480, 3), 250, np.uint8)
    for i, line in enumerate(["INVOICE No. 2026-118", "Total due: 1,234.50 EUR", "Folio torch engine"]):
        cv2.putText(page, line, (20, 60 + 80 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (10, 10, 10), 2, cv2.LINE_AA)
    tensor = DetectionPreprocessor(DetectionConfig(min_side_len=320, max_side_len=480))(page).tensor
    assert tensor.shape == (1, 3, 320, 480)
    return tensor


def _max_diff(engines, name: str, inputs: np.ndarray) -> float:
    ort_engine, torch_engine = engines[name]
    expected, got = ort_engine(inputs), torch_engine(inputs)
    assert got.shape == expected.shape and got.dtype == np.float32
    return float(np.abs(expected - got).max())


# -- (1) numeric parity ---------------------------------------------------------------------------


def test_detection_matches_onnxruntime(engines):
    assert _max_diff(engines, DET, _page_tensor()) < 1e-3


def test_recognition_matches_onnxruntime_and_decodes_the_same(engines):
    batch = _line_batch(["Total 1,234.50", "INVOICE", "Folio", "2026-11-25"], 48, 320)
    assert batch.shape == (4, 3, 48, 320)
    assert _max_diff(engines, REC, batch) < 1e-3
    ort_engine, torch_engine = engines[REC]
    decoder = CTCDecoder.from_metadata(ort_engine.metadata())
    assert torch_engine.metadata() == ort_engine.metadata()  # the charset, read with the onnx package
    assert [r.text for r in decoder(torch_engine(batch))] == [r.text for r in decoder(ort_engine(batch))]


def test_a_cut_recognition_head_matches_onnxruntime_and_decodes_the_same():
    """recognition.charset=latin: both engines compute only the latin classes, and agree."""
    from pipeline.models.recognition import charset_classes

    model = resolve_model(REC)
    classes = charset_classes(model, "latin")
    ort_engine, torch_engine = OnnxRuntimeEngine(model, ORT, classes), TorchEngine(model, TORCH_CPU, classes)
    assert ort_engine.classes == torch_engine.classes == tuple(classes)
    batch = _line_batch(["Total 1,234.50", "INVOICE"], 48, 320)
    expected, got = ort_engine(batch), torch_engine(batch)
    assert got.shape == expected.shape == (2, 40, len(classes))
    assert float(np.abs(expected - got).max()) < 1e-3
    decoder = CTCDecoder.from_metadata(ort_engine.metadata(), "latin").restricted(classes)
    assert [r.text for r in decoder(got)] == [r.text for r in decoder(expected)]


def test_best_class_engines_return_what_the_full_output_decodes_to():
    """best_class (the stage's recognition engines): the best class, its probability and the space's
    probability per frame, as the engine's own full output holds them, in both engines; the decoder reads
    them as it reads the full output."""
    model = resolve_model(REC)
    batch = _line_batch(["Total 1,234.50", "INVOICE", "Folio"], 48, 320)
    decoder = CTCDecoder.from_metadata(OnnxRuntimeEngine(model, ORT).metadata())
    for engine_type, config in ((OnnxRuntimeEngine, ORT), (TorchEngine, TORCH_CPU)):
        full, reduced = engine_type(model, config), engine_type(model, config, best_class=True)
        assert reduced.best_class and not full.best_class
        probs = full(batch)
        best, best_p, space_p = reduced(batch)
        assert best.shape == best_p.shape == space_p.shape == probs.shape[:2]
        np.testing.assert_array_equal(best, probs.argmax(axis=2))
        np.testing.assert_allclose(best_p, probs.max(axis=2), rtol=1e-6)
        np.testing.assert_allclose(space_p, probs[:, :, -1], rtol=1e-6, atol=1e-9)
        assert decoder.decode_best(best, best_p, space_p) == decoder(probs)
        # with alternatives: each frame's next classes by falling probability, after the best
        alternates = engine_type(model, config, best_class=True, alternatives=3)
        assert alternates.alternatives == 3
        best2, _, _, alt_class, alt_p = alternates(batch)
        np.testing.assert_array_equal(best2, best)
        assert alt_class.shape == alt_p.shape == (*probs.shape[:2], 3)
        np.testing.assert_allclose(alt_p, -np.sort(-probs, axis=2)[:, :, 1:4], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(np.take_along_axis(probs, alt_class, axis=2), alt_p, rtol=1e-6, atol=1e-9)


def test_classifier_matches_onnxruntime(engines):
    batch = _line_batch(["upright", "line", "of", "text"], 48, 192)
    batch[2:] = batch[2:, :, ::-1, ::-1]  # two upside down
    assert _max_diff(engines, CLS, batch) < 1e-3


# -- (2) the rewrite and its precondition ---------------------------------------------------------


def test_same_pads_become_explicit_pads():
    import onnx

    model = onnx.load(str(resolve_model(DET).path))
    rewrites = rewrite_graph(model)
    assert rewrites["same_pads"] == 3  # two Conv and one MaxPool, 2x2 kernels at stride 1
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    assert network_stride(model) == (32, 32)


def test_inputs_off_the_network_stride_are_refused(engines):
    _, det = engines[DET]
    with pytest.raises(ValueError, match=r"330 x 480 must be multiples of 32 x 32"):
        det(np.zeros((1, 3, 330, 480), np.float32))
    _, rec = engines[REC]
    with pytest.raises(ValueError, match=r"multiples of 48 x 8"):
        rec(np.zeros((1, 3, 48, 100), np.float32))
    with pytest.raises(ValueError, match="float32 NCHW"):
        det(np.zeros((3, 320, 480), np.float32))


def test_a_second_engine_reuses_the_converted_module(engines):
    again = TorchEngine(resolve_model(DET), TORCH_CPU)
    assert again._module is engines[DET][1]._module


def test_missing_torch_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # import fails as if not installed
    with pytest.raises(ModelError, match=r"pip install 'folio\[torch\]'"):
        TorchEngine(resolve_model(CLS), TORCH_CPU)


# -- (3) the same text end to end -----------------------------------------------------------------


def _page_texts(dest: Path) -> dict[tuple[str, int], str]:
    docs = {r["doc_id"]: Path(r["source_uri"]).name
            for r in ds.dataset(dest / "documents", partitioning="hive").to_table().to_pylist()}
    return {(docs[r["doc_id"]], r["page_index"]): r["text"]
            for r in ds.dataset(dest / "pages", partitioning="hive").to_table().to_pylist()}


@pytest.fixture(scope="module")
def invoices(scans) -> Path:
    return scans(("invoice", 3, 1, ("png",), False), dpi=100)


def _run(src: Path, dest: Path, *args: str) -> dict[tuple[str, int], str]:
    result = CliRunner().invoke(main, ["run", str(src), str(dest), "--exclude", "*.json", "--quiet", *args],
                                catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    return _page_texts(dest)


def test_folio_run_reads_the_same_text_with_torch(invoices, tmp_path):
    onnx_texts = _run(invoices, tmp_path / "ort", "--engine", "onnxruntime")
    torch_texts = _run(invoices, tmp_path / "torch", "--engine", "torch", "--set", "engine.device=cpu")
    assert len(onnx_texts) == 3 and all(onnx_texts.values())
    assert torch_texts == onnx_texts


# -- (4) engine names and fingerprints ------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks torch where CUDA is present")
def test_auto_is_onnxruntime_without_cuda():
    assert resolve_engine_name(EngineConfig(name="auto")) == "onnxruntime"
    auto = load_config(overrides={"engine.name": "auto"}, environ={})
    plain = FolioConfig()
    assert fingerprint(auto, fake_models(detection="abc")) == fingerprint(plain, fake_models(detection="abc"))
    engine = create_engine(resolve_model(CLS), auto.engine)
    assert isinstance(engine, OnnxRuntimeEngine)


def test_auto_never_picks_torch_on_cpu_device():
    assert resolve_engine_name(EngineConfig(name="auto", device="cpu")) == "onnxruntime"
    assert resolve_engine_name(EngineConfig(name="torch")) == "torch"


def test_fingerprint_tracks_torch_precision_not_threads_or_device():
    def fp(**engine):
        overrides = {f"engine.{k}": v for k, v in engine.items()}
        return fingerprint(load_config(overrides=overrides, environ={}), fake_models(detection="abc"))

    fp32 = fp(name="torch", device="cpu")
    assert fp(name="torch", device="cpu", dtype="float32", intra_op_threads=7, compile=True) == fp32
    assert fp(name="torch", device="cuda", dtype="float32") == fp32
    assert fp(name="torch", device="cpu", dtype="float16") != fp32
    assert fp(name="torch", device="cuda") != fp32  # float16 by default on CUDA
    assert fp(name="onnxruntime") != fp32
    assert fp(name="onnxruntime", dtype="float16", device="cuda") == fp(name="onnxruntime")


def test_the_engine_of_gpu_actors_is_resolved_for_them_not_for_the_driver():
    """A CPU-only driver (a Ray head, a flow pod) plans a run whose OCR actors hold a GPU: the
    config, the fingerprint and the ``engine`` column say torch on CUDA in float16, what the
    actors compute, never float32 on the driver's CPU."""
    models = fake_models(detection="abc")
    config = load_config(overrides={"ray.ocr_num_gpus": 1}, environ={})
    planned = settle(config, "ray")  # no cluster is asked: the config says the actors' GPUs
    assert (planned.engine.name, planned.engine.device, planned.engine.dtype) == ("torch", "cuda", "float16")
    assert settle(planned, "ray") == planned == resolve_engine(planned)  # a resolved config stays as it is
    gpu = load_config(overrides={"engine.name": "torch", "engine.device": "cuda", "engine.dtype": "float16"},
                      environ={})
    assert fingerprint(planned, models) == fingerprint(gpu, models)
    if not torch.cuda.is_available():
        assert fingerprint(planned, models) != fingerprint(settle(config, "local"), models)
        assert settle(config, "local").engine.name == "onnxruntime"
    bf16 = settle(load_config(overrides={"ray.ocr_num_gpus": 1, "engine.dtype": "bfloat16"}, environ={}), "ray")
    assert bf16.engine.dtype == "bfloat16" and fingerprint(bf16, models) != fingerprint(planned, models)
    cpu_actors = settle(load_config(overrides={"ray.ocr_num_gpus": 0, "engine.name": "torch"}, environ={}), "ray")
    assert (cpu_actors.engine.device, cpu_actors.engine.dtype) == ("cpu", "float32")
    assert settle(load_config(overrides={"ray.ocr_num_gpus": 1, "engine.device": "cpu"}, environ={}),
                  "ray").engine.name == "onnxruntime"

    rows: list[dict] = []
    assembler = Assembler(planned, DoneIndex(), fingerprint(planned, models), [], "r1",
                          lambda docs, pages, fields: rows.extend(docs))
    assembler.add(SourceDocument("a.png", "d1", etag="e"))
    assembler.flush()
    assert [(r["engine"], r["config_fingerprint"]) for r in rows] == [("torch/cuda/float16", fingerprint(gpu, models))]
    assert engine_label(resolve_engine(FolioConfig()).engine) in ("onnxruntime", "torch/cuda/float16")


# -- (5) CUDA, opt in -----------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_half_precision_reads_the_same_text(invoices, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    onnx_texts = _run(invoices, tmp_path / "ort", "--engine", "onnxruntime")
    half = _run(invoices, tmp_path / "cuda", "--engine", "torch", "--set", "engine.device=cuda",
                "--set", "engine.dtype=float16")
    assert half == onnx_texts
    # engine.name=auto (the default) on this GPU machine: torch in float16, and the rows say so
    auto = _run(invoices, tmp_path / "auto", "--set", "detection.batch_pages=8", "--set", "runner.batch_pages=8")
    assert auto == onnx_texts
    docs = ds.dataset(tmp_path / "auto" / "documents", partitioning="hive").to_table().to_pylist()
    gpu = load_config(overrides={"engine.name": "torch", "engine.device": "cuda", "engine.dtype": "float16"},
                      environ={})
    assert {(d["engine"], d["config_fingerprint"]) for d in docs} == {("torch/cuda/float16", fingerprint(gpu))}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the refusal on a machine without CUDA")
def test_bench_on_cuda_without_a_gpu_is_a_usage_error(invoices):
    result = CliRunner().invoke(main, ["bench", str(invoices), "--device", "cuda", "--markdown", ""])
    assert result.exit_code == 2
    assert "--device cuda: torch sees no CUDA device" in result.output
