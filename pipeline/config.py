"""Typed, validated configuration.

A run's configuration comes from, in increasing priority:

1. the defaults declared here (``configs/default.yaml`` spells them out),
2. a YAML file (``--config FILE``),
3. ``FOLIO_<SECTION>__<FIELD>`` environment variables, e.g.
   ``FOLIO_DETECTION__BOX_THRESH=0.6`` or ``FOLIO_ENGINE__INTRA_OP_THREADS=4``,
4. explicit overrides (``--set detection.box_thresh=0.6`` or ``--engine NAME``).

The config is a pydantic model: picklable, so a Ray actor rebuilds its models
from it. :meth:`FolioConfig.output_settings` says which settings can change
the output (not thread counts, batch sizes, time limits or the settings of an
engine not in use); the run hashes them into its fingerprint
(:func:`pipeline.run.fingerprint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError

__all__ = [
    "DecodeConfig",
    "DetectionConfig",
    "RecognitionConfig",
    "ClassifierConfig",
    "DewarpConfig",
    "EngineConfig",
    "TesseractConfig",
    "RunnerConfig",
    "OutputConfig",
    "JobsConfig",
    "PluginsConfig",
    "RayConfig",
    "StorageConfig",
    "FolioConfig",
    "LEXICON_LANGUAGES",
    "parse_languages",
    "load_config",
    "to_yaml",
    "DEFAULTS_HEADER",
]

#: Languages ``recognition.lexicon`` has word lists for (the lists the pyspellchecker wheel ships).
LEXICON_LANGUAGES = ("ar", "de", "en", "es", "eu", "fa", "fr", "it", "lv", "nl", "pt", "ru")


def parse_languages(value: str | None) -> tuple[str, ...]:
    """``"en+fr"`` -> ``("en", "fr")``; None or empty -> ``()`` (no lexicon).

    Raises:
        ValueError: a language with no word list.
    """
    if not value:
        return ()
    langs = tuple(dict.fromkeys(part.strip().lower() for part in value.split("+") if part.strip()))
    unknown = [lang for lang in langs if lang not in LEXICON_LANGUAGES]
    if unknown:
        raise ValueError(f"no word list for {', '.join(unknown)}; choose from {', '.join(LEXICON_LANGUAGES)}, "
                         "joined by +")
    return langs


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeConfig(_Section):
    pdf_dpi: int = Field(300, ge=36, le=1200, description="Resolution PDF pages are rasterised at.")
    pdf_text: Literal["auto", "ocr"] = Field(
        "auto",
        description="Where a PDF page's text comes from. auto: from the file where it holds visible text with "
        "a usable Unicode mapping (no rendering, no OCR; pages.text_source pdf), plus OCR of the page's image "
        "regions (pdf+ocr); pages that are images, or whose only text is an invisible OCR layer or cannot be "
        "trusted, are OCR'd. ocr: OCR every page, as a scan (to compare with the file's text, or when a "
        "collection's PDFs carry text layers that lie in ways Folio does not notice).",
    )
    max_pixels: int = Field(
        150_000_000,
        ge=1,
        description="Largest page (width x height) decoded; larger images are refused as "
        "image_too_large (decompression-bomb guard), from the size their header declares, before "
        "any pixel is allocated. PDF pages are rendered at a lower DPI instead when the configured "
        "DPI would exceed it. A decoded page is 3 bytes a pixel, so this bounds the memory of one "
        "page in decode (150 Mpx: 450 MB, about twice that while PDFium's bitmap is copied).",
    )
    max_pages: int = Field(
        2000,
        ge=1,
        description="Documents with more pages (PDF pages, TIFF frames) are refused as too_many_pages, "
        "from the page count or frame directory before any page is decoded; pages are decoded one "
        "at a time, so memory does not grow with it.",
    )
    max_file_bytes: int = Field(
        1 << 30,
        ge=1,
        description="Inputs larger than this many bytes are refused as file_too_large before they are parsed.",
    )


class DetectionConfig(_Section):
    model: str = Field("PP-OCRv6_det_small.onnx", description="Detection model file in the model directory.")
    max_side_len: int = Field(2000, ge=64, description="Pages are scaled down so the longer side is at most this.")
    min_side_len: int = Field(736, ge=32, description="Pages are scaled up so the shorter side is at least this.")
    thresh: float = Field(0.3, gt=0, lt=1, description="Probability above which a DB map pixel is text.")
    box_thresh: float = Field(0.5, gt=0, lt=1, description="Minimum mean probability inside a box to keep it.")
    score_mode: Literal["contour", "box"] = Field(
        "contour",
        description="Where box_thresh's mean is taken: contour (the text region's own outline) or box (its "
        "minimum-area rectangle, which for a bent line is mostly background, so the line is dropped).",
    )
    bent_lines: Literal["unroll", "rect"] = Field(
        "unroll",
        description="How a line that bends (a book page curling toward its spine, read without dewarping) is "
        "cut for recognition: unroll (along its bend, straightened column by column) or rect (as one "
        "rectangle through the bend, which reads it poorly).",
    )
    unclip_ratio: float = Field(1.6, gt=0, description="How far DB's shrunk text kernels are grown back.")
    min_size: float = Field(3.0, ge=0, description="Boxes with a shorter side (map pixels) are dropped.")
    max_candidates: int = Field(1000, ge=1, description="At most this many contours per page are considered.")
    dilate: bool = Field(True, description="Dilate the binary map with a 2x2 kernel before finding contours.")
    size_multiple: int = Field(
        32,
        ge=32,
        multiple_of=32,
        description="Scaled pages are padded (right and bottom, in the paper's colour) to a multiple of this "
        "many pixels. On a GPU, 128 or 256 gives pages of slightly different sizes one shape, so they share "
        "a detection batch and torch.compile compiles fewer shapes; the padding can move a box by a pixel.",
    )
    batch_pages: int | None = Field(
        None,
        ge=1,
        description="Most pages detected in one engine call (only pages of the same padded size share one). "
        "Default (null): 1 with ONNX Runtime on a CPU, where batches gain nothing, 16 with torch on CUDA. "
        "The text does not depend on it; memory grows with it.",
    )


class RecognitionConfig(_Section):
    model: str = Field("PP-OCRv6_rec_small.onnx", description="Recognition model file in the model directory.")
    image_height: int = Field(48, description="Crop height the recognition model expects.")
    batch_size: int = Field(
        8, ge=1, description="Most crops per recognition call (small batches are fastest on CPU; raise on GPU)."
    )
    max_batch_pixels: int = Field(
        48 * 320 * 64, ge=1, description="Most padded pixels per recognition call (caps memory on long lines)."
    )
    width_step: int = Field(
        32,
        ge=1,
        description="Crops are padded to their width rounded up to this and batched only with crops of the same "
        "padded width, so a line reads the same whatever else is in its batch (local and Ray runners agree).",
    )
    min_width: int = Field(
        128,
        ge=8,
        description="Narrowest padded batch width in pixels: short crops are padded up to it so the CTC "
        "sequence stays long enough for repeated characters.",
    )
    min_confidence: float = Field(0.5, ge=0, le=1, description="Lines recognised with lower confidence are dropped.")
    min_word_confidence: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Words (space-separated) of a kept line whose least sure character was read with a lower "
        "probability are left out of its text: smudges, stamps and handwriting read as a few wrong letters. "
        "Set 0 to keep every word in the text, e.g. for line-by-line transcription of clean old print, where "
        "an unsure word is still mostly right.",
    )
    low_confidence_words: Literal["keep", "drop"] = Field(
        "keep",
        description="What becomes of the words min_word_confidence leaves out of the text: keep (in the line's "
        "words, with their confidence and in_text false, for exports that want every word: export.words=all; "
        "the fields stage reads them, as a name or an address missing a word is wrong) or drop (gone from the "
        "output).",
    )
    lexicon: str | None = Field(
        "en",
        description="Word lists (languages joined by +, e.g. en+fr; from the pyspellchecker package: ar de en "
        "es eu fa fr it lv nl pt ru) that correct a word the model misread by one character: a word not in "
        "them that one of its characters' next-best readings makes a word is read as that word (Maruscript -> "
        "Manuscript; words with digits and of fewer than 3 letters are left alone). Name the languages of your "
        "documents; null (no correction) for pages mostly in other languages.",
    )
    lexicon_min_prob: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Least probability a character's next-best reading needs for the lexicon to try it.",
    )
    split_gap: float = Field(
        1.0,
        ge=0,
        description="Cut a detected line where its ink has a gap wider than this many line heights "
        "(form fields and table cells on one baseline); 0 never cuts.",
    )
    charset: Literal["all", "latin", "ascii"] = Field(
        "all",
        description="Characters recognition may emit: all (the model's multilingual charset), latin (Latin "
        "letters with accents, punctuation, currency and common symbols) or ascii; of the shipped model's "
        "18,710 output classes, 887 and 96. With latin or ascii the model's output layer computes only those "
        "classes, which makes recognition faster.",
    )
    space_gap: float | None = Field(
        None,
        ge=0,
        description="Insert a space where the blank gap between two decoded characters is wider than this many "
        "times the line's median inter-character gap (words the model reads joined, like 'A.B.,Inc.'); "
        "None or 0 disables.",
    )
    space_prob: float | None = Field(
        0.1,
        ge=0,
        le=1,
        description="Insert a space between two decoded characters when, in the blank frames between them, the "
        "model's space class reaches this probability (a word space it nearly emitted, as on tightly printed "
        "receipts); None or 0 disables.",
    )

    @field_validator("lexicon")
    @classmethod
    def _known_languages(cls, value: str | None) -> str | None:
        langs = parse_languages(value)  # ValueError names the languages there are
        return "+".join(langs) or None


class ClassifierConfig(_Section):
    enabled: bool = Field(
        False,
        description="Run the 180-degree text-line classifier. Off by default: on upright scans it "
        "turns some correct lines upside down.",
    )
    model: str = Field("ch_ppocr_mobile_v2.0_cls_mobile.onnx", description="Classifier model file.")
    thresh: float = Field(0.9, gt=0, lt=1, description="Minimum confidence to rotate a line by 180 degrees.")


class DewarpConfig(_Section):
    """What the dewarp step does to a page before detection (see docs/dewarp.md).

    Every step leaves a page alone unless it finds clear evidence: no page
    outline, no rotation, a skew below ``min_skew_deg`` and no curl means the
    page goes to detection untouched. Line polygons always refer to the pixels
    of the original page."""

    enabled: bool = Field(
        True, description="Dewarp pages before detection (onnxruntime and torch engines). Flat scans pass through "
        "untouched unless a step finds clear evidence. Turn off for input known to be flat, upright scans, to "
        "save the time the checks take."
    )
    perspective: bool = Field(
        True, description="Find the page outline on a photo or a larger scanner bed and warp it to a rectangle."
    )
    orientation: bool = Field(True, description="Turn pages scanned at 90, 180 or 270 degrees upright.")
    deskew: bool = Field(True, description="Measure and remove skew up to max_skew_deg.")
    curl: bool = Field(True, description="Straighten curved text lines (book pages near the spine).")
    analysis_side: int = Field(
        1200, ge=256, le=4000, description="Longer side (pixels) of the reduced page the geometry is measured on."
    )
    max_skew_deg: float = Field(15.0, gt=0, le=45, description="Largest skew searched for and removed.")
    min_skew_deg: float = Field(
        0.5, ge=0, description="Smaller skew is reported as 0 and left alone (not worth resampling the page)."
    )
    orientation_lines: int = Field(
        4, ge=1, le=64, description="Text lines recognised upright and upside down to decide between 0/180 degrees."
    )
    orientation_margin: float = Field(
        0.05, ge=0, le=1, description="Mean confidence an upside-down reading must win by before the page is turned."
    )
    curl_min_sag: float = Field(
        0.4,
        ge=0,
        description="Curl is corrected only where fitted text lines bend by at least this many x-heights.",
    )
    curl_min_lines: int = Field(4, ge=2, description="Fewest text lines a curl model is fitted to.")
    remap: Literal["auto", "opencv", "torch"] = Field(
        "auto",
        description="What applies the final warp: opencv (cv2.remap/warpPerspective on CPU), torch "
        "(grid_sample, on CUDA when present) or auto (torch when CUDA is available, else opencv).",
    )


class LayoutConfig(_Section):
    reading_order: Literal["columns", "rows"] = Field(
        "columns",
        description="How a page's lines are put in reading order: columns (each column top to bottom, "
        "columns left to right, a full-width headline before its columns; lines crossing a gutter are cut "
        "there) or rows (the page row by row, across columns, as Folio read before columns). rows keeps the "
        "fingerprint of rows written before.",
    )


class FieldsConfig(_Section):
    """Invoice and receipt fields (pipeline/stages/fields.py): the ``fields`` and ``line_items`` tables."""

    enabled: bool = Field(
        False,
        description="Extract typed fields (supplier, document number, dates, amounts, currency) and line items "
        "from each document's words and layout into the fields and line_items tables, and flag the documents "
        "a person should check (documents.needs_review). On for invoice and receipt jobs.",
    )
    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A required field (supplier_name, document_date, total) below this confidence sends the "
        "document to review. Raise it to review more documents and let fewer wrong values through.",
    )
    date_order: Literal["auto", "DMY", "MDY", "YMD"] = Field(
        "auto",
        description="How numeric dates whose day and month could be swapped (05/06/2018) are read. auto: the "
        "order the document's other dates prove, else day first (month first for US dollar documents), and "
        "the document goes to review. Set it when a collection's documents all come from one country.",
    )


class EngineConfig(_Section):
    name: Literal["auto", "onnxruntime", "torch", "tesseract"] = Field(
        "auto",
        description="Inference engine: auto (torch on the GPU where the OCR workers have one, else "
        "onnxruntime), onnxruntime (the PP-OCR models on CPU), torch (the same models converted to torch; "
        "needs the torch extra, pip install 'folio[torch]') or tesseract (the tesseract-ocr program; settings "
        "in the tesseract section). Whether a worker has a GPU: on Ray, ray.ocr_num_gpus; locally, "
        "whether torch sees one.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="Where the torch engine runs: auto (cuda where the worker has a GPU, else cpu), cpu, cuda "
        "or cuda:N. ONNX Runtime always runs on the CPU; set cpu to keep engine.name=auto on ONNX Runtime "
        "on a GPU machine.",
    )
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        None,
        description="Precision of the torch engine's weights and inputs; default (null): float16 on CUDA, "
        "float32 on CPU, as the worker computes. Half precision can change a few characters, so it is part "
        "of the fingerprint.",
    )
    compile: bool = Field(
        False,
        description="Run the torch engine's modules through torch.compile: faster batches on CUDA after a "
        "slow first call per input shape.",
    )
    intra_op_threads: int = Field(
        2,
        ge=1,
        description="Threads inside one operator of one batch. A process runs runner.ocr_threads batches at "
        "once, so it computes on up to runner.ocr_threads x this many cores; set the product from the cores "
        "each worker owns.",
    )
    inter_op_threads: int = Field(1, ge=1, description="Operators run in parallel.")
    model_dir: str | None = Field(
        None, description="Folder holding the model files; default: the installed rapidocr wheel's models/."
    )


class TesseractConfig(_Section):
    lang: str = Field(
        "eng",
        pattern=r"^[A-Za-z0-9_/-]+(\+[A-Za-z0-9_/-]+)*$",
        description="Tesseract language(s), joined by + as in eng+deu; each needs its traineddata "
        "file, on Debian from the package tesseract-ocr-<lang>.",
    )
    psm: int = Field(3, ge=0, le=13, description="Page segmentation mode (tesseract --psm); 3 is fully automatic.")
    oem: int = Field(1, ge=0, le=3, description="OCR engine mode (tesseract --oem); 1 is the LSTM recogniser.")
    threads: int = Field(1, ge=1, description="OpenMP threads inside one tesseract process (OMP_THREAD_LIMIT).")
    processes: int = Field(
        1, ge=1, description="Pages of a batch OCR'd at the same time, one tesseract process each."
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds one page may take before it is an ocr_failed error.")
    min_confidence: float = Field(
        0.0, ge=0, le=1, description="Words recognised with lower confidence (0..1) are dropped."
    )


class RunnerConfig(_Section):
    batch_pages: int = Field(4, ge=1, description="Pages per OCR batch (recognition is batched across them).")
    ocr_threads: int = Field(
        1,
        ge=1,
        description="OCR batches one process runs at once (the local runner, and each Ray OCR actor), in "
        "threads sharing one copy of the models, each with engine.intra_op_threads threads. Results do not "
        "depend on it; memory grows with it (ocr_threads x batch_pages pages in flight). Raise it on GPU "
        "workers, where one batch's CPU work can overlap another's GPU work; on a few shared CPU cores, 2 with "
        "engine.intra_op_threads 1 wastes less of them than 1 x 2, for more memory.",
    )
    decode_threads: int = Field(
        1,
        ge=1,
        description="Inputs the local runner reads and decodes at once, in threads, ahead of OCR (each holds at "
        "most batch_pages decoded pages waiting). Results do not depend on it. Raise it where OCR outpaces one "
        "core's decoding, as on a GPU (4-8); on a few CPU cores OCR needs them.",
    )
    flush_documents: int = Field(
        64, ge=1, description="Documents buffered before a Parquet file is written (bounds what a crash can lose)."
    )


class RayConfig(_Section):
    """How the Ray runner sizes its work. On small machines keep
    ``ocr_actors * ocr_num_cpus`` below the cluster's CPUs: an actor pool that
    reserves every CPU leaves none for the decode tasks that feed it, and Ray
    Data waits forever."""

    address: str | None = Field(
        None, description="Ray cluster to join (ray://host:10001 or host:6379); default: RAY_ADDRESS, else a local Ray."
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Seconds an existing cluster (ray.address, --address, RAY_ADDRESS) has to answer and "
        "accept this process before the run fails with cluster_unavailable. Raise it for a head that is slow to "
        "answer, e.g. one recovering its state after a restart."
    )
    resources_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the cluster to have room for one OCR actor and one decode task "
        "before the run fails with cluster_unavailable. An autoscaling cluster adds nodes in this time: raise it "
        "where new nodes (GPU nodes above all) take minutes to start, as configs/archive.yaml does."
    )
    ocr_actors: int = Field(1, ge=1, description="Most OCR actors (each loads the models once).")
    ocr_num_cpus: float = Field(
        1.0,
        gt=0,
        description="CPUs reserved per OCR actor (a reservation for Ray's scheduler; the actor computes on up "
        "to runner.ocr_threads x engine.intra_op_threads cores). Keep ocr_actors x this below the node's CPUs, "
        "so decode tasks can be scheduled.",
    )
    ocr_num_gpus: float | None = Field(
        None, ge=0, description="GPUs per OCR actor; default (null): 1 when the cluster has GPUs when the run "
        "starts, else 0. Set 1 on a cluster that adds GPU nodes on demand (its GPU group may be at zero then). "
        "An actor with a GPU runs engine.name=auto as torch on it."
    )
    decode_num_cpus: float = Field(
        0.5, gt=0, description="CPUs reserved per fetch-and-decode task (fractional, so decode keeps up on small nodes)."
    )
    max_decode_tasks: int = Field(4, ge=1, description="Most fetch-and-decode tasks in flight.")
    docs_per_task: int = Field(
        16, ge=1, description="Most planned documents one fetch-and-decode task reads. A decode worker's memory "
        "grows with the documents its task reads, so this keeps workers flat however long the run; smaller "
        "values cost more scheduling. A retried task redoes at most this many."
    )
    decode_tasks_per_gpu: int = Field(
        6, ge=1, description="On GPU clusters, at least this many decode tasks per OCR actor (one per GPU), so "
        "rasterising pages on CPUs keeps each GPU busy."
    )
    max_page_attempts: int = Field(
        3, ge=1, description="A page on which an OCR actor died this many times, tried alone, becomes a "
        "worker_lost error row instead of being retried forever (the rest of its batch goes on)."
    )


class JobsConfig(_Section):
    shard_size: int = Field(200, ge=1, description="Documents per shard; a flow runs each shard on Ray and retries it alone.")
    shard_retries: int = Field(2, ge=0, description="Times a failed shard is retried before the flow fails.")
    retry_delay_s: float = Field(10.0, ge=0, description="Seconds between a shard's retries.")
    deadline_minutes: float | None = Field(
        None, gt=0, description="A flow run starts no new shard after this many minutes and fails; what is left "
        "is new work for the next run. None: no deadline."
    )
    max_error_rate: float = Field(
        1.0, ge=0, le=1, description="A flow run fails (an alert) when more than this share of its documents end "
        "as error or partial. 1.0: never."
    )
    lowest_confidence_documents: int = Field(10, ge=0, description="How many lowest-confidence documents a report lists.")


class PluginsConfig(_Section):
    stage: str | None = Field(
        None, description="Import path (module:callable) of a factory that builds the OCR stage from the config "
        "instead of the built-in engines: custom engines, or fault injection in tests. It changes the output, "
        "so it is part of the fingerprint."
    )


class OutputConfig(_Section):
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet compression codec.")
    export_words: Literal["text", "all"] = Field(
        "text",
        description="Words the archive exports (ALTO, PAGE, hOCR, the PDF's text layer) carry: text (those of "
        "the page text) or all (every word read, those below recognition.min_word_confidence too, with "
        "their confidence in WC / conf / x_wconf: for archives that search every word and let their "
        "viewers weigh it).",
    )
    orphan_after_s: float = Field(
        900.0, ge=0, description="A pages file without its documents file (its run died between the two writes) "
        "is emptied by the next run once its run's manifest is this old; a live run refreshes its manifest "
        "at every shard."
    )


class StorageConfig(_Section):
    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint, e.g. http://minio:9000 for MinIO; default: AWS_ENDPOINT_URL_S3 or "
        "AWS_ENDPOINT_URL when set, else AWS S3. Credentials never go here: they come from the standard AWS "
        "chain (environment, profile, instance or pod role).",
    )
    region: str | None = Field(
        None, description="AWS region of the buckets; default: AWS_REGION, AWS_DEFAULT_REGION or the profile's."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto",
        description="How buckets appear in request URLs. auto: path-style (http://host/bucket/key) when an "
        "endpoint is configured (MinIO and most S3-compatible stores need it), AWS's default otherwise.",
    )
    max_attempts: int = Field(
        10, ge=1, description="Attempts per request, the first included, before a storage_error is reported."
    )
    retry_mode: Literal["adaptive", "standard", "legacy"] = Field(
        "adaptive",
        description="botocore retry mode; adaptive also slows the client down when the store throttles (SlowDown).",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a connection to the store.")
    read_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for data on an open connection.")
    multipart_threshold_bytes: int = Field(
        64 << 20,
        ge=1,
        description="Outputs up to this size are written with one PUT; larger ones with a multipart upload "
        "(parts of this size, at least 5 MiB) that becomes visible only when complete.",
    )
    max_pool_connections: int = Field(16, ge=1, description="Most open HTTP connections per S3 client.")

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https") or not rest:
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        if "@" in rest.split("/", 1)[0]:  # said without echoing it: it holds a secret
            raise ValueError("must not carry credentials (user:password@); they come from the AWS chain")
        return value


#: Sections whose settings never change the output, left out of the fingerprint.
_NOT_FINGERPRINTED = {"runner", "output", "storage", "ray", "jobs", "outputs"}
#: Per section, the settings that never change the output (threads, paths, time limits).
_FIELDS_NOT_FINGERPRINTED = {
    "engine": {"intra_op_threads", "inter_op_threads", "model_dir", "device", "compile"},
    "detection": {"batch_pages"},
    "tesseract": {"threads", "processes", "timeout_s"},
}
#: Settings added after rows were first written, with the value that reproduces the output from before
#: them: at that value they are left out of the fingerprint, so an upgrade does not make every
#: document stale.
_ADDED_SETTINGS = {("detection", "size_multiple"): 32, ("layout", "reading_order"): "rows",
                   ("decode", "pdf_text"): "ocr", ("recognition", "low_confidence_words"): "drop",
                   ("detection", "score_mode"): "box", ("detection", "bent_lines"): "rect"}
#: Sections only one engine reads; those of the engines not in use are left out of the fingerprint.
_ENGINE_SECTIONS = {
    "onnxruntime": {"detection", "recognition", "classifier"},
    "torch": {"detection", "recognition", "classifier"},
    "tesseract": {"tesseract"},
}


class FolioConfig(BaseModel):
    """Everything a run needs to know; see ``configs/default.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decode: DecodeConfig = DecodeConfig()
    detection: DetectionConfig = DetectionConfig()
    recognition: RecognitionConfig = RecognitionConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    dewarp: DewarpConfig = DewarpConfig()
    layout: LayoutConfig = LayoutConfig()
    fields: FieldsConfig = FieldsConfig()
    engine: EngineConfig = EngineConfig()
    tesseract: TesseractConfig = TesseractConfig()
    runner: RunnerConfig = RunnerConfig()
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()
    storage: StorageConfig = StorageConfig()
    jobs: JobsConfig = JobsConfig()
    plugins: PluginsConfig = PluginsConfig()
    outputs: tuple[Literal["alto", "page", "hocr", "pdf", "txt"], ...] = Field(
        (),
        description="Archive formats the archive and reprocess flows write beside the Parquet, under "
        "<dest>/<format>/, for the documents of each run (what `folio export` writes). The Parquet does not "
        "depend on it.",
    )

    def output_settings(self, engine: str, dtype: str | None = None) -> dict[str, Any]:
        """Every setting that can change the output, as plain data (what the run's fingerprint hashes).

        Args:
            engine: the engine that runs (``engine.name`` with ``auto`` resolved).
            dtype: the torch engine's precision on the device it runs on (``engine.dtype`` resolved);
                half precision can change a few characters, the device and ``torch.compile`` do not.
        """
        data = self.model_dump(mode="json")
        for section in _NOT_FINGERPRINTED:
            data.pop(section, None)
        data["engine"]["name"] = engine
        if engine == "torch":
            data["engine"]["dtype"] = dtype
        else:
            data["engine"].pop("dtype", None)
        if data["recognition"].get("charset") != "all":
            # Since the head is cut to the charset's classes (softmax over them alone), a restricted
            # charset reads slightly differently from before: rows of the masked reading are stale.
            data["recognition"]["head"] = "charset_classes"
        in_use = _ENGINE_SECTIONS.get(engine, set())
        for sections in _ENGINE_SECTIONS.values():
            for section in sections - in_use:  # torch and onnxruntime share theirs
                data.pop(section, None)
        for section, keys in _FIELDS_NOT_FINGERPRINTED.items():
            for key in keys:
                data.get(section, {}).pop(key, None)
        if not data["fields"]["enabled"]:  # no fields written: nothing else in the section matters
            data.pop("fields")
        for (section, key), before in _ADDED_SETTINGS.items():
            if section in data and data[section].get(key, before) == before:  # as before the setting existed
                data[section].pop(key, None)
                if not data[section]:  # a section that is all new settings at their old values
                    data.pop(section)
        return data


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = [k for k in dotted.split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"override {dotted!r} must name a section and a field, e.g. detection.box_thresh")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("FOLIO_") or "__" not in name:
            continue
        dotted = name[len("FOLIO_") :].lower().replace("__", ".")
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, RecursionError) as e:
            raise ConfigError(f"environment variable {name} is not a valid YAML value: {e}") from e
        _set_path(tree, dotted, value)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> FolioConfig:
    """Build the effective config.

    Args:
        path: YAML file; ``None`` for the defaults.
        overrides: dotted keys to values (``{"detection.box_thresh": 0.6}``), applied last.
        environ: environment to read ``FOLIO_*`` overrides from (default ``os.environ``).

    Raises:
        ConfigError: unreadable file, unknown key or invalid value; the message names it.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except IsADirectoryError as e:
            raise ConfigError(f"config path {p} is a folder, not a YAML file") from e
        except OSError as e:
            raise ConfigError(f"config file {p} cannot be read: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {p} is not UTF-8 text: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        except RecursionError as e:
            raise ConfigError(f"config file {p} is nested too deeply to be a Folio config") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
        tree = loaded
    tree = _merge(tree, _env_overrides(dict(os.environ if environ is None else environ)))
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted, value)
    try:
        return FolioConfig.model_validate(tree)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from e


def to_yaml(config: FolioConfig, header: str = "") -> str:
    """The config as commented YAML: every section and field with its description.

    ``configs/default.yaml`` is ``to_yaml(FolioConfig(), DEFAULTS_HEADER)``
    (``folio config --defaults`` prints it), so the file cannot drift from the code.
    """
    import textwrap

    lines = [header.rstrip("\n"), ""] if header else []
    for name, info in type(config).model_fields.items():
        section = getattr(config, name)
        if not isinstance(section, BaseModel):  # a top-level setting
            for chunk in textwrap.wrap(info.description or "", 100):
                lines.append(f"# {chunk}")
            lines += [f"{name}: {yaml.safe_dump(list(section), default_flow_style=True).strip()}", ""]
            continue
        lines.append(f"{name}:")
        for field_name, info in type(section).model_fields.items():
            for chunk in textwrap.wrap(info.description or "", 100):
                lines.append(f"  # {chunk}")
            value = yaml.safe_dump(getattr(section, field_name), default_flow_style=True, width=1000).strip()
            if value.endswith("\n..."):
                value = value[:-4]
            value = value.removesuffix("...").strip()
            lines.append(f"  {field_name}: {value}")
        lines.append("")
    return "\n".join(lines)


DEFAULTS_HEADER = """\
# Folio defaults: every setting with its default value.
# Override with --config FILE, FOLIO_<SECTION>__<FIELD> environment variables, or --set section.field=value.
# Generated by `folio config --defaults > configs/default.yaml`; tests/test_config.py checks it matches.
"""
