"""Digest every output of a pipeline run, so that a restructuring can be shown to change none.

    python tools/output_digest.py /path/to/checkout > before.json
    python tools/output_digest.py /path/to/checkout --compare before.json

One digest per file under results/ and resources/ (the download cache aside): tables, JSON,
arrays, weights and packages byte for byte, less what a rerun changes by itself: times,
rates, memory, dates, the machine and absolute paths (keys and columns matching VOLATILE),
and the metadata of figures (their pixels are compared) and of zip archives (.zip, .npz,
torch's .pt: their members are). Files that are only the machine's measurements
(MEASUREMENTS), logs, benchmarks and the HTML report are left out.
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
# dates, the machine, the host's paths, and shares of time.
VOLATILE = re.compile(
    r"(^|_)(s|time|times|seconds|minutes|per_s|rss|mib|mem|memory|util|load|date|created|"
    r"timestamp|machine|host|hostname|cpu|python_executable|path|log|wall|elapsed|share|"
    r"percent_of_train)(_|$)|_s$|_time_s$",
    re.IGNORECASE,
)
SKIPPED_DIRS = ("logs", "benchmarks", ".download_cache", ".snakemake")
SKIPPED_SUFFIXES = (".log", ".html", ".tsv")
# Files that hold nothing but the machine's measurements (times, memory, busy shares), or
# render another that is digested (port_claims.md: port_claims.json).
MEASUREMENTS = (
    "monitor.csv",
    "epoch_time.png",
    "memory_utilisation.png",
    "valid_psnr_time.png",
    "port_claims.md",
)
# The port's claims about time, memory and the device's busy share (report/claims.py):
# measurements of the machine, in port_claims.json's claims and runs.
MEASURED_CLAIMS = ("c1", "c2", "d", "e1", "e2")
# What differs between two exports of the same weights: TorchScript's per-process module
# name and source locations, its random serialization id, and checksums of the archive.
PROCESS_NAME = re.compile(rb"_bmz_arch_\d+")
RDF_VOLATILE = re.compile(f"{VOLATILE.pattern}|^sha256$", re.IGNORECASE)
ARCHIVE_VOLATILE = (".debug_pkl", "serialization_id")


def _stable(value: Any, volatile: re.Pattern[str] = VOLATILE) -> Any:
    """`value` without the volatile keys of its mappings and the measured claims, at any depth."""
    if isinstance(value, dict):
        if value.get("claim") in MEASURED_CLAIMS:
            return None
        return {
            k: _stable(v, volatile)
            for k, v in sorted(value.items())
            if not volatile.search(str(k)) and k not in MEASURED_CLAIMS
        }
    if isinstance(value, list):
        return [_stable(v, volatile) for v in value]
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
    elif suffix in (".yaml", ".yml"):  # a package's rdf.yaml: its checksums follow the archive
        data = json.dumps(_stable(yaml.safe_load(data), RDF_VOLATILE), sort_keys=True, default=str)
        data = data.encode()
    elif suffix == ".csv":
        data = _table(data.decode())
    elif suffix == ".png":
        image = np.asarray(Image.open(io.BytesIO(data)))
        data = repr((image.shape, str(image.dtype))).encode() + image.tobytes()
    elif data[:4] == b"PK\x03\x04":  # zip, npz, torch's .pt: the members, not their dates
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {
                PROCESS_NAME.sub(b"_bmz_arch", m.encode()).decode(): content_digest(
                    m, archive.read(m)
                )
                for m in sorted(archive.namelist())
                if not m.endswith(ARCHIVE_VOLATILE)
            }
        data = json.dumps(members, sort_keys=True).encode()
    else:
        data = PROCESS_NAME.sub(b"_bmz_arch", data)
    return hashlib.sha256(data).hexdigest()


def run_digests(root: Path) -> dict[str, str]:
    """Digest of every output file of the run in checkout `root`, by path relative to it."""
    digests = {}
    for top in ("results", "resources"):
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root)
            skipped = any(part in SKIPPED_DIRS for part in relative.parts)
            skipped = skipped or path.name in MEASUREMENTS
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
