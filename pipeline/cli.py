"""The ``folio`` command line.

``folio run`` and ``folio config`` live here; the packages above the library
add their own commands through the ``folio.commands`` entry points
(``pyproject.toml``): ``folio flows`` (the Prefect flows), and ``folio eval``,
``bench``, ``synth``, ``dewarp`` and ``demo`` (the measuring tools). They are
imported only when invoked, so ``folio run`` pays for neither Prefect nor
the benchmark.

Exit codes (one place, here): 0 every document ok; 1 the run finished but some
documents failed (``partial`` or ``error`` rows); 2 usage or configuration
error; 3 the run itself could not proceed (models missing, output unwritable).
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
import yaml

from pipeline.errors import ConfigError, FolioError

__all__ = ["main", "parse_overrides", "load_cli_config", "config_option", "set_option", "EXIT_OK",
           "EXIT_DOCUMENTS_FAILED", "EXIT_USAGE", "EXIT_FATAL"]

EXIT_OK = 0
EXIT_DOCUMENTS_FAILED = 1
EXIT_USAGE = 2
EXIT_FATAL = 3

log = logging.getLogger("folio")


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """``("section.field=value", ...)`` as a dict of dotted keys to YAML-parsed values."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE (e.g. detection.box_thresh=0.6)", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_cli_config(config_path, sets, engine=None):
    """The config of ``--config``, ``--set`` and ``--engine``; a usage error (exit 2) when it is invalid."""
    from pipeline.config import load_config

    overrides = parse_overrides(sets)
    if engine:
        overrides["engine.name"] = engine
    try:
        return load_config(config_path, overrides)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e


#: The entry-point group other packages add ``folio`` subcommands through.
COMMANDS_GROUP = "folio.commands"


class _PluginGroup(click.Group):
    """A group that adds the subcommands other packages declare under :data:`COMMANDS_GROUP`,
    each imported only when it is invoked (``folio flows`` imports Prefect; ``folio run`` should
    not pay for that)."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        plugin = self._plugins().get(name)
        if plugin is None:
            return None
        try:
            return plugin.load()
        except ImportError as e:  # a package that is not installed must not break the other commands
            log.debug("folio %s is unavailable: %s", name, e)
            return _unavailable(name, plugin.value, e)


def _unavailable(name: str, target: str, error: ImportError) -> click.Command:
    """A stand-in for a subcommand whose package cannot be imported: it says why, and exits 2."""

    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=f"(unavailable: {error})", add_help_option=False)
    def command() -> None:
        raise click.UsageError(f"folio {name} is unavailable: {target} cannot be imported ({error})")

    return command


@click.group(cls=_PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="folio")
def main(verbose: int) -> None:
    """Folio: batch OCR for scanned documents, object storage in, Parquet out."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (see configs/default.yaml)."
)
set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting, e.g. --set decode.pdf_dpi=200."
)


def selection_options(command):
    """The options that pick documents of an existing output (``folio export``, ``folio fields``), as the
    reprocess flow picks them; :func:`_selection` turns them into a selection."""
    for option in reversed((
        click.option("--doc-id", "doc_ids", multiple=True, help="Only this document (repeatable)."),
        click.option("--source-prefix", help="Only documents whose source URI starts with this."),
        click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only documents processed on or after (UTC)."),
        click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Only documents processed on or before (UTC)."),
        click.option("--fingerprint", "fingerprints", multiple=True, help="Only documents with this config fingerprint."),
        click.option("--run-id", "run_ids", multiple=True, help="Only what this run (or run id prefix) wrote (repeatable)."),
    )):
        command = option(command)
    return command


def _selection(doc_ids, source_prefix, since, until, fingerprints, below_confidence=None):
    from pipeline.output.catalog import Selection

    return Selection(doc_ids=tuple(doc_ids), source_prefix=source_prefix, since=since.date() if since else None,
                     until=until.date() if until else None, fingerprints=tuple(fingerprints),
                     below_confidence=below_confidence)


@main.command()
@click.argument("src")
@click.argument("dest")
@config_option
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
@set_option
def run(src, dest, config_path, engine, force, quiet, exclude, runner, address, sets):
    """OCR every document under SRC (a folder, recursively, or a file) into Parquet under DEST."""
    from pipeline.run import run as run_documents

    config = load_cli_config(config_path, sets, engine)
    if "://" not in src and not Path(src).exists():
        raise click.UsageError(f"source {src!r} does not exist")
    try:
        summary = run_documents(src, dest, config, runner=runner, address=address, force=force, progress=not quiet,
                                exclude=exclude)
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


@main.command("export")
@click.argument("src")
@click.argument("dest")
@click.option("--format", "formats", multiple=True, required=True,
              type=click.Choice(["alto", "page", "hocr", "pdf", "txt"]),
              help="What to write (repeatable): alto (ALTO 4.4, a file per page), page (PAGE-XML 2019, a file per "
              "page), hocr, pdf (the source's pages with an invisible text layer, PDF/A-2b) or txt.")
@selection_options
@click.option("--below-confidence", type=float, help="Only documents with a lower mean line confidence.")
@click.option("--relative-to", help="Name exports after the source's path below this prefix (default: the folder "
              "the exported sources share).")
@click.option("--words", type=click.Choice(["text", "all"]), default=None,
              help="text: the words of the page text; all: every word read, those below "
              "recognition.min_word_confidence too, with their confidence [default: output.export_words, text].")
@config_option
@set_option
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def export_cmd(src, dest, formats, doc_ids, source_prefix, since, until, fingerprints, below_confidence, run_ids,
               relative_to, words, config_path, sets, quiet):
    """Write ALTO, PAGE-XML, hOCR, searchable PDF or text of the documents under the Folio output SRC into
    DEST/<format>/ (each document's newest rows). Error documents export nothing and are listed."""
    from pipeline.output.exports.export import export

    if "://" not in src and not Path(src).is_dir():
        raise click.UsageError(f"SRC {src!r} is not a folder holding a Folio output")
    selection = _selection(doc_ids, source_prefix, since, until, fingerprints, below_confidence)
    from tqdm import tqdm

    config = load_cli_config(config_path, sets)
    bar = tqdm(desc="export", unit="doc", disable=quiet, file=sys.stderr)
    try:
        report = export(src, dest, formats, selection=selection, run_ids=run_ids or None, relative_to=relative_to,
                        storage_config=config.storage, on_document=lambda report: bar.update(1),
                        words=words or config.output.export_words)
    except FolioError as e:
        click.echo(f"folio: export failed ({e.code}): {e.message}", err=True)
        sys.exit(EXIT_FATAL)
    finally:
        bar.close()
    for uri, why in report.failed:
        click.echo(f"not exported: {uri}: {why}", err=True)
    for uri, pages in report.partial:
        click.echo(f"pages not exported: {uri}: {', '.join(str(p) for p in pages)}", err=True)
    if not quiet:
        files = ", ".join(f"{n} {fmt}" for fmt, n in report.files.items())
        click.echo(f"folio: {report.documents} documents exported ({files}), {len(report.failed)} not, "
                   f"in {report.seconds:.1f} s -> {dest}", err=True)
    sys.exit(EXIT_DOCUMENTS_FAILED if report.failed or report.partial else EXIT_OK)


@main.command("fields")
@click.argument("src")
@click.argument("dest")
@config_option
@set_option
@selection_options
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def fields_cmd(src, dest, config_path, sets, doc_ids, source_prefix, since, until, fingerprints, run_ids, quiet):
    """Extract invoice fields (supplier, number, dates, amounts, currency, line items) from the documents
    already read under the Folio output SRC, without OCR, into a new run under DEST (which may be SRC):
    the fields and line_items tables, and the documents' rows with needs_review. Exit 1 when some
    documents need review or could not be read."""
    from pipeline.output.refields import extract_fields

    if "://" not in src and not Path(src).is_dir():
        raise click.UsageError(f"SRC {src!r} is not a folder holding a Folio output")
    config = load_cli_config(config_path, sets)
    selection = _selection(doc_ids, source_prefix, since, until, fingerprints)
    from tqdm import tqdm

    bar = tqdm(desc="fields", unit="doc", disable=quiet, file=sys.stderr)
    try:
        report = extract_fields(src, dest, config, selection=selection, run_ids=run_ids or None,
                                on_document=lambda report: bar.update(1))
    except FolioError as e:
        click.echo(f"folio: fields failed ({e.code}): {e.message}", err=True)
        sys.exit(EXIT_FATAL)
    finally:
        bar.close()
    for uri, why in report.skipped:
        click.echo(f"no fields: {uri}: {why}", err=True)
    if not quiet:
        for uri, reasons in report.needs_review.items():
            click.echo(f"needs review: {uri}: {', '.join(reasons)}", err=True)
        found = ", ".join(f"{name} {n}" for name, n in sorted(report.fields_found.items()))
        click.echo(f"folio: fields of {report.tally.documents} documents ({len(report.needs_review)} need review; "
                   f"found: {found or 'none'}) in {report.tally.seconds:.1f} s -> {dest} (run {report.tally.run_id})",
                   err=True)
    sys.exit(EXIT_DOCUMENTS_FAILED if report.skipped or report.needs_review else EXIT_OK)


@main.command("config")
@config_option
@set_option
@click.option("--defaults", is_flag=True, help="Print the defaults (what configs/default.yaml holds).")
def config_cmd(config_path, sets, defaults):
    """Print the effective configuration as commented YAML, and its fingerprint."""
    from pipeline.config import DEFAULTS_HEADER, FolioConfig, to_yaml

    if defaults:
        click.echo(to_yaml(FolioConfig(), DEFAULTS_HEADER), nl=False)
        return
    config = load_cli_config(config_path, sets)
    click.echo(to_yaml(config), nl=False)
    try:
        from pipeline.run import fingerprint

        click.echo(f"# config_fingerprint: {fingerprint(config)}")
    except FolioError as e:
        click.echo(f"# config_fingerprint: unavailable ({e.message})")


if __name__ == "__main__":  # pragma: no cover
    main()
