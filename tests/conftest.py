"""What the test modules share: settings that make tests cheaper, synthetic scans made once per
session, a local Ray, moto in server mode, reading output back, and the reliability report."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ACCESS_KEY = "testing"
SECRET = "folio-fake-secret-7d3b91e0"  # distinctive, so a leak anywhere is easy to spot

#: Settings that make a test cheaper without changing what it checks: detection on smaller pages.
FAST = {"detection.max_side_len": 960}
#: A Ray node of the CI's size (2 CPUs): one OCR actor with a whole CPU, decode tasks with half of one.
SMALL_RAY = {"ray.ocr_num_cpus": 1, "ray.decode_num_cpus": 0.5}


def fake_models(**sha256: str) -> dict:
    """Model files by role with the given digests, for fingerprints (``fake_models(detection="abc")``)."""
    from pipeline.models.zoo import ModelFile

    return {role: ModelFile(f"{role}.onnx", Path(f"{role}.onnx"), digest) for role, digest in sha256.items()}


def read_rows(dest: Path | str, table: str) -> list[dict]:
    """Every row of ``documents`` or ``pages`` under ``dest`` (a local folder)."""
    import pyarrow.dataset as ds

    return ds.dataset(Path(dest) / table, partitioning="hive").to_table().to_pylist()


#: One set of synthetic documents: (kind, pages, seed, formats, damage).
ScanSpec = tuple[str, int, int, tuple[str, ...], bool]


@pytest.fixture(scope="session")
def scans(tmp_path_factory):
    """``scans(*specs, dpi=150, truth=False)``: a folder of synthetic documents (measure.synth), made
    once per session for each distinct request. ``truth`` keeps the ground-truth JSON beside each
    document. Tests read the folder and never change it (copy it first)."""
    from measure import synth

    made: dict[tuple, Path] = {}

    def make(*specs: ScanSpec, dpi: int = 150, truth: bool = False) -> Path:
        key = (specs, dpi, truth)
        if key not in made:
            folder = tmp_path_factory.mktemp("scans")
            for kind, pages, seed, formats, damage in specs:
                synth.generate(folder, pages, kind, seed=seed, formats=formats, damage=damage, dpi=dpi)
            if not truth:
                for p in folder.glob("*.json"):
                    p.unlink()
            made[key] = folder
        return made[key]

    return make


#: Two clean invoices at 100 dpi: cheap documents that read well (a PNG and a PDF).
TWO_INVOICES: ScanSpec = ("invoice", 2, 41, ("png", "pdf"), False)


@pytest.fixture(scope="session")
def clean_docs(scans) -> Path:
    """Four clean documents of every kind and format, with ground truth."""
    return scans(("invoice", 2, 1, ("png", "pdf"), False), ("form", 1, 2, ("tiff",), False),
                 ("book", 1, 3, ("jpeg",), False), truth=True)


def start_local_ray(**env_vars: str):
    """(Re)start a local Ray of the CI's size whose workers can import ``tests`` (the stage plugins
    of tests/plugins) and see ``env_vars``. Workers inherit the driver's environment as it is now,
    so start Ray after setting what they need (the moto endpoint, for one)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent), **env_vars}})
    return ray


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module's tests (``start_local_ray``), shut down after them."""
    ray = start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto in server mode on a free local port; AWS_* point every client at it (and nowhere else)."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))  # never read the developer's ~/.aws
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        mp.setenv("AWS_ENDPOINT_URL", url)
        try:
            yield url
        finally:
            server.stop()


# -- the reliability report ---------------------------------------------------------------------
#
# `make reliability` runs the hostile-input and fault tests with --reliability-report
# docs/reliability.md: every test that uses the `reliability` fixture adds rows (what was done to
# Folio, what happened, wall time, peak memory of the test process and everything it started,
# Ray workers included), and the table is written when the session ends.

_ROWS: list[dict] = []


def pytest_addoption(parser):
    parser.addoption("--reliability-report", default=None, metavar="PATH",
                     help="Write the reliability table (hostile inputs and faults) to PATH.")


class _TreeMemory:
    """Peak resident memory of this process and all its descendants, sampled every 0.2 s."""

    def __init__(self):
        import os
        import threading

        self.root = os.getpid()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_rss_kb(self) -> int:
        from pathlib import Path

        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                pid = int(status.parent.name)
                parents[pid] = int(fields["PPid"])
                rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
            except (OSError, ValueError, KeyError):
                continue
        total = 0
        for pid, kb in rss.items():
            p, hops = pid, 0
            while p and p != self.root and hops < 64:
                p, hops = parents.get(p, 0), hops + 1
            if p == self.root:
                total += kb
        return total

    def _run(self):
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._tree_rss_kb())

    def __enter__(self):
        self.peak = self._tree_rss_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture()
def reliability(request):
    """``reliability(kind, name, happened)`` adds a row for this test to the reliability report."""
    import time

    rows: list[dict] = []

    def add(kind: str, name: str, happened: str, seconds: float | None = None, peak_mib: float | None = None):
        rows.append({"kind": kind, "name": name, "happened": happened, "seconds": seconds, "peak_mib": peak_mib})

    t0 = time.monotonic()
    with _TreeMemory() as mem:
        yield add
    seconds, peak = time.monotonic() - t0, mem.peak / 1024
    for row in rows:
        row["seconds"] = seconds if row["seconds"] is None else row["seconds"]
        row["peak_mib"] = peak if row["peak_mib"] is None else row["peak_mib"]
        row["test"] = request.node.nodeid
    request.node._reliability_rows = rows


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" and getattr(item, "_reliability_rows", None):
        passed = all(getattr(item, f"_rep_{w}", True) for w in ("setup", "call")) and report.passed
        for row in item._reliability_rows:
            _ROWS.append(row | {"passed": passed})
    elif report.when in ("setup", "call"):
        setattr(item, f"_rep_{report.when}", report.passed)


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--reliability-report", default=None)
    if not path or not _ROWS:
        return
    import datetime as dt
    import platform
    from pathlib import Path

    lines = [
        "# Reliability: hostile inputs and faults",
        "",
        "Regenerated by `make reliability` (pytest with `--reliability-report docs/reliability.md` over "
        "tests/test_hostile.py and tests/test_faults.py). Each row is a test that must pass: what was done to "
        "Folio, what happened, the wall time of the test and the peak resident memory of the test process and "
        "everything it started (Ray workers included).",
        "",
        f"Machine: {platform.machine()}, {__import__('os').cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "| kind | input or fault | what happened | time (s) | peak memory (MiB) | result |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in sorted(_ROWS, key=lambda r: (r["kind"], r["test"], r["name"])):
        lines.append(f"| {row['kind']} | {row['name']} | {row['happened']} | {row['seconds']:.3f} | "
                     f"{row['peak_mib']:.0f} | {'pass' if row['passed'] else '**FAIL**'} |")
    Path(path).write_text("\n".join(lines) + "\n")
