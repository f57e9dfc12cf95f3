#!/usr/bin/env bash
# Folio on one GPU: pages/s, GPU busy, peak GPU memory and where the time goes for each engine
# candidate, word F1 on the GPU against the CPU engine, and what decoding 300-dpi PDF pages costs a
# core. One command, for a machine with a CUDA GPU, a Python that has torch, and no internet:
#
#   bash scripts/gpu-bench.sh [OUT_DIR]          # default: $OUT, else /tmp/folio-gpu-bench
#
# It installs Folio over the torch that is there, never Folio's pinned one: the wheels in .whl/
# (what the machine lacks, as `pip download` fetched them for its Python) into /tmp/site, then
# Folio itself with `pip install --no-deps -e .`. The FUNSD forms come from FOLIO_GPU_FUNSD (default
# .gpu-data/funsd, a copy of ../shared/eval/funsd, which does not travel with the repository).
#
# What it runs, in order, each step in its own time limit, and no new bench once FOLIO_GPU_BUDGET_S
# (default 330) seconds have passed, so the whole run ends within about 9 minutes:
#   1. the machine: nvidia-smi, torch, ONNX Runtime's execution providers;
#   2. FOLIO_GPU_PAGES (default 600) distinct PNG pages made from the FUNSD forms (the same pixels,
#      one PNG text chunk apart, so the runner does not skip them as duplicates);
#   3. `folio eval funsd` on the GPU in float16 and bfloat16, for word F1 against the CPU engine's;
#   4. `folio bench PAGES --device cuda` for each candidate (CANDIDATES below);
#   5. decoding 300-dpi PDF pages on one core (how many decode cores one GPU needs).
# OUT_DIR gets summary.json (every result), tables.md (the bench tables) and log.txt.
set -uo pipefail

OUT_DIR=${1:-${OUT:-/tmp/folio-gpu-bench}}
FUNSD=${FOLIO_GPU_FUNSD:-.gpu-data/funsd}
PAGES=${FOLIO_GPU_PAGES:-600}
BUDGET_S=${FOLIO_GPU_BUDGET_S:-330}
DEVICE=${FOLIO_GPU_DEVICE:-cuda}   # cpu: a smoke test of this script on a machine without a GPU
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/folio-gpu.XXXXXX)
mkdir -p "$OUT_DIR" "$WORK/runs"
exec > >(tee -a "$OUT_DIR/log.txt") 2>&1
export PYTHONUNBUFFERED=1
say() { printf '[%4ds] %s\n' "$SECONDS" "$*"; }

# name|settings (--set KEY=VALUE, space-separated) of each candidate, in order of importance.
# "fed" keeps the GPU fed: big OCR batches, three batches in flight (one's CPU work overlaps
# another's GPU work), six decode threads ahead, detection 16 pages per call in shape buckets of 128.
FED="runner.batch_pages=32 runner.ocr_threads=3 runner.decode_threads=6 detection.batch_pages=16 detection.size_multiple=128"
CANDIDATES=(
  "torch-fp16-shipped|"
  "torch-fp16-fed|$FED"
  "torch-bf16-fed|$FED engine.dtype=bfloat16"
  "torch-fp16-fed-exact|runner.batch_pages=32 runner.ocr_threads=3 runner.decode_threads=6 detection.batch_pages=16"
  "torch-fp16-fed-compile|$FED engine.compile=true"
)

say "1. install"
if [[ -n "${FOLIO_GPU_SKIP_INSTALL:-}" ]]; then
  say "skipped: FOLIO_GPU_SKIP_INSTALL is set"
elif compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ -z "${FOLIO_GPU_SKIP_INSTALL:-}" ]]; then
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi
$PY -m pipeline.cli --version || exit 1

say "2. the machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
$PY - <<'EOF' | tee "$WORK/machine.json"
import json, os
import onnxruntime, torch
print(json.dumps({
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "cpus": len(os.sched_getaffinity(0)), "onnxruntime": onnxruntime.__version__,
    "onnxruntime_providers": onnxruntime.get_available_providers(),
}))
EOF

say "3. $PAGES pages from $FUNSD"
$PY - "$FUNSD/images" "$WORK/pages" "$PAGES" <<'EOF' || exit 1
import struct, sys, zlib
from pathlib import Path
src, dst, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
dst.mkdir(parents=True)
forms = sorted(p for p in src.iterdir() if p.suffix.lower() == ".png")
assert forms, f"no PNG forms in {src}"
for i in range(n):
    data = forms[i % len(forms)].read_bytes()
    body = b"tEXt" + b"folio-copy\x00" + str(i).encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    end = data.rindex(b"IEND") - 4  # the IEND chunk starts with its length
    (dst / f"page{i:05d}.png").write_bytes(data[:end] + chunk + data[end:])
print(f"{n} pages from {len(forms)} forms")
EOF

say "4. word F1 on the GPU (the CPU engine's is in docs/benchmarks.md for the same forms)"
for variant in float16-32 float16-128 bfloat16-32; do
  dtype=${variant%-*} multiple=${variant#*-}
  timeout 150 $PY -m pipeline.cli eval funsd "$FUNSD" --quiet --set engine.name=torch --set engine.device=$DEVICE \
    --set engine.dtype=$dtype --set detection.size_multiple=$multiple --set detection.batch_pages=16 \
    --json "$WORK/runs/eval-$dtype-$multiple.json" | tail -n 2
done

say "5. bench candidates"
for candidate in "${CANDIDATES[@]}"; do
  name=${candidate%%|*}
  sets=()
  for kv in ${candidate#*|}; do sets+=(--set "$kv"); done
  if (( SECONDS > BUDGET_S )); then say "skipped $name: past the ${BUDGET_S}s budget"; continue; fi
  say "bench $name ${sets[*]}"
  timeout 150 $PY -m pipeline.cli bench "$WORK/pages" --device "$DEVICE" --systems folio --repeat 2 --markdown '' \
    --json "$WORK/runs/bench-$name.json" --set engine.name=torch "${sets[@]}" > "$WORK/runs/bench-$name.md" 2>&1
  echo "rc=$?"; tail -n 8 "$WORK/runs/bench-$name.md"
  { echo "## $name: ${sets[*]}"; echo; cat "$WORK/runs/bench-$name.md"; echo; } >> "$OUT_DIR/tables.md"
done

say "6. decoding 300-dpi PDF pages on one core"
timeout 120 $PY - "$FUNSD/images" "$WORK/runs/decode-pdf.json" <<'EOF'
import json, sys, time
from pathlib import Path
from PIL import Image
from pipeline.config import load_config
from pipeline.stages.decode import DecodeStage
from pipeline.types import DocumentRef, PageImage
src, out = Path(sys.argv[1]), Path(sys.argv[2])
pdf = Path("/tmp/folio-300dpi.pdf")
forms = [Image.open(p).convert("RGB") for p in sorted(src.glob("*.png"))[:20]]
# An A4-ish scan: each form scaled to 300 dpi (2480 px wide), as archive PDFs hold them.
pages = [f.resize((2480, round(2480 * f.height / f.width))) for f in forms]
pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=300)
config = load_config(overrides={"decode.pdf_dpi": 300}, environ={})
stage = DecodeStage(config)
t0, cpu0 = time.perf_counter(), time.process_time()
decoded = [item for item in stage(DocumentRef(str(pdf))) if isinstance(item, PageImage)]
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
result = {"pages": len(decoded), "shape": list(decoded[0].image.shape), "wall_s": wall, "cpu_s": cpu,
          "cpu_ms_per_page": 1000 * cpu / len(decoded)}
print(json.dumps(result))
out.write_text(json.dumps(result))
EOF

say "7. summary"
$PY - "$WORK" "$OUT_DIR/summary.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
summary = {"machine": json.loads((work / "machine.json").read_text() or "{}"), "eval": {}, "bench": {}}
for f in sorted((work / "runs").glob("*.json")):
    data = json.loads(f.read_text())
    if f.name.startswith("eval-"):
        summary["eval"][f.stem[5:]] = {k: v for k, v in data.items() if k not in ("per_page", "config")}
    elif f.name.startswith("bench-"):
        r = data["results"][0]
        keep = ("pages", "pages_per_s", "seconds", "gpu_util_mean_pct", "gpu_util_max_pct", "gpu_mem_peak_mb",
                "torch_peak_allocated_mb", "cpu_cores_used", "time_ms_per_page", "peak_rss_mb")
        summary["bench"][f.stem[6:]] = {k: r.get(k) for k in keep}
    else:
        summary[f.stem] = data
out.write_text(json.dumps(summary, indent=1))
for name, r in summary["bench"].items():
    print(f"{name}: {r['pages_per_s']:.1f} pages/s, GPU busy {r['gpu_util_mean_pct']}%, "
          f"peak {r['gpu_mem_peak_mb']} MiB, {r['cpu_cores_used']:.1f} cores, ms/page {r['time_ms_per_page']}")
for name, e in summary["eval"].items():
    print(f"eval {name}: word F1 {e.get('word_f1')}")
EOF
say "done: $OUT_DIR"
