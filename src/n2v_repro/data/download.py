"""Fetch BSDS500 jpgs from a list of mirrors, verified against the sha256 manifest.

Each mirror is a base laid out `<base>/<split>/<id>.jpg`: an http(s) URL, a file:// URL or
a local folder (one named above its <split>/ folders is looked into, `config.mirror_images`,
and the folder used is logged). Verified files are kept in a cache folder that is not a
declared Snakemake output, so a failed job (whose declared outputs Snakemake deletes) loses
nothing; outputs are hard links to the cached files (a copy where links are impossible).

A few files are fetched at once (HTTP by `requests`). Each connection has a short connect
timeout and a read timeout (seconds without a byte), so a mirror that accepts connections and
never answers costs seconds, not minutes. A mirror's first failure is logged, and a mirror that
cannot be reached for several files in a row is given up for the rest of the run, its
requests in flight ended (their sockets shut down): the next mirror serves the remaining
files at once. Progress (files, bytes, rate) is logged at regular intervals. A download is
written to `.<name>.<pid>.part` and renamed only once its sha256 matches; the next attempt at
that file deletes what a killed run left.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from n2v_repro.config import local_mirror, mirror_images
from n2v_repro.data.manifest import ManifestEntry, read_manifest
from n2v_repro.errors import UserError
from n2v_repro.io.atomic import atomic_path

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
# Seconds between progress lines while files are being fetched.
PROGRESS_INTERVAL_S = 10.0


# An unreachable mirror fails every file the same way: the error names the first few.
FAILURES_IN_MESSAGE = 10


class DownloadError(UserError, RuntimeError):
    """One or more files could not be fetched with the expected checksum from any mirror."""


@dataclass(frozen=True)
class DownloadSettings:
    """config["data"]["download"]; the defaults are the schema's."""

    # Seconds to wait for a connection to open.
    connect_timeout_s: float = 10.0
    # Seconds to wait for the next bytes of a response (its headers included).
    read_timeout_s: float = 30.0
    # Downloads are network-bound, not CPU-bound: a few connections in flight hide latency.
    connections: int = 4
    # A mirror that cannot be reached for this many files in a row is skipped from then on.
    mirror_failures: int = 3

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> DownloadSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


@dataclass(frozen=True)
class FetchResult:
    """Where a file came from: `source` is a mirror base, or 'cache' / 'output'."""

    entry: ManifestEntry
    source: str
    n_bytes: int


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_valid(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def mirror_url(base: str, entry: ManifestEntry) -> str:
    """URL of one file on a mirror; a plain folder becomes a file:// URL."""
    if "://" not in base:
        base = Path(base).resolve().as_uri()
    return f"{base.rstrip('/')}/{entry.relpath}"


def resolve_mirror(base: str) -> str:
    """Return `base`, or for a local mirror named above its <split>/ folders, where they are."""
    folder = local_mirror(base)
    images = mirror_images(folder) if folder is not None else None
    if images is None or images == folder:
        return base
    log.info("mirror %s has no train/, val/ or test/ folder; using %s", base, images)
    return str(images)


class _Sockets:
    """The sockets of one mirror's connections.

    `cut` shuts them down, which ends the requests waiting on them at once (closing a socket
    from another thread would not wake them).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._cut = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)
            if self._cut:  # opened while the mirror was being given up
                _shut(sock)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _Tracked:
    """A urllib3 connection that hands its socket to its mirror's `_Sockets`."""

    def __init__(self, *args: Any, sockets: _Sockets, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sockets = sockets

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sockets.add(self.sock)  # type: ignore[attr-defined]


class _HTTPConnection(_Tracked, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _session(sockets: _Sockets, connections: int) -> requests.Session:
    """Return a session whose connections (not through a proxy) register in `sockets`."""
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=connections)
    # urllib3 keeps the pool classes per pool manager so that they can be overridden; the
    # pools pass `sockets` on to the connections they make.
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": functools.partial(_HTTPPool, sockets=sockets),
        "https": functools.partial(_HTTPSPool, sockets=sockets),
    }
    session = requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session


def _fetch_to(
    url: str, destination: Path, settings: DownloadSettings, session: requests.Session
) -> int:
    """Stream `url` (http(s) or file://) into `destination`; return the number of bytes."""
    if url.startswith("file:"):
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), destination)
        return destination.stat().st_size
    timeout = (settings.connect_timeout_s, settings.read_timeout_s)
    with (
        session.get(url, timeout=timeout, stream=True) as response,
        open(destination, "wb") as out,
    ):
        response.raise_for_status()
        for block in response.iter_content(_CHUNK):
            out.write(block)
    return destination.stat().st_size


def _root_cause(error: BaseException) -> BaseException:
    """Return the innermost exception (requests wraps urllib3's, which wraps the socket's)."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return error


def _unreachable(error: Exception) -> bool:
    """Tell whether the mirror did not answer at all (as opposed to a 404 or a bad file)."""
    return isinstance(error, requests.RequestException) and not isinstance(
        error, requests.HTTPError
    )


def _reason(error: Exception, settings: DownloadSettings = DownloadSettings()) -> str:
    if isinstance(error, requests.HTTPError):
        return f"HTTP {error.response.status_code} {error.response.reason}"
    if isinstance(error, requests.Timeout) or isinstance(_root_cause(error), TimeoutError):
        return (
            f"timed out (no connection within {settings.connect_timeout_s:g} s or no data "
            f"within {settings.read_timeout_s:g} s; data.download.*_timeout_s)"
        )
    if isinstance(error, requests.RequestException):
        return f"cannot connect or open ({_root_cause(error)})"
    return f"{type(error).__name__}: {error}"


class MirrorHealth:
    """What the run has seen of each mirror, shared by the download threads.

    Logs a mirror's first failure and the first file another mirror served in its place,
    and gives a mirror up after `settings.mirror_failures` unreachable attempts in a row,
    ending its requests in flight (each would otherwise wait out its read timeout).
    """

    def __init__(self, settings: DownloadSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._sockets: dict[str, _Sockets] = {}
        self._sessions: dict[str, requests.Session] = {}
        self._in_a_row: dict[str, int] = {}
        self._given_up: dict[str, str] = {}
        self._failed: set[str] = set()
        self._fallbacks: set[str] = set()

    def skip_reason(self, base: str) -> str | None:
        with self._lock:
            return self._given_up.get(base)

    def session(self, base: str) -> requests.Session:
        """Return the mirror's HTTP session (one per mirror, so that one mirror can be cut)."""
        with self._lock:
            if base not in self._sessions:
                self._sockets[base] = _Sockets()
                self._sessions[base] = _session(self._sockets[base], self.settings.connections)
            return self._sessions[base]

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()

    def failed(self, base: str, entry: ManifestEntry, error: Exception, reason: str) -> None:
        with self._lock:
            if base not in self._failed:
                self._failed.add(base)
                log.warning(
                    "mirror %s failed for %s: %s (later failures of this mirror are listed "
                    "only if no mirror serves the file)",
                    base,
                    entry.relpath,
                    reason,
                )
            # A 404 or a wrong file shows the mirror is up: only unanswered attempts count.
            count = self._in_a_row.get(base, 0) + 1 if _unreachable(error) else 0
            self._in_a_row[base] = count
            if count >= self.settings.mirror_failures and base not in self._given_up:
                self._given_up[base] = (
                    f"skipped: unreachable for {count} files in a row (last: {reason})"
                )
                log.warning(
                    "giving up on mirror %s: unreachable for %d files in a row; the remaining "
                    "files skip it",
                    base,
                    count,
                )
                if base in self._sockets:
                    self._sockets[base].cut()

    def served(self, base: str, entry: ManifestEntry, failed_first: list[str]) -> None:
        with self._lock:
            self._in_a_row[base] = 0
            if failed_first and base not in self._fallbacks:
                self._fallbacks.add(base)
                log.warning(
                    "%s came from mirror %s after %s failed; later files may too",
                    entry.relpath,
                    base,
                    ", ".join(failed_first),
                )


def fetch_verified(
    entry: ManifestEntry,
    mirrors: Sequence[str],
    cached: Path,
    settings: DownloadSettings = DownloadSettings(),
    health: MirrorHealth | None = None,
) -> FetchResult:
    """Put a verified copy of `entry` at `cached`, trying each mirror in order.

    The download goes to a temporary name beside `cached` and is renamed only when its
    sha256 matches, so `cached` is either absent or valid. Raises DownloadError naming the
    file and every mirror tried, each with its reason.
    """
    health = health if health is not None else MirrorHealth(settings)
    reasons, failed_first = [], []
    for base in mirrors:
        url = mirror_url(base, entry)
        skipped = health.skip_reason(base)
        if skipped is not None:
            reasons.append(f"{url}: {skipped}")
            failed_first.append(base)
            continue
        try:
            with atomic_path(cached, suffix=".part") as tmp:
                n_bytes = _fetch_to(url, tmp, settings, health.session(base))
                digest = sha256_of(tmp)
                if digest != entry.sha256:
                    raise ValueError(
                        f"sha256 mismatch: got {digest}, manifest says {entry.sha256} "
                        f"({n_bytes} bytes)"
                    )
        except (OSError, ValueError, requests.RequestException) as error:
            # A request cut because the mirror was given up meanwhile: say that, not "closed".
            cut = health.skip_reason(base) if _unreachable(error) else None
            reason = cut or _reason(error, settings)
            reasons.append(f"{url}: {reason}")
            failed_first.append(base)
            health.failed(base, entry, error, reason)
            continue
        health.served(base, entry, failed_first)
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
    """Count files and bytes from all threads, and log how far the download is.

    A line per file (where it came from) and, every PROGRESS_INTERVAL_S, the whole run's.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.downloaded_bytes = 0
        self.start = time.monotonic()
        self._last_line = self.start
        self._lock = threading.Lock()

    def record(self, result: FetchResult) -> None:
        with self._lock:
            self.done += 1
            if result.source not in ("cache", "output"):
                self.downloaded_bytes += result.n_bytes
        log.info("%s from %s (%d bytes)", result.entry.relpath, result.source, result.n_bytes)

    def line(self, force: bool = False) -> None:
        """Log 'done/total files, MB, MB/s' if the interval has passed (or `force`)."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_line < PROGRESS_INTERVAL_S:
                return
            self._last_line = now
            done, downloaded = self.done, self.downloaded_bytes
        elapsed = max(now - self.start, 1e-9)
        log.info(
            "%d/%d files in place; downloaded %.2f MB in %.1f s, %.2f MB/s",
            done,
            self.total,
            downloaded / 1e6,
            elapsed,
            downloaded / 1e6 / elapsed,
        )


def download_images(
    outputs: Sequence[str | Path],
    manifest_path: str | Path,
    mirrors: Sequence[str],
    cache_dir: str | Path,
    settings: DownloadSettings = DownloadSettings(),
) -> list[FetchResult]:
    """Make every output jpg a verified copy of the manifest's file with the same id.

    Parameters
    ----------
    outputs : paths `<folder>/<split>/<id>.jpg`; id and split must agree with the manifest.
    manifest_path : sha256 manifest (see `n2v_repro.data.manifest.read_manifest`).
    mirrors : bases tried in order for each file.
    cache_dir : verified files are kept as `<cache_dir>/<split>/<id>.jpg`.
    settings : timeouts, parallel connections, when to give a mirror up.

    Files already valid in the cache or at the output are not fetched again. Every file that
    can be fetched is, before a DownloadError lists all that could not.
    """
    if not mirrors:
        raise DownloadError("config key 'data.mirrors': no mirror given")
    mirrors = [resolve_mirror(base) for base in mirrors]
    manifest = read_manifest(manifest_path)
    targets = [(Path(p), _entry_for_output(Path(p), manifest, str(manifest_path))) for p in outputs]
    progress = _Progress(len(targets))
    health = MirrorHealth(settings)

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
            result = fetch_verified(entry, mirrors, cached, settings, health)
        if not (output.exists() and os.path.samefile(output, cached)):
            link_or_copy(cached, output)
        # A link shares the cached file's mtime, possibly older than the manifest (an input);
        # make the output's time the time it was put in place, as for a fresh download.
        os.utime(output)
        progress.record(result)
        return result

    results: list[FetchResult] = []
    failures: list[str] = []
    log.info(
        "%d file(s) from %d mirror(s), %d at a time; timeouts: connect %g s, read %g s",
        len(targets),
        len(mirrors),
        settings.connections,
        settings.connect_timeout_s,
        settings.read_timeout_s,
    )
    with ThreadPoolExecutor(max_workers=settings.connections) as pool:
        pending: set[Future[FetchResult]] = {pool.submit(obtain, target) for target in targets}
        while pending:
            finished, pending = wait(pending, PROGRESS_INTERVAL_S, FIRST_COMPLETED)
            for future in finished:
                try:
                    results.append(future.result())
                except DownloadError as error:
                    failures.append(str(error))
            progress.line()
    health.close()
    progress.line(force=True)
    # The order of the outputs, not of completion: the error lists files in a stable order.
    order = {entry.relpath: n for n, (_, entry) in enumerate(targets)}
    results.sort(key=lambda r: order[r.entry.relpath])
    failures.sort(key=lambda f: order.get(f.split(":", 1)[0], len(order)))
    log.info(
        "%d/%d files in place (%d fetched); %d failed",
        len(results),
        len(targets),
        sum(r.source not in ("cache", "output") for r in results),
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
