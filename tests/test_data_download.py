"""Downloading from mirrors: verification, fallbacks, the cache, and error messages."""

import contextlib
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_bsds import FakeBsds, make_fake_bsds
from http_mirror import serve_directory, silent_server, unreachable_url

from n2v_repro.config import validate_config
from n2v_repro.data.download import (
    DownloadError,
    DownloadSettings,
    download_images,
    mirror_url,
    sha256_of,
)
from n2v_repro.data.manifest import read_manifest


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeBsds:
    return make_fake_bsds(tmp_path_factory.mktemp("fake"), n_train=3, n_test=1, n_val=2, n_bsd68=2)


def _outputs(root: Path, fake: FakeBsds, ids: list[str]) -> list[Path]:
    manifest = read_manifest(fake.manifest)
    return [root / "bsds500" / manifest[i].relpath for i in ids]


def _assert_verified(outputs: list[Path], fake: FakeBsds) -> None:
    for output in outputs:
        assert sha256_of(output) == sha256_of(fake.jpg(output.stem)), output


def test_http_download_verifies_and_caches(tmp_path: Path, fake: FakeBsds, caplog) -> None:
    ids = fake.train_ids + fake.bsd68
    outputs = _outputs(tmp_path, fake, ids)
    cache = tmp_path / "cache"
    with serve_directory(fake.images) as base, caplog.at_level(logging.INFO):
        results = download_images(outputs, fake.manifest, [base], cache)
    _assert_verified(outputs, fake)
    assert {r.source for r in results} == {base}
    assert f"{len(ids)}/{len(ids)}" in caplog.text and "MB/s" in caplog.text
    for output in outputs:
        cached = cache / output.parent.name / output.name
        assert output.samefile(cached)
    assert not list(cache.rglob("*.part")), "no temporary file may be left"

    # Outputs deleted (as Snakemake does for a failed job): rebuilt from the cache, no mirror.
    for output in outputs:
        output.unlink()
    again = download_images(outputs, fake.manifest, [unreachable_url()], cache)
    assert {r.source for r in again} == {"cache"}
    _assert_verified(outputs, fake)


def test_local_folder_and_file_url_mirrors(tmp_path: Path, fake: FakeBsds) -> None:
    outputs = _outputs(tmp_path / "a", fake, fake.bsd68)
    download_images(outputs, fake.manifest, [str(fake.images)], tmp_path / "cache_a")
    _assert_verified(outputs, fake)
    outputs = _outputs(tmp_path / "b", fake, fake.bsd68)
    download_images(outputs, fake.manifest, [fake.images.as_uri()], tmp_path / "cache_b")
    _assert_verified(outputs, fake)


@pytest.mark.parametrize("layout", ["data/images", "images"])
def test_local_mirror_one_level_too_high_is_looked_into(
    tmp_path: Path, fake: FakeBsds, caplog, layout: str
) -> None:
    """BSDS500's tarball root (or its data/) as the mirror: the images under it are used."""
    top = tmp_path / "BSDS500"
    shutil.copytree(fake.images, top / layout)
    validate_config({"data": {"mirrors": [str(top)]}})  # the up-front check lets it through
    outputs = _outputs(tmp_path, fake, fake.bsd68)
    with caplog.at_level(logging.INFO):
        results = download_images(outputs, fake.manifest, [str(top)], tmp_path / "cache")
    _assert_verified(outputs, fake)
    assert {r.source for r in results} == {str(top / layout)}
    assert f"mirror {top} has no train/, val/ or test/ folder; using {top / layout}" in caplog.text


def test_checksum_mismatch_names_file_and_mirror_and_keeps_the_rest(
    tmp_path: Path, fake: FakeBsds
) -> None:
    bad_mirror = tmp_path / "bad_mirror"
    shutil.copytree(fake.images, bad_mirror)
    victim = fake.train_ids[1]
    tampered = bad_mirror / "train" / f"{victim}.jpg"
    tampered.write_bytes(tampered.read_bytes()[:-10] + b"0123456789")
    outputs = _outputs(tmp_path, fake, fake.train_ids)
    cache = tmp_path / "cache"
    with serve_directory(bad_mirror) as base, pytest.raises(DownloadError) as caught:
        download_images(outputs, fake.manifest, [base], cache)
    message = str(caught.value)
    assert f"train/{victim}.jpg" in message and base in message and "sha256 mismatch" in message
    # Everything else was fetched and verified; the bad file was never written anywhere.
    good = [o for o in outputs if o.stem != victim]
    _assert_verified(good, fake)
    assert not (cache / "train" / f"{victim}.jpg").exists()
    assert not [p for p in tmp_path.rglob(f"*{victim}*") if "bad_mirror" not in p.parts]


def test_missing_everywhere_lists_every_mirror_with_its_reason(
    tmp_path: Path, fake: FakeBsds
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(fake.images, partial)
    victim = fake.bsd68[0]
    (partial / "val" / f"{victim}.jpg").unlink()
    down = unreachable_url()
    outputs = _outputs(tmp_path, fake, fake.bsd68)
    with serve_directory(partial) as base, pytest.raises(DownloadError) as caught:
        download_images(outputs, fake.manifest, [base, down, str(partial)], tmp_path / "c")
    message = str(caught.value)
    assert f"val/{victim}.jpg" in message
    assert "HTTP 404" in message and f"{down}/val/{victim}.jpg" in message
    assert mirror_url(str(partial), read_manifest(fake.manifest)[victim]) in message
    assert "tried 3 mirror(s)" in message
    assert not outputs[0].exists()
    _assert_verified(outputs[1:], fake)


def test_output_not_in_manifest_or_wrong_split(tmp_path: Path, fake: FakeBsds) -> None:
    with pytest.raises(DownloadError, match="999999 is not in the manifest"):
        download_images([tmp_path / "train" / "999999.jpg"], fake.manifest, ["x"], tmp_path)
    with pytest.raises(DownloadError, match="expected"):
        download_images(
            [tmp_path / "val" / f"{fake.train_ids[0]}.jpg"], fake.manifest, ["x"], tmp_path
        )


def test_many_failures_name_the_first_few_and_log_the_rest(
    tmp_path: Path, fake: FakeBsds, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable mirror fails every file: the error stays readable, the log has all."""
    monkeypatch.setattr("n2v_repro.data.download.FAILURES_IN_MESSAGE", 2)
    ids = fake.train_ids + fake.bsd68
    outputs = _outputs(tmp_path, fake, ids)
    with pytest.raises(DownloadError) as raised, caplog.at_level(logging.ERROR):
        download_images(outputs, fake.manifest, [unreachable_url()], tmp_path / "cache")
    message = str(raised.value)
    assert message.startswith(f"{len(ids)} of {len(ids)} file(s) could not be downloaded")
    assert message.count("no mirror gave the expected file") == 2
    assert f"... and {len(ids) - 2} more" in message
    logged = [r for r in caplog.records if "no mirror gave the expected file" in r.getMessage()]
    assert len(logged) == len(ids) - 2
    assert not any(p.exists() for p in outputs)


# A hung mirror: accepts connections, never answers. Bounded by these timeouts (seconds).
FAST = DownloadSettings(connect_timeout_s=1.0, read_timeout_s=0.5, connections=2, mirror_failures=2)


def test_hung_mirror_costs_a_timeout_is_logged_once_and_given_up(
    tmp_path: Path, fake: FakeBsds, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("n2v_repro.data.download.PROGRESS_INTERVAL_S", 0.1)
    ids = fake.train_ids + fake.bsd68
    outputs = _outputs(tmp_path, fake, ids)
    with (
        silent_server() as hung,
        serve_directory(fake.images) as base,
        caplog.at_level(logging.INFO),
    ):
        start = time.monotonic()
        results = download_images(outputs, fake.manifest, [hung.url, base], tmp_path / "c", FAST)
        elapsed = time.monotonic() - start
    assert {r.source for r in results} == {base}
    _assert_verified(outputs, fake)
    # Two files wait one read timeout each, in parallel; then the mirror is given up and no
    # later file asks it (the old 60 s timeout per file made this minutes).
    assert elapsed < 5
    assert hung.connections == FAST.mirror_failures < len(ids)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    failed = [w for w in warnings if w.startswith(f"mirror {hung.url} failed for")]
    assert len(failed) == 1 and "timed out" in failed[0], warnings
    assert sum(w.startswith(f"giving up on mirror {hung.url}") for w in warnings) == 1, warnings
    assert sum(f"from mirror {base} after {hung.url} failed" in w for w in warnings) == 1
    # Progress lines while the first files hang, and a final one with the rate.
    progress = [r.getMessage() for r in caplog.records if "files in place;" in r.getMessage()]
    assert progress[0].startswith(f"0/{len(ids)} files in place")
    assert (
        progress[-1].startswith(f"{len(ids)}/{len(ids)} files in place") and "MB/s" in progress[-1]
    )


def test_requests_in_flight_to_a_mirror_given_up_end_at_once(
    tmp_path: Path, fake: FakeBsds
) -> None:
    """One of two hung requests fails early (the mirror closes it), so its thread asks the
    mirror again while the other still waits; the give-up at the other's read timeout ends
    that third request too, instead of its own read timeout later (issue 35: 63 s)."""
    settings = DownloadSettings(
        connect_timeout_s=1.0, read_timeout_s=3.0, connections=2, mirror_failures=2
    )
    outputs = _outputs(tmp_path, fake, fake.train_ids + fake.bsd68)
    with silent_server() as hung, serve_directory(fake.images) as base:
        closer = threading.Timer(2.0, lambda: hung.sockets[0].close())
        closer.start()
        start = time.monotonic()
        results = download_images(
            outputs, fake.manifest, [hung.url, base], tmp_path / "c", settings
        )
        elapsed = time.monotonic() - start
        closer.join()
    assert {r.source for r in results} == {base}
    _assert_verified(outputs, fake)
    assert hung.connections == 3
    # Given up at 3 s; the third request, asked at 2 s, would have waited until 5 s.
    assert elapsed < 4, elapsed


def test_only_a_hung_mirror_fails_within_the_timeouts(tmp_path: Path, fake: FakeBsds) -> None:
    outputs = _outputs(tmp_path, fake, fake.bsd68)
    with silent_server() as hung, pytest.raises(DownloadError) as raised:
        start = time.monotonic()
        download_images(outputs, fake.manifest, [hung.url], tmp_path / "c", FAST)
    assert time.monotonic() - start < 5
    message = str(raised.value)
    assert f"{hung.url}/val/{fake.bsd68[0]}.jpg: timed out" in message
    assert "data.download.*_timeout_s" in message
    assert not any(p.exists() for p in outputs)


@contextlib.contextmanager
def _stalling_server(body: bytes) -> Iterator[str]:
    """Answer one request with the headers and the first bytes of `body`, then nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer() -> None:
        connection, _ = listener.accept()
        held.append(connection)
        connection.recv(65536)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        connection.sendall(head + body[:100])

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for connection in held:
            connection.close()
        listener.close()


def test_mirror_stalling_mid_file_fails_within_the_read_timeout(
    tmp_path: Path, fake: FakeBsds
) -> None:
    outputs = _outputs(tmp_path, fake, fake.bsd68[:1])
    cache = tmp_path / "c"
    with _stalling_server(fake.jpg(fake.bsd68[0]).read_bytes()) as stalled:
        start = time.monotonic()
        with pytest.raises(DownloadError) as raised:
            download_images(outputs, fake.manifest, [stalled], cache, FAST)
    assert time.monotonic() - start < 5
    assert f"{stalled}/val/{fake.bsd68[0]}.jpg: timed out" in str(raised.value)
    assert not [p for p in cache.rglob("*") if p.is_file()], "nothing unverified is kept"


def test_leftover_of_a_killed_download_is_removed(tmp_path: Path, fake: FakeBsds) -> None:
    """A killed run leaves `.<name>.<pid>.part` beside the cached file; the next fetch of that
    file deletes it (pooch.retrieve's `tmpXXXXXXXX` would stay for good)."""
    outputs = _outputs(tmp_path, fake, fake.bsd68[:1])
    cache = tmp_path / "cache"
    leftover = cache / "val" / f".{outputs[0].name}.12345.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a jpg")
    download_images(outputs, fake.manifest, [str(fake.images)], cache)
    _assert_verified(outputs, fake)
    assert not leftover.exists()


def test_download_settings_defaults_are_the_schema_defaults() -> None:
    from_schema = validate_config({})["data"]["download"]
    assert DownloadSettings.from_config(from_schema) == DownloadSettings()
    assert set(from_schema) == set(DownloadSettings.__dataclass_fields__)
