"""The measuring commands of ``folio``: ``eval``, ``bench``, ``synth``, ``dewarp``, ``demo``, and ``train``
(which learns from the same labelled sets ``eval`` reads).

They are added to the ``folio`` command through the ``folio.commands`` entry
points (``pyproject.toml``); exit codes are ``folio``'s
(:mod:`pipeline.cli`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.cli import (
    EXIT_DOCUMENTS_FAILED,
    EXIT_FATAL,
    EXIT_OK,
    config_option,
    load_cli_config,
    parse_overrides,
    set_option,
)
from measure.datasets import FORMATS
from measure.synth import KINDS
from pipeline.errors import FolioError

__all__ = ["eval_cmd", "bench", "synth", "dewarp_group", "demo", "train"]


@click.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--pages", type=click.IntRange(min=1), default=6, show_default=True, help="Total pages to write.")
@click.option("--kind", type=click.Choice(list(KINDS)), default="invoice", show_default=True,
              help="Document kind: invoice, form, book, newspaper (3-4 columns) or journal (2 columns).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--formats", default="png,tiff,pdf", show_default=True,
              help="Comma list of png, jpeg, tiff, pdf (scans), pdf-text (born-digital PDFs: real text, no scan damage).")
@click.option("--clean", is_flag=True, help="No scan damage (noise, blur, skew, lighting, bleed-through).")
@click.option("--dpi", type=click.IntRange(min=72, max=600), default=150, show_default=True)
@click.option("--distort", type=click.Choice(["perspective", "rotate", "skew", "curl", "curl-strong", "all"]),
              default=None, help="Warp every page: a photo on a table, a quarter turn, a 2-15 degree skew, a curled "
              "book page, one curled hard over most of its width (long lines bending all along, most near the spine); "
              "all: one sub-folder of --pages pages each. Ground truth keeps the flat text.")
@click.option("--anomaly", type=click.Choice(["no-total", "two-totals", "amounts-mismatch", "date-order"]), default=None,
              help="Invoices only: draw each with this fault; its JSON says so and what a review should flag.")
@click.option("--hostile", is_flag=True, help="Instead, write the hostile-input corpus (measure/hostile.py) and "
              "hostile_manifest.json with each input's expected outcome; other options are ignored.")
def synth(dest, pages, kind, seed, formats, clean, dpi, distort, anomaly, hostile):
    """Write synthetic scanned documents with ground truth (a JSON per document) into DEST."""
    if hostile:
        _synth_hostile(dest)
        return
    from measure import synth as synth_mod

    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    try:
        paths = synth_mod.generate(dest, pages, kind, seed=seed, formats=fmts, damage=not clean, dpi=dpi,
                                   distort=distort, anomaly=anomaly)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    total = pages * (len(synth_mod.DISTORTIONS) if distort == "all" else 1)
    click.echo(f"wrote {len(paths)} documents ({total} pages) to {dest}")


def _synth_hostile(dest: str) -> None:
    from measure import hostile

    written = hostile.generate(dest)
    sets = " ".join(f"--set {k}={v}" for k, v in hostile.CORPUS_OVERRIDES.items())
    click.echo(f"wrote {len(written)} hostile inputs and {hostile.MANIFEST_NAME} to {dest}; "
               f"run them with: folio run {dest} OUT --exclude '*.json' {sets}")


@click.command()
@click.argument("workdir", default="demo", type=click.Path(file_okay=False))
@click.option("--pages", type=click.IntRange(min=1), default=6, show_default=True)
def demo(workdir, pages):
    """The main job on the embedded default: a few synthetic scans in a local folder, read by the
    archive flow on Prefect's embedded server and a local Ray into Parquet, ALTO and searchable PDFs;
    then how to read the output."""
    from flows.archive import archive_flow
    from measure import synth as synth_mod

    src, dest = Path(workdir, "scans"), Path(workdir, "output")
    if not src.exists():
        per_kind = max(1, pages // 3)
        for i, kind in enumerate(("invoice", "form", "book")):
            synth_mod.generate(src / kind, per_kind if i < 2 else max(1, pages - 2 * per_kind), kind, seed=i)
    click.echo(f"scans: {src}")
    click.echo("running the archive flow (Prefect's embedded server unless PREFECT_API_URL is set, a local Ray)")
    state = archive_flow(str(src), str(dest), exclude=["*.json"], return_state=True)
    if not state.is_completed():
        click.echo(f"the archive flow {state.name.lower()}: {state.result(raise_on_failure=False)}", err=True)
        sys.exit(EXIT_FATAL)
    report = state.result()
    t = report.tally
    click.echo(
        f"{t.documents} documents, {t.pages} pages, {t.failed} failed, {report.pages_per_second:.2f} pages/s\n"
        f"Parquet: {dest}/documents and {dest}/pages (runs: {', '.join(report.run_ids)})"
    )
    for fmt, files in report.exported.items():
        click.echo(f"{fmt}: {files} files under {dest}/{fmt}/")
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
    sys.exit(EXIT_DOCUMENTS_FAILED if t.failed else EXIT_OK)


@click.command("eval")
@click.argument("fmt", metavar="FORMAT", type=click.Choice([*FORMATS, "sroie-keys", "invoice2data"]))
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--system", type=click.Choice(["folio", "rapidocr", "tesseract", "tesseract-alto", "tesseract-pdf",
                                            "folio-alto", "folio-pdf", "gt-lines"]), default="folio",
              show_default=True, help="tesseract-alto, tesseract-pdf: Tesseract's own ALTO file or searchable "
              "PDF, read back as an archive would load them; folio-alto, folio-pdf: Folio's ALTO and PDF/A "
              "exports read back the same way. gt-lines: no OCR; Folio's layout stage orders the ground truth's own lines "
              "(boxes and text), so the reading-order CER measures the order alone (sroie-keys: the fields "
              "stage reads them, so the score is the extraction's alone).")
@config_option
@set_option
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pages (sorted by id); documents for "
              "sroie-keys and invoice2data.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the summary and per-page scores here.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-page table.")
@click.option("--from-output", "from_output", metavar="DEST", help="sroie-keys, invoice2data: take the pages from "
              "this Folio output (`folio run` of the set's files) instead of reading the files again.")
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False), help="Only the pages (documents for "
              "sroie-keys and invoice2data) whose ids this file lists, one per line (`folio train` writes its "
              "held-out pages as such a file).")
@click.option("--prediction", "prediction", type=click.Path(exists=True, file_okay=False), help="Score another "
              "system's output instead of running OCR: the files in this folder, in FORMAT (PAGE-XML for page, ALTO "
              "for alto), paired with the ground truth by image file name; e.g. the ABBYY FineReader output beside "
              "newspapers_nzz (its abbyy_server11/).")
def eval_cmd(fmt, path, system, config_path, sets, limit, json_out, quiet, from_output, ids_file, prediction):
    """Run OCR over a labelled set in FORMAT at PATH and score it.

    Word precision/recall/F1 (bag of NFKC whitespace tokens per page), and beside
    it the set F1 TurboOCR publishes (lowercased tokens of 2 characters or more,
    set overlap per page, averaged over pages), CER of lines matched to ground
    truth at IoU >= 0.5, detection precision/recall/H-mean, seconds per page. The
    last line printed is a one-line summary.

    pdf-text: every page of the PDFs at PATH against the words PDFium extracts
    from the file's own text; Folio reads each whole file as ``folio run`` does,
    and the words it read from the file are scored (word F1 1.0: the file's words).

    sroie-keys, invoice2data: the invoice and receipt fields (supplier, dates,
    total...) the fields stage finds, against the set's key fields: per-field
    precision/recall/F1, confidence calibration, review flags, time per document
    (measure/fields_eval.py says how values are compared).
    """
    import json

    listed = _id_list(ids_file)
    wanted = set(listed) if listed is not None else None
    if fmt in ("sroie-keys", "invoice2data"):
        from measure.fields_eval import evaluate_fields, render, report_json

        if system not in ("folio", "gt-lines") or (system == "gt-lines" and fmt != "sroie-keys") or \
                (from_output and system != "folio"):
            raise click.UsageError(f"{fmt} is scored with --system folio{' or gt-lines' * (fmt == 'sroie-keys')}"
                                   f"{'' if not from_output else ' (--from-output: folio only)'}")
        try:
            report = evaluate_fields(fmt, path, load_cli_config(config_path, sets), system, limit, from_output,
                                     progress=not quiet, ids=wanted)
        except FileNotFoundError as e:
            raise click.UsageError(str(e)) from e
        except FolioError as e:
            click.echo(f"folio eval: {e}", err=True)
            sys.exit(EXIT_FATAL)
        if not report["documents"]:
            raise click.UsageError(f"no labelled documents found in {path} as {fmt}")
        if json_out:
            Path(json_out).write_text(json.dumps(report_json(report), indent=2))
        click.echo("\n".join(render(report, per_document=not quiet)))
        return
    if from_output:
        raise click.UsageError("--from-output is for sroie-keys and invoice2data")
    from measure.datasets import read_dataset
    from measure.evaluate import evaluate
    from measure.systems import make_system

    config = load_cli_config(config_path, sets)
    samples = read_dataset(fmt, path, limit)
    if wanted is not None:
        samples = [s for s in samples if s.sample_id in wanted]
    if not samples:
        raise click.UsageError(f"no labelled pages found in {path} as {fmt}{' with those ids' * bool(ids_file)}")
    if prediction:
        from measure.evaluate import evaluate_files

        if fmt not in ("page", "alto") or system != "folio":
            raise click.UsageError("--prediction reads PAGE-XML (page) or ALTO (alto) output, with no --system")
        system = f"files in {prediction}"
        summary, scores = evaluate_files(samples, read_dataset(fmt, prediction))
    elif system == "gt-lines":
        from measure.evaluate import evaluate_layout

        summary, scores = evaluate_layout(samples, config)
    elif system == "folio" and fmt == "pdf-text":
        from measure.evaluate import evaluate_documents

        summary, scores = evaluate_documents(samples, config, progress=not quiet)
    else:
        try:
            ocr = make_system(system, config)
        except (RuntimeError, FolioError) as e:
            click.echo(f"folio eval: {e}", err=True)
            sys.exit(EXIT_FATAL)
        summary, scores = evaluate(ocr, samples, config, progress=not quiet)
    if not quiet:
        click.echo(f"{'page':40s} {'P':>6s} {'R':>6s} {'F1':>6s} {'CER':>6s} {'det-H':>6s} {'wbox':>6s} {'s':>6s}")
        for s in scores:
            det = f"{s.det_hmean:6.3f}" if s.det_scored else "     -"
            box = f"{s.word_box_coverage:6.3f}" if s.word_box_coverage is not None else "     -"
            click.echo(
                f"{s.sample_id[-40:]:40s} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.cer:6.3f} {det} {box} "
                f"{s.seconds:6.2f}"
            )
    if json_out:
        payload = {
            **summary, "system": system, "format": fmt, "path": str(path),
            "config": config.model_dump(mode="json") if system.startswith("folio") else None,
            "per_page": [
                {"id": s.sample_id, "word_precision": s.precision, "word_recall": s.recall, "word_f1": s.f1,
                 "word_set_f1": s.set_f1,
                 "cer": s.cer, "det_hmean": s.det_hmean if s.det_scored else None,
                 "word_box_coverage": s.word_box_coverage, "word_boxes_read": s.box_read,
                 "order_cer": s.order_errors / s.order_chars if s.order_chars else None,
                 "line_recall": s.lines_found / s.lines_gt if s.lines_gt else None, "seconds": s.seconds}
                for s in scores
            ],
        }
        Path(json_out).write_text(json.dumps(payload, indent=2))

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    boxes = ""
    if summary["word_boxes_read"]:
        boxes = (f" | word boxes {f(summary['word_box_coverage'])} ({summary['word_boxes_covered']} of "
                 f"{summary['word_boxes_read']} words read exactly at IoU >= 0.5)")
    order = f" | reading-order CER {f(summary['order_cer'])}" if summary.get("order_cer") is not None else ""
    if summary.get("line_recall") is not None:
        order += f" | line recall {f(summary['line_recall'])} ({summary['lines_found']} of {summary['lines_gt']})"
    if summary.get("text_sources") is not None:
        order += (" | pages by text source " + ", ".join(f"{k} {v}" for k, v in sorted(summary["text_sources"].items()))
                  + f" | {summary['ocr_words_added']} words OCR'd in image regions (not scored)")
    click.echo(
        f"{system} on {fmt} ({summary['pages']} pages): word P {f(summary['word_precision'])} "
        f"R {f(summary['word_recall'])} F1 {f(summary['word_f1'])} (set F1 {f(summary['word_set_f1'])}) | "
        f"CER {f(summary['cer'])}{order} | "
        f"det H-mean {f(summary['det_hmean'])}{boxes} | {f(summary['seconds_per_page'])} s/page"
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


@click.group("dewarp")
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

    from measure.dewarp import check_synth

    report = check_synth(path, load_cli_config(config_path, sets), limit=limit)
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

    from measure.dewarp import check_samples

    rows = check_samples(path, load_cli_config(config_path, sets), ocr=ocr)
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


@click.command("bench-export")
@click.option("--pages", type=click.IntRange(min=1), default=300, show_default=True,
              help="Pages of the synthetic book (300-dpi A4 scans, 40 lines of 10 words).")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Timed repeats; the median counts.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["alto", "page", "hocr", "pdf"]),
              help="Writers to time (repeatable; default all).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the figures here.")
def bench_export(pages, repeat, formats, json_out):
    """Time the archive-format writers on one core: pages/s per format, and the searchable PDF of a book."""
    import json

    from measure.bench.exports import bench_exports

    result = bench_exports(pages, repeat, formats or ("alto", "page", "hocr", "pdf"))
    core = "one core" if result["one_core"] else "unpinned"
    for fmt in ("alto", "alto_from_parquet", "page", "hocr", "pdf"):
        if fmt in result:
            r = result[fmt]
            click.echo(f"{fmt}: {r['pages_per_s']:.1f} pages/s ({r['seconds']:.2f} s for {pages} pages, {core}, "
                       f"median of {repeat})")
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2))


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Timed repeats; the median counts.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)),
              help="Labelled-set format (default: guessed from the layout; a plain folder has no ground truth).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pages.")
@click.option("--systems", default=None, help="Comma list of folio, rapidocr, tesseract, folio-ray, folio-ocr "
              "(Folio reading every PDF page as a scan, decode.pdf_text=ocr: on born-digital PDFs, their "
              "scanned twins) "
              "[default: folio,rapidocr,tesseract; with --runner ray: folio,folio-ray].")
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: time the Ray runner against the local runner on the same pages.")
@config_option
@set_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the full report here.")
@click.option("--markdown", "md_out", type=click.Path(dir_okay=False), default="docs/benchmarks.md", show_default=True,
              help="Regenerate this Markdown table ('' to skip).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="cuda: Folio runs the torch engine on the GPU and reports GPU utilisation and peak GPU memory; "
              "cpu: Folio's torch engine (if configured) stays on the CPU. Default: as the config says.")
def bench(path, repeat, fmt, limit, systems, runner, config_path, sets, json_out, md_out, device):
    """Time Folio's local runner, RapidOCR's loop and the tesseract CLI on the same pages."""
    import json

    from measure.bench.core import bench as run_bench
    from measure.bench.report import bench_markdown, update_markdown

    if device == "cuda":
        from measure.bench.samplers import cuda_problem

        problem = cuda_problem()
        if problem:
            raise click.UsageError(f"--device cuda: {problem}")
        sets = (*sets, "engine.name=torch", "engine.device=cuda")
    elif device == "cpu":
        sets = (*sets, "engine.device=cpu")
    load_cli_config(config_path, sets)  # fail fast on a bad config
    if systems is None:
        systems = "folio,folio-ray" if runner == "ray" else "folio,rapidocr,tesseract"
    report = run_bench(
        path, systems=[s.strip() for s in systems.split(",") if s.strip()], repeat=repeat, fmt=fmt, limit=limit,
        config_path=config_path, overrides=parse_overrides(sets),
    )
    table = bench_markdown(report)
    click.echo(table)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
    if md_out:
        update_markdown(md_out, "folio bench " + " ".join(_bench_args(sys.argv[2:])), table)
    for key, value in report["ratios"].items():
        click.echo(f"{key}: {value:.2f}x")


@click.command()
@click.argument("fmt", metavar="FORMAT", type=click.Choice([f for f in FORMATS if f != "pdf-text"]))
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--output", "output", required=True, type=click.Path(file_okay=False),
              help="Folder for the model, its charset, the checkpoint and the report.")
@click.option("--val", "val_path", type=click.Path(exists=True, file_okay=False),
              help="Validation lines from another folder [default: whole documents of PATH held out, --val-split].")
@click.option("--val-format", type=click.Choice([f for f in FORMATS if f != "pdf-text"]),
              help="The --val folder's format [default: FORMAT].")
@click.option("--val-split", type=click.FloatRange(0.05, 0.9), default=0.1, show_default=True,
              help="Share of the lines held out for validation, whole documents at a time, without --val.")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True,
              help="AdamW's; lower it for a model that was fine-tuned already.")
@click.option("--patience", type=click.IntRange(min=1), default=4, show_default=True,
              help="Stop after this many epochs without a better validation CER.")
@click.option("--freeze", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of the weights, from the input on, kept as they are (the head is always trained). "
              "Lower it when the collection looks unlike print the model knows; raise it to train faster.")
@click.option("--no-augment", is_flag=True, help="Train on the lines as they are (no blur, noise, rotation, stretch).")
@click.option("--base", "base_model", type=click.Path(exists=True, dir_okay=False),
              help="Start from this recognition model [default: the config's recognition.model].")
@click.option("--restart", is_flag=True, help="Ignore a checkpoint in --output and start again.")
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: data-parallel on a Ray cluster with Ray Train (ray.address), one worker per GPU.")
@click.option("--workers", type=click.IntRange(min=1), help="Ray Train workers [default: one per GPU, else 1].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pages of PATH (sorted by id).")
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False),
              help="Only the pages of PATH whose ids this file lists, one per line (as `folio eval --ids`).")
@click.option("--val-ids", "val_ids_file", type=click.Path(exists=True, dir_okay=False),
              help="Validate on the pages of PATH whose ids this file lists (none of them is trained on), instead "
              "of --val-split.")
@config_option
@set_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(fmt, path, output, val_path, val_format, val_split, epochs, batch_size, learning_rate, patience, freeze,
          no_augment, base_model, restart, runner, workers, seed, limit, ids_file, val_ids_file, config_path, sets,
          quiet):
    """Fine-tune the recognizer on the lines of a labelled set in FORMAT at PATH.

    Lines are cut from the set's ground truth (the formats `folio eval` reads), the
    recognition model is trained with a CTC loss, the best epoch's weights are kept,
    and OUTPUT gets recognizer.onnx (with its charset inside, and in charset.txt),
    checkpoint.pt (training resumes from it after a crash) and training.json (every
    epoch's loss and validation CER). The model is checked by reading the validation
    lines with ONNX Runtime. The last line printed is the --set override that makes
    `folio run` and `folio eval` use it.
    """
    from measure.datasets import read_dataset
    from measure.train import line_samples
    from pipeline.models.recognition import in_charset
    from pipeline.models.training import (
        CHECKPOINT_FILE,
        MODEL_FILE,
        REPORT_FILE,
        Recognizer,
        TrainOptions,
        cer_counts,
        onnx_readings,
        report,
        split_by_group,
    )
    from pipeline.models.zoo import ModelFile, files_sha256, resolve_model

    config = load_cli_config(config_path, sets)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    if val_path and val_ids_file:
        raise click.UsageError("--val and --val-ids: choose one")
    val_ids = _id_list(val_ids_file)
    train_ids = _id_list(ids_file)
    if val_ids is not None:  # the validation pages are never trained on
        everything = train_ids if train_ids is not None else [s.sample_id for s in read_dataset(fmt, path, limit)]
        held = set(val_ids)
        train_ids = [i for i in everything if i not in held]
    samples, ids = line_samples(fmt, path, config, limit, ids=train_ids)
    if not samples:
        raise click.UsageError(f"no labelled lines found in {path} as {fmt}{' on those pages' * bool(train_ids)}")
    if val_ids is not None:
        train_set, val_set = samples, line_samples(fmt, path, config, ids=val_ids)[0]
        held_ids = sorted(set(val_ids))
        if not val_set:
            raise click.UsageError(f"no labelled lines found on the --val-ids pages of {path}")
    elif val_path:
        train_set, val_set = samples, line_samples(val_format or fmt, val_path, config)[0]
        held_ids = []
        if not val_set:
            raise click.UsageError(f"no labelled lines found in {val_path}")
    else:
        try:
            train_set, val_set = split_by_group(samples, val_split, seed)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
        val_keys = {id(s) for s in val_set}
        held_ids = sorted({i for s, i in zip(samples, ids) if id(s) in val_keys})
    if held_ids:
        (out / "validation-ids.txt").write_text("".join(f"{i}\n" for i in held_ids))
    say(f"folio train: {len(train_set)} lines to train on, {len(val_set)} to validate on "
        f"({len({s.group for s in train_set})} and {len({s.group for s in val_set})} documents)")
    try:
        if base_model:
            base_path = Path(base_model).resolve()
            base = ModelFile(base_path.name, base_path, files_sha256(base_path))
        else:
            base = resolve_model(config.recognition.model, config.engine.model_dir)
        options = TrainOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                               augment=not no_augment, freeze=freeze, seed=seed,
                               threads=config.engine.intra_op_threads * config.runner.ocr_threads)
        recognizer = Recognizer(base, [s.text for s in train_set + val_set], config.recognition.charset, freeze)
    except FolioError as e:
        click.echo(f"folio train: {e}", err=True)
        sys.exit(EXIT_FATAL)
    if recognizer.added:
        say(f"folio train: {len(recognizer.added)} characters added to the charset: {''.join(recognizer.added)}")
    checkpoint = out / CHECKPOINT_FILE
    if restart:
        import shutil

        checkpoint.unlink(missing_ok=True)
        shutil.rmtree(out / "ray", ignore_errors=True)  # Ray Train's run of the same name
    if runner == "ray":
        from pipeline.runner.ray_train import fit_on_ray

        result = fit_on_ray(recognizer, train_set, val_set, config, options, workers, out / "ray", progress=say)
    else:
        result = _fit_locally(recognizer, train_set, val_set, config, options, checkpoint, quiet)
    model = recognizer.write(out / MODEL_FILE)
    (out / "charset.txt").write_text("".join(f"{c}\n" for c in recognizer.charset), encoding="utf-8")
    torch_texts = recognizer.read(val_set, config.recognition)
    onnx_texts = onnx_readings(model, val_set, config.recognition)
    differ = sum(a != b for a, b in zip(torch_texts, onnx_texts))
    final = cer_counts(onnx_texts, val_set)
    report(out / REPORT_FILE, base={"name": base.name, "sha256": base.sha256},
           model={"name": model.name, "sha256": model.sha256}, format=fmt, path=str(path),
           val_path=str(val_path) if val_path else None, train_lines=len(train_set), val_lines=len(val_set),
           added_characters="".join(recognizer.added), options=options, baseline_cer=result.baseline_cer,
           best_cer=result.best_cer, best_epoch=result.best_epoch, stopped_early=result.stopped_early,
           resumed_from=result.resumed_from, seconds=result.seconds, history=result.history,
           onnx_cer=final[0] / max(final[1], 1), onnx_differs=differ, runner=runner)
    cut = 1 - result.best_cer / result.baseline_cer if result.baseline_cer else 0.0
    click.echo(f"validation CER {result.baseline_cer:.4f} -> {result.best_cer:.4f} ({cut:.0%} fewer errors; best "
               f"epoch {result.best_epoch}{', stopped early' if result.stopped_early else ''}; "
               f"{result.seconds / 60:.1f} min)")
    click.echo(f"ONNX Runtime reads {len(val_set) - differ} of {len(val_set)} validation lines as torch does; "
               f"wrote {model.path} (sha256 {model.sha256[:16]}...)")
    if differ > max(1, len(val_set) // 100):
        click.echo("folio train: the exported model does not read as the trained one; not using it", err=True)
        sys.exit(EXIT_FATAL)
    if held_ids:
        click.echo(f"held-out pages: {out / 'validation-ids.txt'} (folio eval {fmt} {path} --ids ...)")
    override = f"--set recognition.model={model.path.resolve()}"
    if not all(in_charset(c, recognizer.allowed) for c in recognizer.added):
        override += " --set recognition.charset=all"
    click.echo(override)


def _id_list(file: str | None) -> list[str] | None:
    """The ids an ``--ids``-style file lists, one per line (None without a file)."""
    if not file:
        return None
    return [line.strip() for line in Path(file).read_text().splitlines() if line.strip()]


def _fit_locally(recognizer, train_set, val_set, config, options, checkpoint, quiet):
    from tqdm import tqdm

    from pipeline.models.training import fit

    bar = None

    def progress(phase, step, total, info):
        nonlocal bar
        if quiet:
            return
        if phase == "batch":
            if bar is None:
                bar = tqdm(total=total, desc="epoch", unit="batch", leave=False, file=sys.stderr)
            bar.update(1)
            bar.set_postfix(loss=f"{info['loss']:.3f}")
            return
        if bar is not None:
            bar.close()
            bar = None
        click.echo(f"epoch {step}/{total}: loss {info['loss']:.3f}, validation CER {info['val_cer']:.4f} "
                   f"(best {info['best_cer']:.4f})", err=True)

    if checkpoint.exists() and not quiet:
        click.echo(f"folio train: resuming from {checkpoint} (--restart to start again)", err=True)
    return fit(recognizer, train_set, val_set, config.recognition, options, checkpoint, progress)
