"""Property-based fuzzing of the decode edge and the config loader (hypothesis).

The decode contract: on any bytes, :func:`pipeline.decode.open_document` and
its pages either give RGB pages or raise a :class:`FolioError` with a code;
never another exception, never a hang. The config contract: any file text,
override dict or ``FOLIO_*`` environment gives a config or a ``ConfigError``.
What fuzzing found is recorded in docs/hostile.md. The default run is small;
``-m slow`` runs the same properties with many more examples.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import warnings
import zlib

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from measure import hostile
from pipeline.config import DecodeConfig, FolioConfig, load_config
from pipeline.io.decode import SUPPORTED_MIME_TYPES, open_document, sniff
from pipeline.errors import ConfigError, FolioError

#: Small limits so a mutated header that declares a big page still decodes in milliseconds.
CONFIG = DecodeConfig(pdf_dpi=36, max_pixels=4_000_000, max_pages=20, max_file_bytes=1 << 20)

#: Generous per-example deadline: the machine may be shared; a hang is what it is there to catch.
FAST = settings(max_examples=60, deadline=dt.timedelta(seconds=5), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEAVY = settings(max_examples=2000, deadline=dt.timedelta(seconds=5),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SEEDS = {
    "png": hostile.png_bytes(size=(40, 24)),
    "png16": hostile.png16(),
    "palette": hostile.palette_png(),
    "rgba": hostile.rgba_png(),
    "jpeg": hostile.jpeg_bytes(size=(40, 24)),
    "cmyk": hostile.cmyk_jpeg(),
    "exif": hostile.exif_rotated_jpeg(),
    "tiff": hostile.tiff_bytes(size=(40, 24)),
    "tiff3": hostile.multi_frame_tiff(3),
    "fax": hostile.fax_tiff(2, size=(64, 32)),
    "pdf": hostile.pdf_pages(2, 144, 72),
    "pdf_encrypted": hostile.encrypted_pdf_empty_password(144, 72),
    "pdf_xref": hostile.pdf_broken_xref(144, 72),
}

MAGICS = [b"%PDF-1.7\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0"]


def _exercise(data: bytes) -> None:
    """Sniff, open and decode every page; only FolioErrors may come out, and pages must be RGB."""
    try:
        mime = sniff(data)
    except FolioError as e:
        assert re.fullmatch(r"[a-z_]+", e.code)
    else:
        assert mime in SUPPORTED_MIME_TYPES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF and the like; not our contract
        try:
            with open_document(data, CONFIG) as doc:
                assert 1 <= doc.page_count <= CONFIG.max_pages
                for index, image, _dpi, error in doc.pages():
                    if error is not None:
                        assert isinstance(error, FolioError) and re.fullmatch(r"[a-z_]+", error.code)
                        continue
                    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, index
                    assert image.shape[0] * image.shape[1] <= CONFIG.max_pixels
        except FolioError as e:
            assert re.fullmatch(r"[a-z_]+", e.code)


@st.composite
def mutated(draw) -> bytes:
    """A valid seed file with a few bit flips, overwritten or inserted runs of junk, and maybe a truncation."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            special = st.sampled_from([b"\xff" * 4, b"\x00" * 4, b"\x7f\xff\xff\xff"])
            junk = draw(st.binary(min_size=1, max_size=8) | special)
            data[at : at + len(junk)] = junk
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@st.composite
def header_fields(draw) -> bytes:
    """Valid files whose header fields are rewritten: PNG IHDR (CRC fixed, so Pillow reads on),
    JPEG SOF0, one TIFF tag entry (type, count, value) in any frame, or a PDF's MediaBox, /Rotate and /Count."""
    kind = draw(st.sampled_from(["png", "jpeg", "tiff", "pdf"]))
    if kind == "pdf":  # page geometry and the page count PDFium trusts
        number = st.sampled_from(["0", "-1", "1e400", "-1e400", "nan", "99999999999", "3.4e38", "0.0001", "14400"])
        box = b" ".join(draw(number).encode() for _ in range(4))
        text = hostile.pdf_pages(1, 144, 72).replace(b"/MediaBox [0 0 144.00 72.00]", b"/MediaBox [%s]" % box)
        text = text.replace(b"/Rotate 0", b"/Rotate %d" % draw(st.sampled_from([0, 45, 90, -90, 270, 2**31, -(2**40)])))
        return text.replace(b"/Count 1", b"/Count %d" % draw(st.sampled_from([0, 1, 2, -1, 2**31 - 1, 2**31, 2**63])))
    if kind == "png":
        data = bytearray(SEEDS[draw(st.sampled_from(["png", "png16", "palette", "rgba"]))])
        w, h = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1))
        if draw(st.booleans()):
            w, h = draw(st.integers(0, 3000)), draw(st.integers(0, 3000))
        fields = struct.pack(">IIBBBBB", w, h, draw(st.sampled_from([0, 1, 2, 4, 8, 16, 255])),
                             draw(st.sampled_from([0, 2, 3, 4, 6, 7])), draw(st.integers(0, 1)), 0,
                             draw(st.integers(0, 2)))
        data[16:29] = fields
        data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + fields))
        return bytes(data)
    if kind == "jpeg":
        data = bytearray(SEEDS[draw(st.sampled_from(["jpeg", "cmyk", "exif"]))])
        sof = data.index(b"\xff\xc0")
        struct.pack_into(">BHHB", data, sof + 4, draw(st.sampled_from([0, 8, 12, 16, 255])),
                         draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(st.integers(0, 5)))
        return bytes(data)
    data = bytearray(SEEDS[draw(st.sampled_from(["tiff", "tiff3", "fax"]))])
    ifds = hostile._tiff_ifds(bytes(data))
    ifd = ifds[draw(st.integers(0, len(ifds) - 1))]
    (count,) = struct.unpack_from("<H", data, ifd)
    entry = ifd + 2 + 12 * draw(st.integers(0, count - 1))
    if draw(st.booleans()):
        struct.pack_into("<H", data, entry + 2, draw(st.integers(0, 18)))  # field type
    if draw(st.booleans()):
        struct.pack_into("<I", data, entry + 4, draw(st.sampled_from([0, 1, 2, 3, 255, 65535, 2**31 - 1, 2**32 - 1])))
    struct.pack_into("<I", data, entry + 8, draw(st.sampled_from([0, 1, 2, 7, 8, 16, 255, 65535, 2**31, 2**32 - 1])
                                                 | st.integers(0, 2**32 - 1)))
    return bytes(data)


def _tiff_long8_strip_offset() -> bytes:
    """Found by fuzzing: StripOffsets retyped as LONG8 holding 2**64-1; Pillow's seek raised OverflowError."""
    data = bytearray(hostile.tiff_bytes(size=(40, 24), dpi=None))
    ifd = hostile._tiff_ifds(bytes(data))[0]
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == 273:
            struct.pack_into("<HII", data, entry + 2, 16, 1, len(data))  # one LONG8, stored at the end
    return bytes(data + b"\xff" * 8)


def test_fuzz_finding_tiff_offset_overflow_is_corrupt_image():
    with open_document(_tiff_long8_strip_offset(), CONFIG) as doc:
        [(_, image, _, error)] = list(doc.pages())
    assert image is None and error.code == "corrupt_image"


# --------------------------------------------------------------------------- decoders


@FAST
@given(st.binary(max_size=1024) | st.builds(lambda m, rest: m + rest, st.sampled_from(MAGICS), st.binary(max_size=512)))
@example(b"")
@example(b"%PDF-")
@example(b"\x89PNG\r\n\x1a\n")
def test_arbitrary_bytes_give_pages_or_a_folio_error(data):
    _exercise(data)


@FAST
@given(mutated())
def test_mutated_documents_give_pages_or_a_folio_error(data):
    _exercise(data)


@FAST
@given(header_fields())
@example(_tiff_long8_strip_offset())
def test_rewritten_header_fields_give_pages_or_a_folio_error(data):
    _exercise(data)


@pytest.mark.slow
@HEAVY
@given(mutated() | header_fields() | st.binary(max_size=4096))
def test_mutated_documents_heavy(data):
    _exercise(data)


# --------------------------------------------------------------------------- config loader

_FIELDS = sorted(
    f"{section}.{name}"
    for section, info in FolioConfig.model_fields.items()
    if hasattr(info.annotation, "model_fields")
    for name in info.annotation.model_fields
)

_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20) | st.sampled_from(["auto", "cpu", "all", "latin", "1e9", "-1", "0x10", "yes", "~"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_keys = st.sampled_from(_FIELDS) | st.text(max_size=30) | st.sampled_from(
    ["", ".", "decode.", ".decode", "decode..max_pages", "decode.max_pages.x", "x.y.z"]
)


def _load_or_config_error(**kwargs) -> None:
    try:
        config = load_config(**kwargs)
    except ConfigError as e:
        assert e.code == "config_error" and e.message
    else:
        assert isinstance(config, FolioConfig)


@FAST
@given(st.dictionaries(_keys, _values, max_size=4))
def test_random_overrides_give_a_config_or_a_config_error(overrides):
    _load_or_config_error(overrides=overrides, environ={})


# Bugs this file found in pipeline.config.load_config, fixed (docs/hostile.md): a FOLIO_* value that
# is not YAML, a config file that is not UTF-8, nested too deeply, or a folder.


@FAST
@given(st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=20), st.text(max_size=20), max_size=3))
@example({"decode.max_pages": "["})
@example({"decode.max_pages": "&a [*a]"})
def test_random_environment_gives_a_config_or_a_config_error(env):
    environ = {"FOLIO_" + k.upper().replace(".", "__"): v for k, v in env.items()}
    _load_or_config_error(environ=environ)


_yaml_documents = st.dictionaries(
    st.sampled_from(sorted(FolioConfig.model_fields)) | st.text(max_size=10),
    st.dictionaries(st.sampled_from(sorted({f.split(".")[1] for f in _FIELDS})) | st.text(max_size=10), _values,
                    max_size=4)
    | _values,
    max_size=4,
)


@FAST
@given(st.one_of(_yaml_documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=300)))
@example("decode: {max_pages: [\n")
@example("decode:\n  max_pages: !!python/object:os.system 1\n")
@example("- a\n- b\n")
@example("\t\x00")
def test_random_config_files_give_a_config_or_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    _load_or_config_error(path=path, environ={})


@pytest.mark.parametrize("content", [b"\xff\xfe\x00bad utf-8 \xc3\x28", b"decode:\n  max_pages: \xe9\n"])
def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    _load_or_config_error(path=path, environ={})


def test_deeply_nested_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("decode: " + "[" * 2000 + "]" * 2000 + "\n", encoding="utf-8")
    _load_or_config_error(path=path, environ={})


def test_config_path_that_is_a_folder_is_a_config_error(tmp_path):
    _load_or_config_error(path=tmp_path, environ={})
