"""The ``folio`` command line.

Exit codes (one place, here): 0 every document ok; 1 the run finished but some
documents failed (``partial`` or ``error`` rows); 2 usage or configuration
error; 3 the run itself could not proceed (models missing, output unwritable).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import yaml

from pipeline.errors import ConfigError, FolioError

__all__ = ["main", "EXIT_OK", "EXIT_DOCUMENTS_FAILED", "EXIT_USAGE", "EXIT_FATAL"]

EXIT_OK = 0
EXIT_DOCUMENTS_FAILED = 1
EXIT_USAGE = 2
EXIT_FATAL = 3

log = logging.getLogger("folio")


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE (e.g. detection.box_thresh=0.6)", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _load(config_path, sets, engine=None):
    from pipeline.config import load_config

    overrides = _overrides(sets)
    if engine:
        overrides["engine.name"] = engine
    try:
        return load_config(config_path, overrides)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e


class _LazyGroup(click.Group):
    """A group whose heavier subcommand groups are imported only when invoked (``folio flows``
    imports Prefect; ``folio run`` should not pay for that)."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx, name):
        if name in self.lazy:
            import importlib

            module, _, attr = self.lazy[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, lazy={"flows": "flows.cli:flows"}, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="folio")
def main(verbose: int) -> None:
    """Folio: batch OCR for scanned documents, object storage in, Parquet out."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (see configs/default.yaml)."
)
_set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting, e.g. --set decode.pdf_dpi=200."
)


@main.command()
@click.argument("src")
@click.argument("dest")
@_config_option
@click.option("--engine", type=click.Choice(["auto", "onnxruntime", "torch", "tesseract"]),
              help="Inference engine (overrides engine.name): auto (torch on CUDA, else onnxruntime), "
              "onnxruntime, torch or tesseract.")
@click.option("--force", is_flag=True, help="Redo documents DEST already holds under the same config.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@click.option(
    "--exclude", multiple=True, metavar="GLOB", help="Leave out inputs whose relative path or name matches, e.g. '*.json'."
)
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one process. ray: Ray Data over a local Ray or the cluster at --address.")
@click.option("--address", help="Ray cluster address (default: ray.address in the config, RAY_ADDRESS, else local).")
@_set_option
def run(src, dest, config_path, engine, force, quiet, exclude, runner, address, sets):
    """OCR every document under SRC (a folder, recursively, or a file) into Parquet under DEST."""
    from pipeline.runner.local import run_local

    config = _load(config_path, sets, engine)
    if "://" not in src and not Path(src).exists():
        raise click.UsageError(f"source {src!r} does not exist")
    try:
        if runner == "ray":
            from pipeline.runner.ray_data import run_ray

            summary = run_ray(src, dest, config, force=force, progress=not quiet, exclude=exclude, address=address)
        else:
            summary = run_local(src, dest, config, force=force, progress=not quiet, exclude=exclude)
    except FolioError as e:
        click.echo(f"folio: run failed ({e.code}): {e.message}", err=True)
        sys.exit(EXIT_FATAL)
    if not quiet:
        click.echo(
            f"folio: {summary.documents} documents ({summary.skipped} skipped), {summary.pages} pages, "
            f"{summary.failed} failed, in {summary.seconds:.1f} s ({summary.pages_per_second:.2f} pages/s)",
            err=True,
        )
        for code, count in sorted(summary.errors_by_code.items()):
            click.echo(f"  {code}: {count}", err=True)
        click.echo(f"output: {dest}  manifest: {summary.manifest}", err=True)
    sys.exit(EXIT_DOCUMENTS_FAILED if summary.failed else EXIT_OK)


@main.command("config")
@_config_option
@_set_option
@click.option("--defaults", is_flag=True, help="Print the defaults (what configs/default.yaml holds).")
def config_cmd(config_path, sets, defaults):
    """Print the effective configuration as commented YAML, and its fingerprint."""
    from pipeline.config import DEFAULTS_HEADER, FolioConfig, config_fingerprint, to_yaml

    if defaults:
        click.echo(to_yaml(FolioConfig(), DEFAULTS_HEADER), nl=False)
        return
    config = _load(config_path, sets)
    click.echo(to_yaml(config), nl=False)
    try:
        from pipeline.stages import stage_models

        hashes = {k: m.sha256 for k, m in stage_models(config).items()}
        click.echo(f"# config_fingerprint: {config_fingerprint(config, hashes)}")
    except FolioError as e:
        click.echo(f"# config_fingerprint: unavailable ({e.message})")


@main.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--pages", type=click.IntRange(min=1), default=6, show_default=True, help="Total pages to write.")
@click.option("--kind", type=click.Choice(["invoice", "form", "book"]), default="invoice", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--formats", default="png,tiff,pdf", show_default=True, help="Comma list of png, jpeg, tiff, pdf.")
@click.option("--clean", is_flag=True, help="No scan damage (noise, blur, skew, lighting, bleed-through).")
@click.option("--dpi", type=click.IntRange(min=72, max=600), default=150, show_default=True)
@click.option("--distort", type=click.Choice(["perspective", "rotate", "skew", "curl", "all"]), default=None,
              help="Warp every page: a photo on a table, a quarter turn, a 2-15 degree skew, a curled book page; "
              "all: one sub-folder of --pages pages each. Ground truth keeps the flat text.")
@click.option("--hostile", is_flag=True, help="Instead, write the hostile-input corpus (pipeline/hostile.py) and "
              "hostile_manifest.json with each input's expected outcome; other options are ignored.")
def synth(dest, pages, kind, seed, formats, clean, dpi, distort, hostile):
    """Write synthetic scanned documents with ground truth (a JSON per document) into DEST."""
    if hostile:
        _synth_hostile(dest)
        return
    from pipeline import synth as synth_mod

    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    try:
        paths = synth_mod.generate(dest, pages, kind, seed=seed, formats=fmts, damage=not clean, dpi=dpi,
                                   distort=distort)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    total = pages * (4 if distort == "all" else 1)
    click.echo(f"wrote {len(paths)} documents ({total} pages) to {dest}")


def _synth_hostile(dest: str) -> None:
    from pipeline import hostile

    written = hostile.generate(dest)
    sets = " ".join(f"--set {k}={v}" for k, v in hostile.CORPUS_OVERRIDES.items())
    click.echo(f"wrote {len(written)} hostile inputs and {hostile.MANIFEST_NAME} to {dest}; "
               f"run them with: folio run {dest} OUT --exclude '*.json' {sets}")


@main.command()
@click.argument("workdir", default="demo", type=click.Path(file_okay=False))
@click.option("--pages", type=click.IntRange(min=1), default=6, show_default=True)
def demo(workdir, pages):
    """The main job on the embedded default: synthesize a few scans, OCR them, show how to read the output."""
    from pipeline import synth as synth_mod
    from pipeline.config import load_config
    from pipeline.runner.local import run_local

    src, dest = Path(workdir, "scans"), Path(workdir, "output")
    if not src.exists():
        per_kind = max(1, pages // 3)
        for i, kind in enumerate(("invoice", "form", "book")):
            synth_mod.generate(src / kind, per_kind if i < 2 else max(1, pages - 2 * per_kind), kind, seed=i)
    click.echo(f"scans: {src}")
    summary = run_local(str(src), str(dest), load_config(), exclude=("*.json",))
    click.echo(
        f"{summary.documents} documents, {summary.pages} pages, {summary.failed} failed, "
        f"{summary.pages_per_second:.2f} pages/s\nParquet: {dest}/documents and {dest}/pages (manifest {summary.manifest})"
    )
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    click.echo("read it with DuckDB:")
    click.echo(
        f"  {python} -c \"import duckdb; print(duckdb.sql(\\\"select doc_id[:12] as doc, page_index, "
        f"left(replace(text, chr(10), ' '), 60) as text from read_parquet('{dest}/pages/**/*.parquet', "
        f"hive_partitioning=true)\\\"))\""
    )
    click.echo("or with pyarrow:")
    click.echo(
        f"  {python} -c \"import pyarrow.dataset as ds; print(ds.dataset('{dest}/pages', partitioning='hive')"
        f".to_table(columns=['doc_id','page_index','text']).to_pandas())\""
    )
    sys.exit(EXIT_DOCUMENTS_FAILED if summary.failed else EXIT_OK)


@main.command("eval")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["funsd", "sroie", "alto", "lines", "synth"]))
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--system", type=click.Choice(["folio", "rapidocr", "tesseract"]), default="folio", show_default=True)
@_config_option
@_set_option
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pages (sorted by id).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the summary and per-page scores here.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-page table.")
def eval_cmd(fmt, path, system, config_path, sets, limit, json_out, quiet):
    """Run OCR over a labelled set in FORMAT at PATH and score it.

    Word precision/recall/F1 (bag of NFKC whitespace tokens per page), CER of
    lines matched to ground truth at IoU >= 0.5, detection precision/recall/H-mean,
    seconds per page. The last line printed is a one-line summary.
    """
    import json

    from pipeline.benchmark import evaluate, make_system
    from pipeline.datasets import read_dataset

    config = _load(config_path, sets)
    samples = read_dataset(fmt, path, limit)
    if not samples:
        raise click.UsageError(f"no labelled pages found in {path} as {fmt}")
    try:
        ocr = make_system(system, config)
    except (RuntimeError, FolioError) as e:
        click.echo(f"folio eval: {e}", err=True)
        sys.exit(EXIT_FATAL)
    summary, scores = evaluate(ocr, samples, config, progress=not quiet)
    if not quiet:
        click.echo(f"{'page':40s} {'P':>6s} {'R':>6s} {'F1':>6s} {'CER':>6s} {'det-H':>6s} {'s':>6s}")
        for s in scores:
            det = f"{s.det_hmean:6.3f}" if s.det_scored else "     -"
            click.echo(
                f"{s.sample_id[-40:]:40s} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.cer:6.3f} {det} {s.seconds:6.2f}"
            )
    if json_out:
        payload = {
            **summary, "system": system, "format": fmt, "path": str(path),
            "config": config.model_dump(mode="json") if system == "folio" else None,
            "per_page": [
                {"id": s.sample_id, "word_precision": s.precision, "word_recall": s.recall, "word_f1": s.f1,
                 "cer": s.cer, "det_hmean": s.det_hmean if s.det_scored else None, "seconds": s.seconds}
                for s in scores
            ],
        }
        Path(json_out).write_text(json.dumps(payload, indent=2))

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    click.echo(
        f"{system} on {fmt} ({summary['pages']} pages): word P {f(summary['word_precision'])} "
        f"R {f(summary['word_recall'])} F1 {f(summary['word_f1'])} | CER {f(summary['cer'])} | "
        f"det H-mean {f(summary['det_hmean'])} | {f(summary['seconds_per_page'])} s/page"
    )


def _bench_args(argv: list[str]) -> list[str]:
    """The arguments that say what was measured: without where the report went (--json, --markdown),
    so a rerun replaces its section of docs/benchmarks.md instead of adding one."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--json", "--markdown"):
            skip = True
        elif not arg.startswith(("--json=", "--markdown=")):
            out.append(arg)
    return out


@main.group("dewarp")
def dewarp_group() -> None:
    """Measure the dewarp stage (docs/dewarp.md)."""


@dewarp_group.command("check")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pages.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report here.")
def dewarp_check(path, config_path, sets, limit, json_out):
    """Dewarp a `folio synth --distort` set and compare with the distortion each page records.

    Prints pages turned upright, skew errors (degrees), page-corner errors
    (pixels) and milliseconds per page; the last line is a one-line summary.
    """
    import json

    from pipeline.dewarp import check_synth

    report = check_synth(path, _load(config_path, sets), limit=limit)
    if not report["pages"]:
        raise click.UsageError(f"no `folio synth` pages found under {path}")
    for wrong in report["rotation_wrong"]:
        click.echo(f"wrong way up: {wrong}")
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))

    def f(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    click.echo(
        f"dewarp on {path} ({report['pages']} pages): upright {report['rotation_right']}/{report['pages']} | "
        f"skew error mean {f(report['skew_abs_err_mean'])} max {f(report['skew_abs_err_max'])} deg | "
        f"page outline found {report['quad_found']}, corner error max {f(report['quad_corner_err_max_px'], '.1f')} px | "
        f"{f(report['ms_per_page'], '.0f')} ms/page"
    )


@dewarp_group.command("samples")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the rows here.")
@click.option("--ocr/--no-ocr", default=True, show_default=True,
              help="OCR each photo with dewarping off and on; --no-ocr only dewarps (what it finds, its time).")
def dewarp_samples(path, config_path, sets, json_out, ocr):
    """OCR real photos (../shared/eval/dewarp_samples) with dewarping off and on.

    One row per photo: what dewarping found, the milliseconds it took, OCR
    seconds both ways, and CER / word F1 both ways where reference text exists.
    With --no-ocr, any folder of scans: what dewarping does to them and its time.
    """
    import json
    import statistics

    from pipeline.dewarp import check_samples

    rows = check_samples(path, _load(config_path, sets), ocr=ocr)
    if not rows:
        raise click.UsageError(f"no .png/.jpg photos found under {path}")
    click.echo(f"{'photo':28s} {'rot':>4s} {'skew':>6s} {'quad':>5s} {'curl':>5s} {'ms':>6s} {'CER off':>8s} {'CER on':>8s}")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['image'][-28:]:28s} not read: {r['error']}")
            continue
        cer_off = f"{r['cer_off']:8.3f}" if "cer_off" in r else "       -"
        cer_on = f"{r['cer_on']:8.3f}" if "cer_on" in r else "       -"
        click.echo(f"{r['image'][-28:]:28s} {r['rotation']:4d} {r['skew_deg']:6.2f} {str(r['quad']):>5s} "
                   f"{str(r['curl_corrected']):>5s} {r['dewarp_ms']:6.0f} {cer_off} {cer_on}")
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=2, default=str))
    scored = [r for r in rows if "cer_off" in r]
    cer = (f"CER off {statistics.mean(r['cer_off'] for r in scored):.3f} on "
           f"{statistics.mean(r['cer_on'] for r in scored):.3f} ({len(scored)} with reference text)"
           if scored else "no reference text")
    timed = [r["dewarp_ms"] for r in rows if "dewarp_ms" in r]
    median = f"median {statistics.median(timed):.0f} ms dewarping per page" if timed else "no photo could be read"
    unread = sum("error" in r for r in rows)
    click.echo(f"dewarp on {len(rows)} photos{f' ({unread} not read)' if unread else ''}: {cer} | {median}")


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Timed repeats; the median counts.")
@click.option("--format", "fmt", type=click.Choice(["funsd", "sroie", "alto", "lines", "synth"]),
              help="Labelled-set format (default: guessed from the layout; a plain folder has no ground truth).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pages.")
@click.option("--systems", default=None, help="Comma list of folio, rapidocr, tesseract, folio-ray "
              "[default: folio,rapidocr,tesseract; with --runner ray: folio,folio-ray].")
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: time the Ray runner against the local runner on the same pages.")
@_config_option
@_set_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the full report here.")
@click.option("--markdown", "md_out", type=click.Path(dir_okay=False), default="docs/benchmarks.md", show_default=True,
              help="Regenerate this Markdown table ('' to skip).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="cuda: Folio runs the torch engine on the GPU and reports GPU utilisation and peak GPU memory; "
              "cpu: Folio's torch engine (if configured) stays on the CPU. Default: as the config says.")
def bench(path, repeat, fmt, limit, systems, runner, config_path, sets, json_out, md_out, device):
    """Time Folio's local runner, RapidOCR's loop and the tesseract CLI on the same pages."""
    import json

    from pipeline.benchmark import bench as run_bench
    from pipeline.benchmark import bench_markdown, update_markdown

    if device == "cuda":
        from pipeline.benchmark import cuda_problem

        problem = cuda_problem()
        if problem:
            raise click.UsageError(f"--device cuda: {problem}")
        sets = (*sets, "engine.name=torch", "engine.device=cuda")
    elif device == "cpu":
        sets = (*sets, "engine.device=cpu")
    _load(config_path, sets)  # fail fast on a bad config
    if systems is None:
        systems = "folio,folio-ray" if runner == "ray" else "folio,rapidocr,tesseract"
    report = run_bench(
        path, systems=[s.strip() for s in systems.split(",") if s.strip()], repeat=repeat, fmt=fmt, limit=limit,
        config_path=config_path, overrides=_overrides(sets),
    )
    table = bench_markdown(report)
    click.echo(table)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
    if md_out:
        update_markdown(md_out, "folio bench " + " ".join(_bench_args(sys.argv[2:])), table)
    for key, value in report["ratios"].items():
        click.echo(f"{key}: {value:.2f}x")


if __name__ == "__main__":  # pragma: no cover
    main()
