"""The Prefect flows, run for real: Prefect's test harness, moto's S3 server, local Ray.

One bucket holds the scans, another the output; the flows talk to both through
boto3 exactly as in production. Shards run on a local Ray (2 CPUs).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.output.catalog import latest_documents, read_table
from tests import badinputs
from tests.conftest import FAST as FAST_CONFIG
from tests.conftest import SECRET, SMALL_RAY, start_local_ray

boto3 = pytest.importorskip("boto3")
ray = pytest.importorskip("ray")
pytest.importorskip("prefect")

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from flows import common  # noqa: E402
from flows.archive import archive_flow  # noqa: E402
from flows.invoices import invoices_flow  # noqa: E402
from flows.reprocess import reprocess_flow  # noqa: E402

#: Small pages and detection sizes keep a flow run to seconds on 2 cores; no retry delay.
FAST = {**FAST_CONFIG, **SMALL_RAY, "jobs.retry_delay_s": 0, "jobs.max_error_rate": 1.0}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    """Local Ray started after the S3 environment is set, so workers inherit it."""
    start_local_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def flow_scans(scans, tmp_path_factory) -> Path:
    """Five small synthetic documents and one empty file (an error row)."""
    src = tmp_path_factory.mktemp("flow_scans")
    for p in scans(("invoice", 5, 31, ("png", "jpeg"), False), dpi=100).iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    (src / "empty.pdf").write_bytes(badinputs.zero_bytes())
    return src


@pytest.fixture()
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    names = {k: f"folio-{k}-{uuid.uuid4().hex[:8]}" for k in ("in", "out")}
    for name in names.values():
        client.create_bucket(Bucket=name)
    return client, names


def _upload(client, bucket: str, files) -> None:
    for f in files:
        client.upload_file(str(f), bucket, f"scans/{f.name}")


def _docs(dest: str):
    return read_table(dest, "documents").to_pylist()


def _artifact(state) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    markdown = [a for a in found if a.type == "markdown" and a.key and a.key.startswith("folio-")]
    assert len(markdown) == 1, [(a.key, a.type) for a in found]
    return markdown[0].data


def _table_value(markdown: str, metric: str) -> str:
    match = re.search(rf"^\| {re.escape(metric)} \| (.+?) \|$", markdown, re.M)
    assert match, f"no {metric!r} row in the artifact"
    return match.group(1)


def test_archive_new_only_then_nothing_then_reprocess_by_fingerprint(harness, cluster, s3, flow_scans):
    client, b = s3
    source, dest = f"s3://{b['in']}/scans", f"s3://{b['out']}/folio"
    files = sorted(flow_scans.iterdir())
    first, later = [f for f in files if f.name != files[-1].name][:4], files[-1:]
    _upload(client, b["in"], first)

    # 1. a first run processes everything there is
    state = archive_flow(source, dest, sets=FAST, return_state=True)
    assert state.is_completed(), state
    report = state.result()
    assert (report.planned, report.already_done, report.tally.documents) == (4, 0, 4)
    docs = _docs(dest)
    assert len(docs) == 4 and len({d["source_uri"] for d in docs}) == 4
    # the artifact says what the Parquet holds
    md = _artifact(state)
    assert SECRET not in md and "X-Amz-Signature" not in md  # no credentials or presigned URLs in reports
    pages = read_table(dest, "pages", ["doc_id"]).num_rows
    assert _table_value(md, "documents") == str(len(docs))
    assert _table_value(md, "pages") == f"{pages} (0 failed)"
    failed = [d for d in docs if d["status"] != "ok"]
    assert _table_value(md, "ok / partial / error") == f"{len(docs) - len(failed)} / 0 / {len(failed)}"
    for d in failed:
        assert f"| `{d['error_code']}` | 1 |" in md

    # 2. new objects arrive: only they are processed
    _upload(client, b["in"], later)
    report = archive_flow(source, dest, sets=FAST)
    assert (report.planned, report.already_done, report.tally.documents) == (1, 4, 1)
    docs = _docs(dest)
    assert len(docs) == 5 and len({d["source_uri"] for d in docs}) == 5

    # 3. nothing new: nothing done, nothing written
    report = archive_flow(source, dest, sets=FAST)
    assert (report.planned, report.tally.documents, report.run_ids) == (0, 0, [])
    assert len(_docs(dest)) == 5

    # 4. a config change; reprocess what is stale under it: exactly those, once
    changed = FAST | {"detection.box_thresh": 0.55}
    old_fp = {d["config_fingerprint"] for d in docs}
    assert len(old_fp) == 1
    report = reprocess_flow(dest, sets=changed, error_codes=["empty_file"])  # a narrower selection first
    assert report.tally.documents == 1
    latest = {d["source_uri"]: d for d in latest_documents(dest, per="source_uri").to_pylist()}
    assert latest[f"{source}/empty.pdf"]["config_fingerprint"] not in old_fp
    report = reprocess_flow(dest, sets=changed, stale=True)
    assert report.tally.documents == 4  # the empty file is already current
    latest = latest_documents(dest, per="source_uri").to_pylist()
    assert len(latest) == 5 and len({d["config_fingerprint"] for d in latest}) == 1
    assert latest[0]["config_fingerprint"] == report.fingerprint != next(iter(old_fp))
    assert len(_docs(dest)) == 10  # old rows stay; readers take the newest per doc_id
    report = reprocess_flow(dest, sets=changed, stale=True)
    assert report.tally.documents == 0


def test_a_failed_shard_is_retried_and_each_document_lands_once(harness, cluster, s3, flow_scans, monkeypatch):
    client, b = s3
    source, dest = f"s3://{b['in']}/scans", f"s3://{b['out']}/folio"
    _upload(client, b["in"], sorted(flow_scans.iterdir()))
    real = common.SHARD_RUNNERS["ray"]
    calls = []

    def dies_midway(refs, dest, config, **kw):
        """First attempt: finish half the shard (its rows are written), then the shard dies."""
        calls.append(len(refs))
        if len(calls) == 1:
            real(refs[: len(refs) // 2], dest, config, **kw)
            raise RuntimeError("injected: worker pool lost mid-shard")
        return real(refs, dest, config, **kw)

    monkeypatch.setitem(common.SHARD_RUNNERS, "ray", dies_midway)
    report = archive_flow(source, dest, sets=FAST | {"jobs.shard_retries": 1})
    assert calls == [6, 6]
    docs = _docs(dest)
    assert sorted(d["source_uri"] for d in docs) == sorted(f"{source}/{f.name}" for f in flow_scans.iterdir())
    pages = read_table(dest, "pages", ["doc_id", "page_index"]).to_pylist()
    assert len(pages) == len({(p["doc_id"], p["page_index"]) for p in pages})
    # the report counts both attempts' rows: 3 from the failed attempt, 3 from the retry
    assert report.tally.documents == 6 and len(report.run_ids) == 1
    assert {d["run_id"].rsplit("-", 1)[1] for d in docs} == {"a1", "a2"}


def test_invoices_alert_on_error_rate_and_deadline(harness, cluster, s3, flow_scans, tmp_path):
    client, b = s3
    src = tmp_path / "inv"
    src.mkdir()
    good = sorted(flow_scans.glob("*.png"))[0]
    (src / "a.png").write_bytes(good.read_bytes())
    (src / "b.pdf").write_bytes(badinputs.truncated_pdf())
    _upload(client, b["in"], sorted(src.iterdir()))
    source, dest = f"s3://{b['in']}/scans", f"s3://{b['out']}/inv"
    state = invoices_flow(source, dest, sets=FAST, max_error_rate=0.25, return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), common.ErrorRateExceeded)
    assert "1 of 2 documents failed" in str(state.result(raise_on_failure=False))
    assert _table_value(_artifact(state), "error rate") == "50.0%"  # reported before failing
    assert len(_docs(dest)) == 2

    # A deadline already passed before the second shard: one shard runs, the run fails, the rest waits.
    (src / "c.png").write_bytes(sorted(flow_scans.glob("*.jp*g"))[0].read_bytes())
    (src / "d.png").write_bytes(sorted(flow_scans.glob("*.png"))[1].read_bytes())
    _upload(client, b["in"], [src / "c.png", src / "d.png"])
    state = invoices_flow(source, dest, sets=FAST, shard_size=1, deadline_minutes=1e-6, return_state=True)
    assert isinstance(state.result(raise_on_failure=False), common.DeadlinePassed)
    assert len(_docs(dest)) == 3
    report = invoices_flow(source, dest, sets=FAST)  # the next run picks up what was left
    assert report.planned == 1 and len(_docs(dest)) == 4


@pytest.mark.parametrize(
    "params, message",
    [
        ({"source": "s3:/bucket/x"}, "not an S3 URI"),
        ({"source": "s3://Bad_Bucket/x"}, "not a valid S3 bucket name"),
        ({"source": "gs://bucket/x"}, "only local paths and s3:// URIs"),
        ({"source": "/no/such/folder"}, "does not exist"),
        ({"sets": {"detection.no_such_key": 1}}, "no_such_key"),
        ({"config": "no-such-config.yaml"}, "config file not found"),
        ({"shard_size": 0}, "shard_size"),
    ],
)
def test_bad_parameters_fail_before_any_work(harness, tmp_path, params, message):
    src = tmp_path / "in"
    src.mkdir()
    args = {"source": str(src), "dest": str(tmp_path / "out"), "runner": "local"} | params
    state = archive_flow(**args, return_state=True)
    assert state.is_failed()
    assert message in str(state.result(raise_on_failure=False))
    assert not (tmp_path / "out").exists()


def test_reprocess_needs_a_selection(harness, tmp_path):
    state = reprocess_flow(str(tmp_path), runner="local", return_state=True)
    assert state.is_failed() and "needs a selection" in str(state.result(raise_on_failure=False))


def test_cli_runs_a_flow_and_maps_failures_to_exit_codes(harness, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    from measure import synth

    src = tmp_path / "in"
    synth.generate(src, 1, "invoice", seed=5, formats=("png",), damage=False, dpi=100)
    out = tmp_path / "out"
    cli = CliRunner()
    args = ["flows", "run", "archive", "--source", str(src), "--dest", str(out), "--runner", "local",
            "--exclude", "*.json", "--set", "detection.max_side_len=960"]
    result = cli.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "archive: 1 documents (1 ok" in result.output
    assert len(pq.read_table(next(out.glob("documents/*/*.parquet"))).to_pylist()) == 1
    result = cli.invoke(main, ["flows", "run", "archive", "--source", "s3:/x", "--dest", str(out)])
    assert result.exit_code == 2, result.output
    result = cli.invoke(main, ["flows", "run", "archive", "--dest", str(out)])
    assert result.exit_code == 2 and "needs --source" in result.output
    result = cli.invoke(main, ["flows", "run", "reprocess", "--dest", str(out), "--stale", "--source", str(src)])
    assert result.exit_code == 2 and "--source does not apply" in result.output
    result = cli.invoke(main, ["flows", "run", "reprocess", "--dest", str(out), "--runner", "local",
                               "--below-confidence", "1.0", "--set", "detection.max_side_len=960"])
    assert result.exit_code == 0, result.output
    assert "reprocess: 1 documents" in result.output


def test_prefect_yaml_agrees_with_the_deployments_served(monkeypatch):
    from flows.deployments import DEPLOYMENTS, runner_deployments

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    assert set(declared) == {d.name for d in DEPLOYMENTS} == {"archive-nightly", "invoices-15min", "reprocess"}
    for d in DEPLOYMENTS:
        y = declared[d.name]
        assert y["entrypoint"] == d.entrypoint
        path, _, attr = d.entrypoint.partition(":")
        assert (REPO / path).exists() and callable(d.load_flow())
        schedules = y.get("schedules") or []
        assert [s.get("cron") for s in schedules if "cron" in s] == ([d.cron] if d.cron else [])
        assert [s.get("interval") for s in schedules if "interval" in s] == ([d.interval_s] if d.interval_s else [])
        assert y["parameters"] == {p: f"{{{{ ${v} }}}}" for p, v in d.env.items()}
        assert y["work_pool"]["name"] == "folio-k8s"
        flow_params = set(d.load_flow().parameters.properties)
        assert set(y["parameters"]) <= flow_params
    assert declared["archive-nightly"]["schedules"][0]["cron"] == "0 2 * * *"
    assert declared["invoices-15min"]["schedules"][0]["interval"] == 900

    monkeypatch.setenv("FOLIO_ARCHIVE_SOURCE", "s3://scans/archive")
    monkeypatch.setenv("FOLIO_ARCHIVE_DEST", "s3://ocr/archive")
    monkeypatch.delenv("FOLIO_INVOICES_SOURCE", raising=False)
    with pytest.raises(ValueError, match="FOLIO_INVOICES_SOURCE"):
        runner_deployments()
    built = runner_deployments({"invoices-15min": {"source": "s3://in/inv", "dest": "s3://out/inv"}})
    by_name = {d.name: d for d in built}
    assert by_name["archive-nightly"].parameters == {"source": "s3://scans/archive", "dest": "s3://ocr/archive"}
    assert by_name["archive-nightly"].schedules[0].schedule.cron == "0 2 * * *"
    assert by_name["invoices-15min"].schedules[0].schedule.interval.total_seconds() == 900
    assert not by_name["reprocess"].schedules


def test_demo_runs_the_archive_flow_and_says_how_to_read_the_output(harness, cluster, tmp_path):
    """`make demo`: a few synthetic scans in a local folder through the archive flow on a local Ray."""
    from click.testing import CliRunner

    from pipeline.cli import main
    from tests.conftest import read_rows

    result = CliRunner().invoke(main, ["demo", str(tmp_path / "demo"), "--pages", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 documents, 3 pages, 0 failed" in result.output
    assert "read_parquet(" in result.output and "partitioning='hive'" in result.output
    out = tmp_path / "demo" / "output"
    assert len(read_rows(out, "pages")) == 3
    # configs/archive.yaml's outputs: ALTO per page and a searchable PDF per document, named after the scans
    scans = sorted(p.relative_to(tmp_path / "demo" / "scans").with_suffix("")
                   for p in (tmp_path / "demo" / "scans").rglob("*") if p.suffix in (".png", ".tif", ".pdf", ".jpg"))
    assert sorted(p.relative_to(out / "pdf").with_suffix("") for p in (out / "pdf").rglob("*.pdf")) == scans
    assert len(list((out / "alto").rglob("*.xml"))) == 3
    assert "alto: 3 files" in result.output and "pdf: 3 files" in result.output
