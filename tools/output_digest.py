"""Digest every output of a pipeline run, so that a restructuring can be shown to change none.

    python tools/output_digest.py /path/to/checkout > before.json
    python tools/output_digest.py /path/to/checkout --compare before.json

One digest per file under results/ and resources/ (the download cache aside): tables, JSON,
arrays, weights and packages byte for byte, less what a rerun changes by itself: times,
rates, memory, dates, the machine and absolute paths (keys and columns matching VOLATILE),
and the metadata of figures (their pixels are compared) and of zip archives (.zip, .npz,
torch's .pt: their members are). Logs, benchmarks and the HTML report hold nothing else
and are left out.
`--compare` prints each file whose digest differs, is missing or is new, and exits 1 if any.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

# Keys and columns a rerun of the same commit changes: wall times, rates, memory, utilisation,
# dates, the machine, the host's paths.
VOLATILE = re.compile(
    r"(^|_)(s|time|times|seconds|per_s|rss|mib|mem|memory|util|load|date|created|timestamp|"
    r"machine|host|hostname|cpu|python_executable|path|log|wall|elapsed)(_|$)|_s$|_time_s$",
    re.IGNORECASE,
)
SKIPPED_DIRS = ("logs", "benchmarks", ".download_cache", ".snakemake")
SKIPPED_SUFFIXES = (".log", ".html", ".tsv")


def _stable(value: Any) -> Any:
    """`value` without the volatile keys of its mappings, at any depth."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if not VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _table(text: str) -> bytes:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return b""
    keep = [i for i, name in enumerate(rows[0]) if not VOLATILE.search(name)]
    return "\n".join(",".join(row[i] for i in keep if i < len(row)) for row in rows).encode()


def content_digest(name: str, data: bytes) -> str:
    """sha256 of what a rerun keeps of a file named `name` with these bytes."""
    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        data = json.dumps(_stable(json.loads(data)), sort_keys=True).encode()
    elif suffix in (".yaml", ".yml"):
        data = json.dumps(_stable(yaml.safe_load(data)), sort_keys=True, default=str).encode()
    elif suffix == ".csv":
        data = _table(data.decode())
    elif suffix == ".png":
        image = np.asarray(Image.open(io.BytesIO(data)))
        data = repr((image.shape, str(image.dtype))).encode() + image.tobytes()
    elif data[:4] == b"PK\x03\x04":  # zip, npz, torch's .pt: the members, not their dates
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {m: content_digest(m, archive.read(m)) for m in sorted(archive.namelist())}
        data = json.dumps(members).encode()
    return hashlib.sha256(data).hexdigest()


def run_digests(root: Path) -> dict[str, str]:
    """Digest of every output file of the run in checkout `root`, by path relative to it."""
    digests = {}
    for top in ("results", "resources"):
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root)
            skipped = any(part in SKIPPED_DIRS for part in relative.parts)
            if path.is_file() and not skipped and path.suffix not in SKIPPED_SUFFIXES:
                digests[str(relative)] = content_digest(path.name, path.read_bytes())
    return digests


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per file whose digest differs, or that only one of the runs wrote."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            lines.append(f"missing: {name}")
        elif name not in before:
            lines.append(f"new: {name}")
        elif before[name] != after[name]:
            lines.append(f"differs: {name}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the checkout that ran the pipeline")
    parser.add_argument("--compare", type=Path, help="a digest file written before")
    options = parser.parse_args()
    digests = run_digests(options.root)
    if options.compare is None:
        json.dump(digests, sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    lines = differences(json.loads(options.compare.read_text()), digests)
    print("\n".join(lines) or f"identical: {len(digests)} files")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
