"""``folio train``: the trainable recognizer, its export into the ONNX graph, resuming, and the command.

A few rendered lines keep these quick; the figures on real collections are in
docs/training.md. The Ray Train run is in the slow tier.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.config import FolioConfig
from pipeline.models.training import (
    LineSample,
    Recognizer,
    TrainOptions,
    cer_counts,
    fit,
    onnx_readings,
    split_by_group,
)
from pipeline.models.zoo import model_metadata, resolve_model

pytest.importorskip("onnx2torch")

TEXTS = ["the quick brown fox", "jumps over the lazy dog", "pack my box with five", "dozen liquor jugs now",
         "sphinx of black quartz", "judge my vow today"]


def render(text: str) -> np.ndarray:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    image = np.full((h + base + 16, w + 16, 3), 255, np.uint8)
    cv2.putText(image, text, (8, h + 8), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2, cv2.LINE_AA)
    return image


@pytest.fixture(scope="module")
def lines() -> list[LineSample]:
    return [LineSample(render(t), t, f"doc{k % 3}") for k, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def recognizer(lines) -> Recognizer:
    config = FolioConfig().recognition
    return Recognizer(resolve_model(config.model), [s.text for s in lines] + ["deꝛ ſelige"], "latin", 0.5)


def test_the_head_gets_the_characters_the_ground_truth_adds_before_the_space(recognizer):
    assert recognizer.added == ["ꝛ"]  # ſ is in the shipped charset already
    assert recognizer.charset[-1] == "ꝛ" and recognizer.space == len(recognizer.charset) + 1
    assert recognizer.encode("a ꝛ") == [recognizer.index["a"], recognizer.space, recognizer.index["ꝛ"]]
    # the head was cut to the latin charset: hundreds of classes, not 18,710
    assert 500 < len(recognizer.charset) < 2000
    trained = [p for p in recognizer.module.parameters() if p.requires_grad]
    assert trained and len(trained) < len(list(recognizer.module.parameters()))  # early layers frozen


def test_the_written_model_is_the_graph_with_new_weights_and_charset_and_reads_as_torch(recognizer, lines, tmp_path):
    import torch

    config = FolioConfig().recognition
    before = recognizer.read(lines, config)
    assert cer_counts(before, lines)[0] < sum(len(s.text) for s in lines) * 0.3  # the shipped model reads these
    with torch.no_grad():  # a change any training would make
        for p in recognizer.trainable():
            p.mul_(1.01)
    model = recognizer.write(tmp_path / "rec.onnx")
    assert model_metadata(model)["character"].splitlines() == recognizer.charset
    assert onnx_readings(model, lines, config) == recognizer.read(lines, config)
    # Folio's own engine loads it, cuts its head to the charset and records its sha256
    from pipeline.models.bundle import model_files
    from pipeline.run import fingerprint

    tuned = FolioConfig.model_validate({"recognition": {"model": str(model.path)}})
    files = model_files(tuned)
    assert files["recognition"].sha256 == model.sha256
    assert fingerprint(tuned, files) != fingerprint(FolioConfig(), model_files(FolioConfig()))


def test_training_lowers_the_loss_keeps_the_best_epoch_and_resumes_after_a_crash(lines, tmp_path):
    config = FolioConfig().recognition
    recognizer = Recognizer(resolve_model(config.model), [s.text for s in lines], "latin", 0.8)
    train, val = lines[:4], lines[4:]
    checkpoint = tmp_path / "checkpoint.pt"
    options = TrainOptions(epochs=1, batch_size=2, learning_rate=1e-4, augment=True, freeze=0.8, threads=1)
    first = fit(recognizer, train, val, config, options, checkpoint)
    assert checkpoint.is_file() and [e.epoch for e in first.history] == [1]
    assert first.best_cer <= first.baseline_cer
    again = Recognizer(resolve_model(config.model), [s.text for s in lines], "latin", 0.8)
    seen = []
    resumed = fit(again, train, val, config, TrainOptions(**{**options.__dict__, "epochs": 2}), checkpoint,
                  progress=lambda phase, step, total, info: seen.append((phase, step)))
    assert resumed.resumed_from == 2 and [e.epoch for e in resumed.history] == [1, 2]
    assert ("epoch", 1) not in seen and ("epoch", 2) in seen
    assert resumed.baseline_cer == first.baseline_cer


def test_a_split_holds_out_whole_documents(lines):
    train, val = split_by_group(lines, 0.3, seed=1)
    assert val and train and not {s.group for s in train} & {s.group for s in val}
    with pytest.raises(ValueError, match="two documents"):
        split_by_group([LineSample(s.image, s.text, "one") for s in lines], 0.3)


def test_folio_train_writes_the_model_and_prints_the_override_last(lines, tmp_path):
    from pipeline.cli import main

    data = tmp_path / "lines"
    data.mkdir()
    for k, sample in enumerate(lines):
        name = f"book{k % 3}_{k:04d}"
        cv2.imwrite(str(data / f"{name}.png"), sample.image)
        (data / f"{name}.gt.txt").write_text(sample.text + ("ꝛ" if k == 0 else ""), encoding="utf-8")
    out = tmp_path / "model"
    args = ["train", "lines", str(data), "--output", str(out), "--epochs", "1", "--batch-size", "4",
            "--freeze", "0.9", "--val-split", "0.3", "--quiet", "--set", "recognition.charset=latin",
            "--set", "runner.ocr_threads=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last == f"--set recognition.model={(out / 'recognizer.onnx').resolve()} --set recognition.charset=all"
    report = json.loads((out / "training.json").read_text())
    assert report["added_characters"] == "ꝛ" and report["onnx_differs"] == 0 and len(report["history"]) == 1
    held = (out / "validation-ids.txt").read_text().split()
    assert held and all(i.startswith("book") for i in held)
    assert (out / "charset.txt").read_text(encoding="utf-8").splitlines()[-1] == "ꝛ"
    # a second run resumes from the checkpoint; a usage error for a folder with no lines
    again = CliRunner().invoke(main, [*args[:-2], "--epochs", "2"])
    assert again.exit_code == 0 and len(json.loads((out / "training.json").read_text())["history"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(main, ["train", "lines", str(empty), "--output", str(out)]).exit_code == 2
    # chosen pages: --ids to train on, --val-ids to validate on (never trained on even when --ids lists them)
    from measure.datasets import read_dataset

    ids = [p.sample_id for p in read_dataset("lines", data)]
    (tmp_path / "train.txt").write_text("\n".join(ids))
    (tmp_path / "val.txt").write_text("\n".join(i for i in ids if "book2" in i))
    chosen = CliRunner().invoke(main, [*args[:-2], "--restart", "--ids", str(tmp_path / "train.txt"),
                                       "--val-ids", str(tmp_path / "val.txt")])
    assert chosen.exit_code == 0, chosen.output
    report = json.loads((out / "training.json").read_text())
    assert (report["train_lines"], report["val_lines"]) == (4, 2)
    assert (out / "validation-ids.txt").read_text().split() == [i for i in ids if "book2" in i]


@pytest.mark.slow
def test_ray_train_trains_the_same_model_data_parallel(lines, tmp_path):
    import ray

    from pipeline.runner.ray_train import fit_on_ray

    config = FolioConfig.model_validate({"runner": {"ocr_threads": 1}})
    recognizer = Recognizer(resolve_model(config.recognition.model), [s.text for s in lines], "latin", 0.8)
    options = TrainOptions(epochs=2, batch_size=2, learning_rate=1e-4, freeze=0.8, threads=1)
    try:
        result = fit_on_ray(recognizer, lines[:4], lines[4:], config, options, 2, tmp_path / "ray")
    finally:
        ray.shutdown()
    assert [e.epoch for e in result.history] == [1, 2] and result.best_cer <= result.baseline_cer
    model = recognizer.write(tmp_path / "rec.onnx")
    assert onnx_readings(model, lines[4:], config.recognition) == recognizer.read(lines[4:], config.recognition)
    shutil.rmtree(tmp_path / "ray", ignore_errors=True)
