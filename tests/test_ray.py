"""The Ray Data runner: same rows as the local runner; a lost worker node loses no document."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.run import run
from measure import pdfkinds
from tests import badinputs
from tests.conftest import FAST, SMALL_RAY, read_rows

ray = pytest.importorskip("ray")

_rows = read_rows


@pytest.fixture(scope="module")
def inputs(scans, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("ray_in")
    shutil.copytree(scans(("invoice", 3, 21, ("png", "pdf"), True), ("form", 1, 22, ("jpeg",), False)), src,
                    dirs_exist_ok=True)
    (src / "zero.pdf").write_bytes(badinputs.zero_bytes())
    (src / "truncated.pdf").write_bytes(badinputs.truncated_pdf())
    shutil.copy(next(src.glob("*.png")), src / "twin.png")  # same bytes twice
    (src / "born-digital.pdf").write_bytes(pdfkinds.born_digital_pdf())  # read from the file, in the decode task
    (src / "mixed.pdf").write_bytes(pdfkinds.mixed_pdf())  # its image region OCR'd in an actor
    return src


def test_ray_and_local_runners_write_the_same_rows(inputs, tmp_path, local_ray):
    config = load_config(overrides=FAST | SMALL_RAY, environ={})
    local = run(str(inputs), str(tmp_path / "local"), config, progress=False)
    distributed = run(str(inputs), str(tmp_path / "ray"), config, runner="ray", progress=False)
    assert (local.documents, local.pages, local.failed) == (distributed.documents, distributed.pages, distributed.failed)

    def docs(dest):
        return {Path(d["source_uri"]).name: (d["doc_id"], d["status"], d["error_code"], d["page_count"])
                for d in _rows(dest, "documents")}

    assert docs(tmp_path / "local") == docs(tmp_path / "ray")
    sources = {p["text_source"] for p in _rows(tmp_path / "ray", "pages")}
    assert {"ocr", "pdf", "pdf+ocr"} <= sources
    lp = {(p["doc_id"], p["page_index"]): p for p in _rows(tmp_path / "local", "pages")}
    rp = {(p["doc_id"], p["page_index"]): p for p in _rows(tmp_path / "ray", "pages")}
    assert lp.keys() == rp.keys()
    for key, a in lp.items():
        b = rp[key]
        assert (a["text"], a["status"], a["width"], a["height"], a["text_source"]) == \
            (b["text"], b["status"], b["width"], b["height"], b["text_source"])
        assert len(a["lines"]) == len(b["lines"])
        for la, lb in zip(a["lines"], b["lines"]):
            assert la["text"] == lb["text"]
            np.testing.assert_allclose(la["polygon"], lb["polygon"], atol=1e-3)
            assert [w["text"] for w in la["words"]] == [w["text"] for w in lb["words"]]
            for wa, wb in zip(la["words"], lb["words"]):
                np.testing.assert_allclose(wa["polygon"], wb["polygon"], atol=1e-3)
    # resume works the same way
    again = run(str(inputs), str(tmp_path / "ray"), config, runner="ray", progress=False)
    assert again.skipped == distributed.documents and again.documents == 0
    # a run leaves no actor of its own behind (a long-lived driver makes many runs)
    from ray._private import state

    deadline = time.monotonic() + 30
    while (alive := [a for a in state.actors().values()
                     if a["ActorClassName"] == "PageAttempts" and a["State"] != "DEAD"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive == []


def test_no_decode_task_reads_more_than_docs_per_task_documents():
    """A decode worker's memory grows with the documents its task reads, so a long run is cut into more
    tasks, never bigger ones."""
    from pipeline.runner.ray_data import decode_blocks

    for documents in (1, 3, 10, 16, 17, 50, 500, 3000, 100_000):
        for tasks in (1, 4, 24):
            for per_task in (1, 8, 16):
                blocks = decode_blocks(documents, tasks, per_task)
                assert 1 <= blocks <= documents
                assert -(-documents // blocks) <= per_task  # the largest block
                assert blocks >= min(documents, 4 * tasks)  # every decode task has work
    assert decode_blocks(0, 4, 16) == 1
    assert decode_blocks(3000, 4, 16) == 188


def test_cli_ray_runner(inputs, tmp_path, local_ray):
    from click.testing import CliRunner

    from pipeline.cli import main

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(next(inputs.glob("*.jpg")), src)
    result = CliRunner().invoke(main, ["run", str(src), str(tmp_path / "out"), "--runner", "ray", "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(_rows(tmp_path / "out", "pages")) == 1


@pytest.mark.reliability
def test_killing_a_worker_node_mid_run_loses_nothing(scans, tmp_path, reliability):
    """Two-node cluster on one machine; the node running OCR dies mid-run; every document lands once."""
    from ray.cluster_utils import Cluster

    n_docs = 14  # one-page documents: enough for the run to outlast the kill at 6 s several times over
    src = scans(("book", n_docs, 31, ("png",), False), dpi=100)
    ray.shutdown()  # leave the single-node Ray of the other tests
    # The head notices a dead node after 3 missed health checks a second apart (Ray's default takes longer).
    fast_checks = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": fast_checks})
    worker = cluster.add_node(num_cpus=2)
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        config = load_config(overrides={**FAST, "ray.ocr_actors": 2, "ray.ocr_num_cpus": 1,
                                         "runner.batch_pages": 1, "engine.intra_op_threads": 1}, environ={})
        killer = threading.Timer(6.0, lambda: cluster.remove_node(worker, allow_graceful=False))
        killer.start()
        t0 = time.time()
        summary = run(str(src), str(tmp_path / "out"), config, runner="ray", progress=False)
        killer.cancel()
        assert time.time() - t0 > 6.0, "the run finished before the node was killed: nothing was tested"
    finally:
        ray.shutdown()
        cluster.shutdown()
    docs = _rows(tmp_path / "out", "documents")
    pages = _rows(tmp_path / "out", "pages")
    assert summary.documents == n_docs and len(docs) == n_docs
    assert len({d["source_uri"] for d in docs}) == n_docs
    assert len(pages) == n_docs and len({(p["doc_id"], p["page_index"]) for p in pages}) == n_docs
    assert all(d["status"] == "ok" for d in docs)
    reliability("fault", "Ray: the worker node running OCR removed mid-run (two-node cluster)",
                f"its tasks and actors rescheduled on the other node; all {n_docs} documents ok, each once")


@pytest.mark.slow
def test_bench_times_the_ray_runner_against_the_local_one(inputs, tmp_path):
    import json

    from click.testing import CliRunner

    from pipeline.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(inputs.glob("*.png"))[:1] + sorted(inputs.glob("*.jpg"))[:1]:
        shutil.copy(p, src)
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    args = ["bench", str(src), "--runner", "ray", "--repeat", "1", "--json", str(js), "--markdown", str(md)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(js.read_text())
    systems = {r["system"]: r for r in report["results"]}
    assert set(systems) == {"folio", "folio-ray"}
    assert systems["folio"]["pages"] == systems["folio-ray"]["pages"] == 2
    assert systems["folio-ray"]["ray_workers_peak_rss_mb"] > 100
    assert report["ratios"]["folio-ray/folio pages_per_s"] > 0
    # both runners load their models inside the timing, so what differs is Ray's own cost
    assert systems["folio"]["models_loaded_in_timing"] and systems["folio-ray"]["models_loaded_in_timing"]
    cpu = systems["folio-ray"]["cpu_seconds_by_role"]
    assert cpu["ocr"] > 0.5 and cpu["ray"] > 0 and cpu["driver"] > 0
    assert cpu["ocr"] > cpu["decode"]
    assert systems["folio"]["cpu_seconds_by_role"]["driver"] > 0.5
    text = md.read_text()
    assert "folio-ray/folio pages_per_s" in text and "| system | driver | decode | ocr | ray |" in text


def test_ray_sampler_counts_only_while_a_run_is_on():
    """The benchmark's memory sampler records nothing while paused (the output read back for scoring
    is the benchmark's memory, not the run's), and reports the driver's first sample beside its peak."""
    import time

    from measure.bench.samplers import RaySampler

    sampler = RaySampler()
    sampler.start()
    time.sleep(1.2)
    assert sampler.series == {}
    sampler.resume()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # CPU time the driver's role must show
        pass
    time.sleep(1.2)
    sampler.pause()
    time.sleep(0.2)  # a sample taken as pause() ran is the last
    taken = len(sampler.series["driver"])
    time.sleep(1.2)
    sampler.stop()
    assert taken >= 1 and len(sampler.series["driver"]) == taken
    driver = sampler.summary()["driver"]
    assert 0 < driver["first"] <= driver["peak"]
    assert driver["samples"] == taken
    assert len(driver["tenth_peaks"]) == 10 and max(driver["tenth_peaks"]) == driver["peak"]
    # one run's CPU seconds; resume() took its starting point, so the work before it does not count
    assert len(sampler.cpu_runs) == 1
    assert 0.25 <= sampler.cpu_summary()["driver"] < 1.5


def test_a_page_run_alone_waits_for_running_batches_and_holds_off_new_ones():
    """OCR actors run runner.ocr_threads batches at once, but a page isolated after a crash runs with
    nothing else in the process, so an innocent neighbour cannot die with a poisonous page and be counted."""
    from pipeline.runner.ray_data import SharedOrAlone

    gate = SharedOrAlone()
    events: list[str] = []
    batch_may_end = threading.Event()

    def batch(name: str, wait: threading.Event | None = None) -> None:
        with gate.shared():
            events.append(f"{name} start")
            if wait is not None:
                wait.wait(5)
            events.append(f"{name} end")

    def alone() -> None:
        with gate.alone():
            events.append("alone")

    first = threading.Thread(target=batch, args=("b1", batch_may_end))
    first.start()
    while "b1 start" not in events:
        time.sleep(0.01)
    solo = threading.Thread(target=alone)
    solo.start()
    time.sleep(0.1)
    later = threading.Thread(target=batch, args=("b2",))  # arrives while the solo run waits
    later.start()
    time.sleep(0.1)
    assert events == ["b1 start"]  # the solo run waits for b1; b2 waits behind the solo run
    batch_may_end.set()
    for t in (first, solo, later):
        t.join(5)
    assert events == ["b1 start", "b1 end", "alone", "b2 start", "b2 end"]


def test_the_driver_takes_the_clusters_token_from_where_ray_looks_and_says_where(tmp_path, monkeypatch):
    """RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token; token authentication is
    turned on for this process when one is found and RAY_AUTH_MODE says nothing."""
    from pipeline.errors import ClusterUnavailable
    from pipeline.runner.ray_data import _use_cluster_token

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _use_cluster_token() is None and "RAY_AUTH_MODE" not in __import__("os").environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("secret-from-home")
    assert _use_cluster_token() == str(tmp_path / ".ray" / "auth_token")
    assert __import__("os").environ["RAY_AUTH_MODE"] == "token"
    path = tmp_path / "token"
    path.write_text("secret-from-path\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert _use_cluster_token() == f"RAY_AUTH_TOKEN_PATH ({path})"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-from-env")
    assert _use_cluster_token() == "RAY_AUTH_TOKEN"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # said explicitly: respected
    assert _use_cluster_token() is None
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    path.write_text("")
    with pytest.raises(ClusterUnavailable, match="is empty"):
        _use_cluster_token()
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterUnavailable, match="cannot be read"):
        _use_cluster_token()


def test_room_for_an_actor_is_one_node_that_holds_it_and_cpus_for_a_decode_task_beside_it():
    from pipeline.runner.ray_data import _room

    actor, task = {"CPU": 1.0, "GPU": 1.0}, {"CPU": 0.5}
    assert _room([{"CPU": 8.0, "GPU": 1.0}], actor, task)
    assert not _room([{"CPU": 8.0}], actor, task)  # no node with a GPU
    assert not _room([{"CPU": 1.0, "GPU": 1.0}], actor, task)  # nothing left for decoding
    assert _room([{"CPU": 1.0, "GPU": 1.0}, {"CPU": 2.0}], actor, task)
    assert _room([{"CPU": 2.0}], {"CPU": 1.0}, task) and not _room([], {"CPU": 1.0}, task)
