"""Folio on a Ray cluster someone else started, the way Ray's docs start one: `ray start --head` with token
authentication on (Ray's default since 2.59 once a token exists). `folio run --runner ray --address` runs
in a process of its own, with the environment a user would give it.

- With the cluster's token (RAY_AUTH_TOKEN_PATH): the same rows as the local runner.
- Without it: exit 3 within seconds, a message that says what to set, no traceback, the failure in the
  run's manifest and no Parquet.
- At an address where nothing listens: exit 3 within seconds.

Every process the tests start is stopped (the head runs in its own process group).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import EXIT_FATAL, EXIT_OK
from tests.conftest import FAST, read_rows

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")
#: What the tests' runs need on a 2-CPU head, and a short wait for it to answer.
SETTINGS = {**FAST, "ray.ocr_num_cpus": 1, "ray.decode_num_cpus": 0.5, "ray.connect_timeout_s": 4}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "FOLIO_"))}
    return env | {"HOME": str(home)} | extra


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head started as Ray's docs say, with a token of its own: (address, token file)."""
    if not RAY.exists():
        pytest.skip("the ray command is not installed")
    home = tmp_path_factory.mktemp("head_home")
    env = _env(home)
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    token = home / ".ray" / "auth_token"
    assert token.is_file()
    port = _free_port()
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
         "--disable-usage-stats", "--temp-dir", str(home / "ray"), "--block"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            lines.append(line)
            if "block forever" in line or time.monotonic() > deadline:
                break
        assert any("Ray runtime started" in line for line in lines), "".join(lines[-20:])
        assert any("Token authentication is enabled" in line for line in lines), "".join(lines[-20:])
        yield f"127.0.0.1:{port}", token
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(2)
        proc.wait(timeout=30)


def _folio(src: Path, dest: Path, address: str, env: dict[str, str], timeout: float = 300):
    sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(src), str(dest), "--runner", "ray", "--address", address,
         *sets], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    return done, time.monotonic() - t0


@pytest.fixture(scope="module")
def docs(scans) -> Path:
    return scans(("invoice", 2, 71, ("png",), False), dpi=100)


def test_with_the_clusters_token_the_rows_are_the_local_runners(head, docs, tmp_path):
    from pipeline.config import load_config
    from pipeline.run import run

    address, token = head
    env = _env(tmp_path / "driver_home", RAY_AUTH_TOKEN_PATH=str(token))
    done, _ = _folio(docs, tmp_path / "cluster", address, env)
    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    assert f"the cluster at {address}, authenticated with the token from RAY_AUTH_TOKEN_PATH ({token})" in done.stderr
    assert token.read_text().strip() not in done.stderr + done.stdout  # says where, never what
    run(str(docs), str(tmp_path / "local"), load_config(overrides=SETTINGS, environ={}), progress=False)

    def rows(dest):
        docs_ = {d["doc_id"]: Path(d["source_uri"]).name for d in read_rows(dest, "documents")}
        return {(docs_[p["doc_id"]], p["page_index"]): (p["status"], p["text"]) for p in read_rows(dest, "pages")}

    assert rows(tmp_path / "cluster") == rows(tmp_path / "local") and len(rows(tmp_path / "local")) == 2


def test_without_the_token_the_run_fails_with_exit_3_and_says_what_to_set(head, docs, tmp_path):
    address, _ = head
    dest = tmp_path / "out"
    done, seconds = _folio(docs, dest, address, _env(tmp_path / "no_token_home"))
    assert done.returncode == EXIT_FATAL, done.stderr[-3000:]
    assert seconds < 30
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("folio: run failed (cluster_unavailable):") and address in message
    assert "RAY_AUTH_TOKEN" in message and "ray get-auth-token" in message
    assert "Traceback" not in done.stderr
    [manifest] = [json.loads(p.read_text()) for p in (dest / "_runs").glob("*.json")]
    assert manifest["complete"] is False and manifest["failure"]["code"] == "cluster_unavailable"
    assert not list(dest.rglob("*.parquet"))


def test_an_address_where_nothing_listens_fails_with_exit_3_within_seconds(docs, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    done, seconds = _folio(docs, tmp_path / "out", address, _env(tmp_path / "home"), timeout=60)
    assert done.returncode == EXIT_FATAL, done.stderr[-3000:]
    assert seconds < 15
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("folio: run failed (cluster_unavailable): nothing answers at the Ray address")
    assert address in message and "Traceback" not in done.stderr


def test_a_cluster_without_room_for_the_actors_fails_instead_of_waiting(head, docs, tmp_path):
    """Asked for a GPU per OCR actor on a cluster that has none (and no autoscaler to add one)."""
    address, token = head
    env = _env(tmp_path / "home", RAY_AUTH_TOKEN_PATH=str(token))
    sets = ["--set", "ray.ocr_num_gpus=1", "--set", "ray.resources_timeout_s=3"]
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(docs), str(tmp_path / "out"), "--runner", "ray",
         "--address", address, *[a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")], *sets],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert done.returncode == EXIT_FATAL, done.stderr[-3000:]
    assert time.monotonic() - t0 < 60
    message = done.stderr.strip().splitlines()[-1]
    assert "no room for an OCR actor (1 CPU, 1 GPU)" in message and "ray.resources_timeout_s" in message


def test_a_flow_whose_cluster_cannot_be_reached_fails_instead_of_hanging(docs, tmp_path):
    """The archive flow's shard on Ray, pointed at an address where nothing listens: the shard fails with
    the message, the flow run fails, and `folio flows run` exits 3 (Prefect's embedded server)."""
    address = f"127.0.0.1:{_free_port()}"
    env = _env(tmp_path / "home", PREFECT_HOME=str(tmp_path / "prefect"))
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "flows", "run", "archive", "--source", str(docs), "--dest",
         str(tmp_path / "out"), "--runner", "ray", "--address", address, "--set", "jobs.shard_retries=0",
         "--set", "ray.connect_timeout_s=2"],
        env=env, capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert done.returncode == EXIT_FATAL, done.stdout[-2000:] + done.stderr[-3000:]
    assert time.monotonic() - t0 < 120
    assert f"nothing answers at the Ray address {address}" in done.stderr
