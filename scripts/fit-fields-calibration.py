"""Fit the fields stage's confidence calibration (pipeline/stages/data/fields_calibration.json).

A field's confidence is the share of fields found by its method (``total/label-right``,
``supplier_name/company-words``...) that were right on the development sets, smoothed towards one
half (Laplace: (right + 1) / (count + 2)); methods are pooled across fields for fields whose own
count is small, and the default is the share over everything. The counts come from the ``per_method``
of ``folio eval ... --json`` reports:

    folio run ../shared/eval/sroie/img /tmp/sroie-out --config configs/invoices.yaml
    folio eval sroie-keys ../shared/eval/sroie --from-output /tmp/sroie-out --config configs/invoices.yaml \
        --json /tmp/sroie-keys.json
    folio eval invoice2data ../shared/eval/invoices_invoice2data --config configs/invoices.yaml \
        --json /tmp/invoice2data.json
    .venv/bin/python scripts/fit-fields-calibration.py /tmp/sroie-keys.json /tmp/invoice2data.json

Fit it on the development sets only, and refit after changing the fields stage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "pipeline" / "stages" / "data" / "fields_calibration.json"
#: A field/method needs this many fields to get a value of its own; fewer fall back to the method pooled.
MIN_COUNT = 5


def main(paths: list[str]) -> None:
    by_key: dict[str, list[int]] = {}
    sources = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        sources.append({"format": report.get("format"), "system": report.get("system"),
                        "documents": report.get("documents")})
        for key, counts in report["per_method"].items():
            right, count = by_key.setdefault(key, [0, 0]), counts
            right[0] += counts["right"]
            right[1] += counts["count"]
    pooled: dict[str, list[int]] = {}
    for key, (right, count) in by_key.items():
        method = key.split("/", 1)[1]
        pooled.setdefault(method, [0, 0])
        pooled[method][0] += right
        pooled[method][1] += count
    methods = {key: round((r + 1) / (n + 2), 3) for key, (r, n) in sorted(by_key.items()) if n >= MIN_COUNT}
    methods |= {m: round((r + 1) / (n + 2), 3) for m, (r, n) in sorted(pooled.items())}
    total_right = sum(r for r, _ in by_key.values())
    total = sum(n for _, n in by_key.values())
    out = {"default": round((total_right + 1) / (total + 2), 3), "methods": methods,
           "counts": {key: {"right": r, "count": n} for key, (r, n) in sorted(by_key.items())},
           "fitted_on": sources}
    OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {len(methods)} methods from {total} fields ({total_right} right)")


if __name__ == "__main__":
    main(sys.argv[1:])
