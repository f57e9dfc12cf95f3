"""S3Storage and `folio run` against a real S3 API: moto's server on 127.0.0.1, boto3 unpatched.

Faults (throttling, a part upload that dies) are injected through botocore's own
event hooks on the real client, so retries, error parsing and our translation
all run as in production.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import EXIT_DOCUMENTS_FAILED, EXIT_FATAL, EXIT_OK, main
from pipeline.config import FolioConfig, StorageConfig, load_config
from pipeline.errors import ConfigError, StorageError
from pipeline.io.storage import LocalStorage, S3Storage, get_storage, join

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from tests.conftest import ACCESS_KEY, SECRET


@pytest.fixture(scope="module")
def endpoint(s3_endpoint):
    return s3_endpoint


@pytest.fixture()
def raw(endpoint):
    """A plain boto3 client to set up and inspect buckets behind Folio's back."""
    return boto3.client("s3", endpoint_url=endpoint)


@pytest.fixture()
def bucket(raw) -> str:
    name = f"folio-{uuid.uuid4().hex[:12]}"
    raw.create_bucket(Bucket=name)
    return name


def _config(endpoint: str, **kw) -> StorageConfig:
    return StorageConfig(endpoint_url=endpoint, **kw)


class _Raw:
    """The ``raw`` body botocore reads a canned HTTP response from."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def _http_error(status: int, code: str, failures: int | None = None):
    """A before-send hook that answers the first ``failures`` requests (all: None) with an S3 error.

    Returns the hook and the list of requests it saw (every attempt, including retries).
    """
    from botocore.awsrequest import AWSResponse

    calls = []

    def hook(request, **_):
        calls.append(request.url)
        if failures is not None and len(calls) > failures:
            return None  # let the request through to the server
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))

    return hook, calls


# -- storage ------------------------------------------------------------------------------------


def test_list_pages_past_1000_objects(endpoint, raw, bucket):
    keys = [f"many/sub{i % 3}/doc{i:05d}.png" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        etags = dict(zip(keys, pool.map(lambda k: raw.put_object(Bucket=bucket, Key=k, Body=k.encode())["ETag"], keys)))
    raw.put_object(Bucket=bucket, Key="many/", Body=b"")  # folder marker
    raw.put_object(Bucket=bucket, Key="many/.DS_Store", Body=b"x")
    raw.put_object(Bucket=bucket, Key="many2/not-under-many.png", Body=b"x")

    refs = list(S3Storage(_config(endpoint)).list(f"s3://{bucket}/many"))

    assert len(refs) == 1100  # one list_objects_v2 call returns at most 1000
    assert [r.uri for r in refs] == sorted(f"s3://{bucket}/{k}" for k in keys)
    first = refs[0]
    key = first.uri.split("/", 3)[3]
    assert first.size == len(key.encode()) and first.etag == etags[key].strip('"') and '"' not in first.etag
    assert [r.uri for r in S3Storage(_config(endpoint)).list(f"s3://{bucket}/{keys[7]}")] == [f"s3://{bucket}/{keys[7]}"]


def test_read_write_exists_glob(endpoint, raw, bucket):
    st = get_storage(f"s3://{bucket}/out", _config(endpoint))
    assert isinstance(st, S3Storage)
    root = f"s3://{bucket}/out"
    files = {
        join(root, "documents", "run_date=2026-01-01", "part-a-00000.parquet"): b"PAR1 docs",
        join(root, "pages", "run_date=2026-01-01", "part-a-00000.parquet"): b"PAR1 pages",
        join(root, "_runs", "a.json"): b"{}",
        join(root, "documents", "_tmp", "x.parquet"): b"hidden",
        join(root, "documents", ".part.parquet"): b"hidden",
    }
    for uri, data in files.items():
        st.write_atomic(uri, data)
    doc = join(root, "documents", "run_date=2026-01-01", "part-a-00000.parquet")
    assert st.read(doc) == b"PAR1 docs"
    assert st.exists(doc) and not st.exists(join(root, "documents", "nope.parquet"))
    assert raw.head_object(Bucket=bucket, Key=doc.split("/", 3)[3])["ContentType"] == "application/vnd.apache.parquet"
    assert st.glob(join(root, "documents"), ".parquet") == [doc]
    assert st.glob(root, ".parquet") == sorted([doc, join(root, "pages", "run_date=2026-01-01", "part-a-00000.parquet")])
    assert st.glob(f"s3://{bucket}/nothing-here", ".parquet") == []  # a new destination is not an error

    with pytest.raises(StorageError, match="no such object") as e:
        st.read(join(root, "missing.json"))
    assert not e.value.retryable
    with pytest.raises(StorageError, match="does not exist") as e:
        list(st.list(f"s3://{bucket}/no-such-prefix"))
    assert not e.value.retryable
    with pytest.raises(StorageError, match=r"\.\."):
        join(root, "..", "elsewhere")
    with pytest.raises(StorageError, match=r"\.\."):
        st.write_atomic(f"s3://{bucket}/out/../escaped.json", b"{}")
    with pytest.raises(StorageError, match=r"\.\."):
        join("/tmp/out", "documents/../../etc")


def test_multipart_upload_with_low_threshold(endpoint, raw, bucket):
    st = S3Storage(_config(endpoint, multipart_threshold_bytes=1 << 20))
    data = os.urandom(11 << 20)  # parts are at least 5 MiB: 5 + 5 + 1
    st.write_atomic(f"s3://{bucket}/big.parquet", data)
    st.write_atomic(f"s3://{bucket}/small.parquet", data[:1000])

    assert st.read(f"s3://{bucket}/big.parquet") == data
    assert raw.head_object(Bucket=bucket, Key="big.parquet")["ETag"].strip('"').endswith("-3")
    assert "-" not in raw.head_object(Bucket=bucket, Key="small.parquet")["ETag"]  # one plain PUT
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_failed_multipart_upload_is_aborted_and_never_visible(endpoint, raw, bucket):
    from botocore.exceptions import EndpointConnectionError

    config = _config(endpoint, multipart_threshold_bytes=1 << 20, max_attempts=1)
    st = S3Storage(config)
    uri = f"s3://{bucket}/out.parquet"
    st.write_atomic(uri, b"version 1")
    parts = []

    def die_on_second_part(params, **_):
        parts.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url=endpoint)

    st.client.meta.events.register("before-parameter-build.s3.UploadPart", die_on_second_part, unique_id="folio-test-die")
    try:
        with pytest.raises(StorageError) as e:
            st.write_atomic(uri, os.urandom(11 << 20))
    finally:
        st.client.meta.events.unregister("before-parameter-build.s3.UploadPart", unique_id="folio-test-die")
    assert parts == [1, 2] and e.value.retryable
    assert st.read(uri) == b"version 1"  # readers still see the old object whole
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted, no parts left


def test_missing_bucket_is_not_retryable_and_named(endpoint):
    st = S3Storage(_config(endpoint))
    name = "no-such-bucket-folio"
    calls = [
        lambda: list(st.list(f"s3://{name}/scans")),
        lambda: st.read(f"s3://{name}/a.png"),
        lambda: st.glob(f"s3://{name}/out/documents", ".parquet"),
        lambda: st.write_atomic(f"s3://{name}/out/x.json", b"{}"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=f"bucket '{name}' does not exist") as e:
            call()
        assert not e.value.retryable and e.value.code == "storage_error"
    assert not st.exists(f"s3://{name}/a.png")


def test_transient_errors_are_retried_by_the_client(endpoint, bucket):
    st = S3Storage(_config(endpoint, max_attempts=3, connect_timeout_s=1.25))  # its own client: hooks stay local
    st.write_atomic(f"s3://{bucket}/a.png", b"bytes")
    hook, calls = _http_error(500, "InternalError", failures=2)
    st.client.meta.events.register("before-send.s3", hook, unique_id="folio-test-flaky")
    try:
        assert st.read(f"s3://{bucket}/a.png") == b"bytes"  # failed twice, then succeeded
    finally:
        st.client.meta.events.unregister("before-send.s3", unique_id="folio-test-flaky")
    assert len(calls) == 3


def test_throttling_is_retried_then_reported_as_retryable(endpoint, bucket):
    st = S3Storage(_config(endpoint, max_attempts=2, retry_mode="standard", connect_timeout_s=1.5))
    hook, calls = _http_error(503, "SlowDown")
    st.client.meta.events.register("before-send.s3", hook, unique_id="folio-test-slowdown")
    try:
        with pytest.raises(StorageError, match="SlowDown") as e:
            st.read(f"s3://{bucket}/a.png")
    finally:
        st.client.meta.events.unregister("before-send.s3", unique_id="folio-test-slowdown")
    assert e.value.retryable and len(calls) == 2  # max_attempts counts the first attempt

    hook, calls = _http_error(403, "AccessDenied")
    st.client.meta.events.register("before-send.s3", hook, unique_id="folio-test-denied")
    try:
        with pytest.raises(StorageError, match=f"access to bucket '{bucket}' denied") as e:
            list(st.list(f"s3://{bucket}/scans"))
    finally:
        st.client.meta.events.unregister("before-send.s3", unique_id="folio-test-denied")
    assert not e.value.retryable and len(calls) == 1
    assert SECRET not in str(e.value)


def test_storage_is_picklable_and_picks_up_the_environment(endpoint, bucket, monkeypatch):
    st = S3Storage()  # endpoint from AWS_ENDPOINT_URL, credentials from the environment
    assert st.client.meta.endpoint_url == endpoint
    assert st.client.meta.config.s3["addressing_style"] == "path"
    st.write_atomic(f"s3://{bucket}/p.json", b"{}")
    clone = pickle.loads(pickle.dumps(st))
    assert clone.read(f"s3://{bucket}/p.json") == b"{}"
    assert SECRET.encode() not in pickle.dumps(st)

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    assert S3Storage().read(f"s3://{bucket}/p.json") == b"{}"

    assert isinstance(get_storage("/tmp"), LocalStorage)
    with pytest.raises(StorageError, match="gs://") as e:
        get_storage("gs://bucket/x")
    assert not e.value.retryable


def test_storage_settings_are_validated_and_not_fingerprinted():
    from pipeline.run import fingerprint

    base = fingerprint(FolioConfig())
    moved = load_config(overrides={"storage.endpoint_url": "http://minio:9000", "storage.max_attempts": 3}, environ={})
    assert fingerprint(moved) == base  # where the bytes live does not change the output
    with pytest.raises(ConfigError, match="storage.endpoint_url") as e:
        load_config(overrides={"storage.endpoint_url": "http://key:hunter2@minio:9000"}, environ={})
    assert "hunter2" not in str(e.value)


# -- folio run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_scans(scans) -> Path:
    return scans(("invoice", 2, 1, ("png",), False))


def _folio_run(*args: str):
    return CliRunner().invoke(main, ["run", *args, "--quiet", "--exclude", "*.json"], catch_exceptions=False)


def _downloads(raw, bucket: str, prefix: str) -> dict[str, bytes]:
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    return {k: raw.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def _manifests(files: dict[str, bytes]) -> list[dict]:
    return [json.loads(v) for k, v in files.items() if "/_runs/" in k]


def test_folio_run_s3_to_s3_resumes_and_leaks_no_secret(endpoint, raw, s3_scans, caplog):
    import pyarrow.fs as pafs

    caplog.set_level(logging.DEBUG)
    raw.create_bucket(Bucket="in-bucket")
    raw.create_bucket(Bucket="out-bucket")
    for f in s3_scans.iterdir():
        raw.upload_file(str(f), "in-bucket", f"scans/{f.name}")

    first = _folio_run("s3://in-bucket/scans", "s3://out-bucket/results")
    assert first.exit_code == EXIT_OK, first.output

    host_port = endpoint.removeprefix("http://")
    fs = pafs.S3FileSystem(
        endpoint_override=host_port, scheme="http", access_key=ACCESS_KEY, secret_key=SECRET, region="us-east-1"
    )
    docs = ds.dataset("out-bucket/results/documents", filesystem=fs, partitioning="hive").to_table().to_pylist()
    pages = ds.dataset("out-bucket/results/pages", filesystem=fs, partitioning="hive").to_table().to_pylist()
    del fs
    assert sorted(d["source_uri"] for d in docs) == [
        "s3://in-bucket/scans/invoice_0001_0000.png", "s3://in-bucket/scans/invoice_0001_0001.png"
    ]
    assert all(d["status"] == "ok" and d["source_etag"] and d["run_date"] for d in docs)
    assert len(pages) == 2 and all(p["status"] == "ok" and p["text"].strip() for p in pages)
    assert "INVOICE" in " ".join(p["text"] for p in pages).upper()

    second = _folio_run("s3://in-bucket/scans", "s3://out-bucket/results")
    assert second.exit_code == EXIT_OK, second.output
    files = _downloads(raw, "out-bucket", "results/")
    counts = sorted((m["counts"]["skipped"], m["counts"]["documents"]) for m in _manifests(files))
    assert counts == [(0, 2), (2, 0)]  # the second run OCR'd nothing
    assert sum(k.startswith("results/documents/") for k in files) == 1  # and wrote no rows

    for name, data in files.items():
        assert SECRET.encode() not in data, name
    logs = caplog.text + first.output + second.output
    assert "botocore" in logs  # the client's debug log was captured, and yet:
    assert SECRET not in logs


def test_folio_run_local_in_s3_out(endpoint, raw, s3_scans, tmp_path):
    src = tmp_path / "one"
    src.mkdir()
    shutil.copy(s3_scans / "invoice_0001_0000.png", src)
    raw.create_bucket(Bucket="mixed-out")

    result = _folio_run(str(src), "s3://mixed-out/results")
    assert result.exit_code == EXIT_OK, result.output
    files = _downloads(raw, "mixed-out", "results/")
    (doc_key,) = [k for k in files if k.startswith("results/documents/run_date=")]
    (row,) = pq.read_table(io.BytesIO(files[doc_key])).to_pylist()
    assert row["source_uri"] == str((src / "invoice_0001_0000.png").resolve()) and row["status"] == "ok"
    (manifest,) = _manifests(files)
    assert manifest["dest"] == "s3://mixed-out/results"
    assert set(manifest["files"]) == {f"s3://mixed-out/{k}" for k in files if k.endswith(".parquet")}


def test_folio_run_names_a_missing_bucket(endpoint):
    result = _folio_run("s3://no-such-input-bucket/scans", "s3://out-bucket/results")
    assert result.exit_code == EXIT_FATAL
    assert "bucket 'no-such-input-bucket' does not exist" in result.output


def test_an_object_over_max_file_bytes_is_refused_without_being_downloaded(endpoint, raw, s3_scans, tmp_path):
    """The listing's size decides: the object is never fetched, and its row says why."""
    from tests.faultproxy import FaultProxy

    raw.create_bucket(Bucket="sizes")
    small, big = sorted(p for p in s3_scans.iterdir())
    raw.upload_file(str(small), "sizes", "in/small.png")
    raw.upload_file(str(big), "sizes", "in/big.png")
    limit = min(small.stat().st_size, big.stat().st_size) - 1
    requests: list[tuple[str, str]] = []

    def spy(n, method, path):
        requests.append((method, path))
        return None

    with FaultProxy(endpoint, spy) as proxy:
        result = _folio_run("s3://sizes/in", str(tmp_path / "out"), "--set", f"decode.max_file_bytes={limit}",
                            "--set", f"storage.endpoint_url={proxy.url}")
    assert result.exit_code == EXIT_DOCUMENTS_FAILED, result.output
    rows = ds.dataset(tmp_path / "out" / "documents", partitioning="hive").to_table().to_pylist()
    assert {(Path(r["source_uri"]).name, r["status"], r["error_code"]) for r in rows} == {
        ("small.png", "error", "file_too_large"), ("big.png", "error", "file_too_large")}
    assert all(f"decode.max_file_bytes={limit}" in r["error_message"] for r in rows)
    assert any(method == "GET" and "list-type=2" in path for method, path in requests)  # the proxy saw the listing
    fetched = [path for method, path in requests if method == "GET" and path.split("?")[0].endswith(".png")]
    assert fetched == [], fetched


def test_storage_reads_refuse_an_object_over_the_limit_from_its_size(endpoint, raw, tmp_path):
    """Where the planner did not know the size: S3 by the response's Content-Length, a local file by stat."""
    from pipeline.errors import FileTooLarge

    raw.create_bucket(Bucket="limits")
    raw.put_object(Bucket="limits", Key="doc.pdf", Body=b"%PDF-" + b"x" * 100)
    with pytest.raises(FileTooLarge, match="105 bytes"):
        S3Storage().read("s3://limits/doc.pdf", max_bytes=104)
    assert len(S3Storage().read("s3://limits/doc.pdf", max_bytes=105)) == 105
    local = tmp_path / "doc.pdf"
    local.write_bytes(b"%PDF-" + b"x" * 100)
    with pytest.raises(FileTooLarge, match="105 bytes"):
        LocalStorage().read(str(local), max_bytes=104)
    assert LocalStorage().read(str(local), max_bytes=105) == local.read_bytes()
