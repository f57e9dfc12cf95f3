"""Config loading, validation, overrides and fingerprints."""

from pathlib import Path

import pytest

from pipeline.config import FolioConfig, load_config
from pipeline.errors import ConfigError
from pipeline.run import fingerprint
from tests.conftest import fake_models

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_matches_the_model():
    from pipeline.config import DEFAULTS_HEADER, to_yaml

    text = (ROOT / "configs" / "default.yaml").read_text()
    assert text == to_yaml(FolioConfig(), DEFAULTS_HEADER), "regenerate: folio config --defaults > configs/default.yaml"
    assert load_config(ROOT / "configs" / "default.yaml", environ={}) == FolioConfig()


def test_every_shipped_config_loads():
    for path in (ROOT / "configs").glob("*.yaml"):
        load_config(path, environ={})


def test_file_env_and_overrides_in_priority_order(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detection:\n  box_thresh: 0.6\n  thresh: 0.2\ndecode:\n  pdf_dpi: 200\n")
    env = {"FOLIO_DETECTION__BOX_THRESH": "0.7", "FOLIO_ENGINE__INTRA_OP_THREADS": "3", "UNRELATED": "x"}
    c = load_config(cfg, {"decode.pdf_dpi": 150}, environ=env)
    assert c.detection.box_thresh == 0.7  # env beats file
    assert c.detection.thresh == 0.2  # file beats default
    assert c.decode.pdf_dpi == 150  # explicit override beats all
    assert c.engine.intra_op_threads == 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("detection:\n  box_thresh: 2\n", "detection.box_thresh"),
        ("detection:\n  nonsense: 1\n", "detection.nonsense"),
        ("- a\n- b\n", "mapping"),
        ("detection: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, match):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(cfg, environ={})


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.yaml", environ={})
    with pytest.raises(ConfigError, match="section"):
        load_config(overrides={"box_thresh": 1}, environ={})


def test_fingerprint_tracks_output_settings_only():
    base = fingerprint(FolioConfig(), fake_models(detection="abc"))
    threads = load_config(overrides={"engine.intra_op_threads": 7, "runner.batch_pages": 9, "jobs.shard_size": 3,
                                     "jobs.max_error_rate": 0.1}, environ={})
    assert fingerprint(threads, fake_models(detection="abc")) == base
    changed = load_config(overrides={"detection.box_thresh": 0.55}, environ={})
    assert fingerprint(changed, fake_models(detection="abc")) != base
    assert fingerprint(FolioConfig(), fake_models(detection="abd")) != base


def test_config_is_picklable():
    import pickle

    c = load_config(overrides={"decode.pdf_dpi": 222}, environ={})
    assert pickle.loads(pickle.dumps(c)) == c
