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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--engine", help="Inference engine (overrides engine.name).")
@click.option("--force", is_flag=True, help="Redo documents DEST already holds under the same config.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@_set_option
def run(src, dest, config_path, engine, force, quiet, sets):
    """OCR every document under SRC (a folder, recursively, or a file) into Parquet under DEST."""
    from pipeline.runner.local import run_local

    config = _load(config_path, sets, engine)
    if "://" not in src and not Path(src).exists():
        raise click.UsageError(f"source {src!r} does not exist")
    try:
        summary = run_local(src, dest, config, force=force, progress=not quiet)
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


@main.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--pages", type=click.IntRange(min=1), default=6, show_default=True, help="Total pages to write.")
@click.option("--kind", type=click.Choice(["invoice", "form", "book"]), default="invoice", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--formats", default="png,tiff,pdf", show_default=True, help="Comma list of png, jpeg, tiff, pdf.")
@click.option("--clean", is_flag=True, help="No scan damage (noise, blur, skew, lighting, bleed-through).")
@click.option("--dpi", type=click.IntRange(min=72, max=600), default=150, show_default=True)
def synth(dest, pages, kind, seed, formats, clean, dpi):
    """Write synthetic scanned documents with ground truth (a JSON per document) into DEST."""
    from pipeline import synth as synth_mod

    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    try:
        paths = synth_mod.generate(dest, pages, kind, seed=seed, formats=fmts, damage=not clean, dpi=dpi)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    click.echo(f"wrote {len(paths)} documents ({pages} pages) to {dest}")


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
    summary = run_local(str(src), str(dest), load_config())
    click.echo(
        f"{summary.documents} documents, {summary.pages} pages, {summary.failed} failed, "
        f"{summary.pages_per_second:.2f} pages/s\nParquet: {dest}/documents and {dest}/pages (manifest {summary.manifest})"
    )
    click.echo("read it with DuckDB:")
    click.echo(
        f"  python -c \"import duckdb; print(duckdb.sql(\\\"select doc_id[:12] as doc, page_index, "
        f"left(replace(text, chr(10), ' '), 60) as text from read_parquet('{dest}/pages/**/*.parquet', "
        f"hive_partitioning=true)\\\"))\""
    )
    click.echo("or with pyarrow:")
    click.echo(
        f"  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{dest}/pages', partitioning='hive')"
        f".to_table(columns=['doc_id','page_index','text']).to_pandas())\""
    )
    sys.exit(EXIT_DOCUMENTS_FAILED if summary.failed else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
