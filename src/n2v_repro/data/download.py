"""Fetch BSDS500 jpgs from a list of mirrors, verified against the sha256 manifest.

Each mirror is a base laid out `<base>/<split>/<id>.jpg`: an http(s) URL, a file:// URL or
a local folder. Verified files are kept in a cache folder that is not a declared Snakemake
output, so a failed job (whose declared outputs Snakemake deletes) loses nothing; outputs
are hard links to the cached files (a copy where links are impossible).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from n2v_repro.data.manifest import ManifestEntry, read_manifest
from n2v_repro.io.atomic import atomic_path

log = logging.getLogger(__name__)

# Seconds to wait for a connection or for the next bytes of a response.
TIMEOUT_S = 60.0
# Downloads are network-bound, not CPU-bound: a few connections in flight hide latency.
CONNECTIONS = 4
_CHUNK = 1 << 16


# An unreachable mirror fails every file the same way: the error names the first few.
FAILURES_IN_MESSAGE = 10


class DownloadError(RuntimeError):
    """One or more files could not be fetched with the expected checksum from any mirror."""


@dataclass(frozen=True)
class FetchResult:
    """Where a file came from: `source` is a mirror base, or 'cache' / 'output'."""

    entry: ManifestEntry
    source: str
    n_bytes: int


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_valid(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def mirror_url(base: str, entry: ManifestEntry) -> str:
    """URL of one file on a mirror; a plain folder becomes a file:// URL."""
    if "://" not in base:
        base = Path(base).resolve().as_uri()
    return f"{base.rstrip('/')}/{entry.relpath}"


def _fetch_to(url: str, destination: Path) -> int:
    """Stream `url` into `destination`; return the number of bytes."""
    n_bytes = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(destination, "wb") as out:
        for block in iter(lambda: response.read(_CHUNK), b""):
            out.write(block)
            n_bytes += len(block)
    return n_bytes


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot connect or open ({error.reason})"
    return f"{type(error).__name__}: {error}"


def fetch_verified(entry: ManifestEntry, mirrors: Sequence[str], cached: Path) -> FetchResult:
    """Put a verified copy of `entry` at `cached`, trying each mirror in order.

    The download goes to a temporary name beside `cached` and is renamed only when its
    sha256 matches, so `cached` is either absent or valid. Raises DownloadError naming the
    file and every mirror tried, each with its reason.
    """
    reasons = []
    for base in mirrors:
        url = mirror_url(base, entry)
        try:
            with atomic_path(cached, suffix=".part") as tmp:
                n_bytes = _fetch_to(url, tmp)
                digest = sha256_of(tmp)
                if digest != entry.sha256:
                    raise ValueError(
                        f"sha256 mismatch: got {digest}, manifest says {entry.sha256} "
                        f"({n_bytes} bytes)"
                    )
        except (OSError, ValueError) as error:
            reasons.append(f"{url}: {_reason(error)}")
            continue
        return FetchResult(entry, base, n_bytes)
    raise DownloadError(
        f"{entry.relpath}: no mirror gave the expected file; tried "
        f"{len(mirrors)} mirror(s):\n    " + "\n    ".join(reasons)
    )


def link_or_copy(source: Path, destination: Path) -> None:
    """Make `destination` a hard link to `source`, or an atomic copy where linking fails."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        with atomic_path(destination, suffix=".part") as tmp:
            shutil.copyfile(source, tmp)


def _entry_for_output(
    path: Path, manifest: dict[str, ManifestEntry], manifest_path: str
) -> ManifestEntry:
    image_id = path.stem
    entry = manifest.get(image_id)
    if entry is None:
        raise DownloadError(f"{path}: image id {image_id} is not in the manifest {manifest_path}")
    if path.parent.name != entry.split or path.suffix != ".jpg":
        raise DownloadError(
            f"{path}: expected <folder>/{entry.relpath} (split from the manifest {manifest_path})"
        )
    return entry


class _Progress:
    """Thread-safe 'n/N, bytes, rate' log lines."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.downloaded_bytes = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()

    def record(self, result: FetchResult) -> None:
        with self._lock:
            self.done += 1
            if result.source not in ("cache", "output"):
                self.downloaded_bytes += result.n_bytes
            elapsed = max(time.monotonic() - self.start, 1e-9)
            log.info(
                "%d/%d %s from %s (%d bytes); downloaded %.2f MB so far, %.2f MB/s",
                self.done,
                self.total,
                result.entry.relpath,
                result.source,
                result.n_bytes,
                self.downloaded_bytes / 1e6,
                self.downloaded_bytes / 1e6 / elapsed,
            )


def download_images(
    outputs: Sequence[str | Path],
    manifest_path: str | Path,
    mirrors: Sequence[str],
    cache_dir: str | Path,
) -> list[FetchResult]:
    """Make every output jpg a verified copy of the manifest's file with the same id.

    Parameters
    ----------
    outputs : paths `<folder>/<split>/<id>.jpg`; id and split must agree with the manifest.
    manifest_path : sha256 manifest (see `n2v_repro.data.manifest.read_manifest`).
    mirrors : bases tried in order for each file.
    cache_dir : verified files are kept as `<cache_dir>/<split>/<id>.jpg`.

    Files already valid in the cache or at the output are not fetched again. Every file that
    can be fetched is, before a DownloadError lists all that could not.
    """
    if not mirrors:
        raise DownloadError("config key 'data.mirrors': no mirror given")
    manifest = read_manifest(manifest_path)
    targets = [(Path(p), _entry_for_output(Path(p), manifest, str(manifest_path))) for p in outputs]
    progress = _Progress(len(targets))

    def obtain(target: tuple[Path, ManifestEntry]) -> FetchResult:
        output, entry = target
        cached = Path(cache_dir) / entry.relpath
        if is_valid(cached, entry.sha256):
            result = FetchResult(entry, "cache", cached.stat().st_size)
        elif is_valid(output, entry.sha256):
            # A valid output from an earlier run without a cache: keep it, and cache it.
            link_or_copy(output, cached)
            result = FetchResult(entry, "output", output.stat().st_size)
        else:
            result = fetch_verified(entry, mirrors, cached)
        if not (output.exists() and os.path.samefile(output, cached)):
            link_or_copy(cached, output)
        # A link shares the cached file's mtime, possibly older than the manifest (an input);
        # make the output's time the time it was put in place, as for a fresh download.
        os.utime(output)
        progress.record(result)
        return result

    results: list[FetchResult] = []
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=CONNECTIONS) as pool:
        for future in [pool.submit(obtain, target) for target in targets]:
            try:
                results.append(future.result())
            except DownloadError as error:
                failures.append(str(error))
    elapsed = time.monotonic() - progress.start
    log.info(
        "%d/%d files in place (%d fetched, %.2f MB in %.1f s); %d failed",
        len(results),
        len(targets),
        sum(r.source not in ("cache", "output") for r in results),
        progress.downloaded_bytes / 1e6,
        elapsed,
        len(failures),
    )
    if failures:
        for failure in failures[FAILURES_IN_MESSAGE:]:
            log.error("%s", failure)
        more = len(failures) - FAILURES_IN_MESSAGE
        raise DownloadError(
            f"{len(failures)} of {len(targets)} file(s) could not be downloaded:\n  "
            + "\n  ".join(failures[:FAILURES_IN_MESSAGE])
            + (f"\n  ... and {more} more (listed above in this log)" if more > 0 else "")
        )
    return results
