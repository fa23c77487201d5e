"""Faults against the real pipeline: kills, bad mirrors, a full disk, a path with spaces.

Every Snakemake run uses the repository's Snakefile in a temporary working directory
(tests/pipeline_runner.py), generated images (tests/fake_bsds.py) served over loopback HTTP
(tests/http_mirror.py), the tiny config/test.yaml and the one-machine profile
(profiles/default, which Snakemake picks up beside the Snakefile: --rerun-incomplete is on).
Training runs with frameworks: [torch] only, to stay fast.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_bsds import FakeBsds, make_fake_bsds
from http_mirror import serve_directory, unreachable_url
from pipeline_runner import run_snakemake, start_snakemake, write_config

from n2v_repro import paths
from n2v_repro.errors import UserError
from n2v_repro.io import atomic as io_utils
from n2v_repro.io.atomic import WriteError

SIGMA = 25
# The port recipe (validation on the BSD68 split), torch, first seed of config/test.yaml.
RUN = paths.run_path(paths.RUN, "port", "torch", SIGMA, 1)
MODEL_DIR = paths.run_path(paths.MODEL_DIR, "port", "torch", SIGMA, 1)
CHECKPOINT = paths.run_path(paths.CHECKPOINT, "port", "torch", SIGMA, 1)
TRAIN_LOG = f"logs/train/{RUN}.log"
PATCH_TARGETS = [
    f"resources/patches/bsd400_bsd68_split/sigma{SIGMA}/{name}"
    for name in ("train.npy", "train_index.csv", "train_stats.json", "valid_tiles.npz")
]
EPOCHS = 5


def tiny_config(fake: FakeBsds, mirrors: list[str], **data: Any) -> dict[str, Any]:
    """config/test.yaml's scale on the generated images, torch only, one recipe and seed."""
    return {
        "frameworks": ["torch"],
        "recipes": ["port"],
        "seeds": [1],
        "sigmas": [SIGMA],
        "data": fake.data_config(
            mirrors,
            **{"train_images": None, "bsd68_images": None, "n_valid": 2, "patch_size": 64, **data},
        ),
        "train": {
            "epochs": EPOCHS,
            "steps_per_epoch": 2,
            "batch_size": 4,
            "valid_tiles": 4,
            "device": "cpu",
        },
    }


def mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-6000:]


def temporary_leftovers(folder: Path) -> list[Path]:
    """Files of io_utils' atomic writes or of the downloader that never got renamed."""
    return [
        p for p in folder.rglob(".*") if p.is_file() and re.search(r"\.(tmp|part|npz|npy)$", p.name)
    ] + list(folder.rglob("*.part"))


def epochs_logged(workdir: Path) -> int:
    log = workdir / TRAIN_LOG
    return len(re.findall(r"epoch \d+/\d+ lr", log.read_text())) if log.exists() else 0


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_group_during_training(
    workdir: Path, configfile: Path, sig: signal.Signals, after_epochs: int
) -> int:
    """Start training, signal Snakemake's whole process group once `after_epochs` are logged."""
    process = start_snakemake(
        workdir, configfile, [f"{MODEL_DIR}/last.npz"], log_path=workdir / f"run-{sig.name}.txt"
    )
    try:
        wait_for(
            lambda: epochs_logged(workdir) >= after_epochs,
            timeout_s=240,
            what=f"{after_epochs} logged epochs",
            process=process,
        )
        os.killpg(process.pid, sig)
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeBsds:
    return make_fake_bsds(tmp_path_factory.mktemp("fake"))


@pytest.fixture(scope="module")
def mirror(fake: FakeBsds):
    with serve_directory(fake.images) as base_url:
        yield base_url


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, fake: FakeBsds, mirror: str
) -> None:
    config = tiny_config(fake, [mirror])
    reference = tmp_path / "reference"
    reference.mkdir()
    assert_ok(
        run_snakemake(
            reference, write_config(tmp_path / "ref.yaml", config), [f"{MODEL_DIR}/last.npz"]
        )
    )

    workdir = tmp_path / "killed"
    workdir.mkdir()
    configfile = write_config(tmp_path / "killed.yaml", config)
    assert_ok(run_snakemake(workdir, configfile, PATCH_TARGETS))
    data_mtimes = mtimes(workdir / "resources")

    # SIGTERM: Snakemake stops its jobs; the training job stops at a step boundary.
    returncode = kill_group_during_training(workdir, configfile, signal.SIGTERM, after_epochs=1)
    assert returncode != 0
    assert (workdir / CHECKPOINT).is_file(), "the checkpoint must survive the failed job"
    assert not (workdir / MODEL_DIR / "last.npz").exists()

    # SIGKILL of the resumed run: nothing gets a chance to clean up, Snakemake's lock stays.
    before_kill = epochs_logged(workdir)
    returncode = kill_group_during_training(
        workdir, configfile, signal.SIGKILL, after_epochs=before_kill + 1
    )
    assert returncode == -signal.SIGKILL
    assert "resuming from" in (workdir / TRAIN_LOG).read_text()
    # Snakemake's lock outlives a SIGKILL: the next run refuses until `--unlock`.
    locked = run_snakemake(workdir, configfile, [f"{MODEL_DIR}/last.npz"])
    assert locked.returncode != 0 and "--unlock" in locked.stdout, locked.stdout[-3000:]
    assert_ok(run_snakemake(workdir, configfile, extra=["--unlock"]))

    final = run_snakemake(workdir, configfile, [f"{MODEL_DIR}/last.npz"])
    assert_ok(final)
    assert "train_torch" in final.stdout
    for rule in ("download_bsds500", "to_gray_bsd400", "to_gray_bsd68", "add_noise", "patchify"):
        assert f"rule {rule}:" not in final.stdout, f"{rule} was redone"
    assert mtimes(workdir / "resources") == data_mtimes, "finished data jobs were redone"
    log = (workdir / TRAIN_LOG).read_text()
    # Snakemake deletes a job's log before each run; the interrupted attempts' logs are kept
    # above the last one: attempt 2 resumed after attempt 1's epochs, attempt 3 after the
    # epochs of both (at least 1 + 1).
    assert [int(n) for n in re.findall(r"^==== attempt (\d+),", log, re.M)] == [2, 3]
    resumed_after = [int(n) for n in re.findall(r"resuming from .* after epoch (\d+)", log)]
    assert len(resumed_after) == 2 and 1 <= resumed_after[0] < resumed_after[1], log[-3000:]
    assert not (workdir / CHECKPOINT).exists(), "a finished run leaves no resume state"

    with (
        np.load(reference / MODEL_DIR / "last.npz") as expected,
        np.load(workdir / MODEL_DIR / "last.npz") as resumed,
    ):
        assert sorted(expected.files) == sorted(resumed.files)
        for name in expected.files:
            assert np.array_equal(expected[name], resumed[name]), name
    history = (workdir / MODEL_DIR / "history.csv").read_text().splitlines()
    assert len(history) == 1 + EPOCHS


@pytest.mark.slow
def test_bad_mirrors_fail_naming_the_file_and_keep_earlier_outputs(
    tmp_path: Path, fake: FakeBsds, mirror: str
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    # An earlier, complete run on fewer training images.
    first = write_config(tmp_path / "first.yaml", tiny_config(fake, [mirror], train_images=2))
    assert_ok(run_snakemake(workdir, first, ["to_gray", "resources/bsd68_split.csv"]))
    cache = workdir / "resources/.download_cache"
    # Content, not mtime: the downloader re-times cached files (hard links of the outputs) so
    # that the outputs do not look older than the manifest.
    earlier_cache = contents(cache)
    earlier_split = (workdir / "resources/bsd68_split.csv").stat().st_mtime_ns
    earlier_gray = mtimes(workdir / "resources/gray")
    new_image = fake.train_ids[2]
    new_relpath = f"{'train' if new_image in fake.ids['train'] else 'test'}/{new_image}.jpg"

    def more_images(mirrors: list[str]) -> Path:
        return write_config(tmp_path / "more.yaml", tiny_config(fake, mirrors, train_images=3))

    # 1. The only mirror is down.
    down = unreachable_url()
    result = run_snakemake(workdir, more_images([down]), ["to_gray"])
    assert result.returncode != 0
    log = (workdir / "logs/download_bsds500/download_bsds500.log").read_text()
    assert new_relpath in log and down in log and "cannot connect" in log, log[-3000:]

    # 2. A mirror serving a truncated copy of the new image.
    broken = tmp_path / "broken_mirror"
    shutil.copytree(fake.images, broken)
    whole = (broken / new_relpath).read_bytes()
    (broken / new_relpath).write_bytes(whole[: len(whole) // 2])
    with serve_directory(broken) as broken_url:
        result = run_snakemake(workdir, more_images([broken_url]), ["to_gray"])
    assert result.returncode != 0
    log = (workdir / "logs/download_bsds500/download_bsds500.log").read_text()
    assert f"{new_relpath}: sha256 mismatch" in log or (
        new_relpath in log and "sha256 mismatch" in log and f"{len(whole) // 2} bytes" in log
    ), log[-3000:]

    # Neither failure left a half-written file, a wrong file in the cache, or touched what
    # the earlier run made (the failed job's own outputs are Snakemake's to remove).
    assert not temporary_leftovers(workdir / "resources")
    assert not (cache / new_relpath).exists()
    assert contents(cache) == earlier_cache
    assert (workdir / "resources/bsd68_split.csv").stat().st_mtime_ns == earlier_split
    assert mtimes(workdir / "resources/gray") == earlier_gray

    # A good mirror completes the run, fetching only the new image.
    assert_ok(run_snakemake(workdir, more_images([mirror]), ["to_gray"]))
    log = (workdir / "logs/download_bsds500/download_bsds500.log").read_text()
    assert f"{new_relpath} from {mirror}" in log
    assert log.count(f" from {mirror} ") == 1, "images from the cache were downloaded again"


@pytest.mark.slow
def test_working_directory_with_spaces(tmp_path: Path, fake: FakeBsds, mirror: str) -> None:
    workdir = tmp_path / "a folder with spaces" / "run 1"
    workdir.mkdir(parents=True)
    configfile = write_config(workdir / "my config.yaml", tiny_config(fake, [mirror]))
    assert_ok(run_snakemake(workdir, configfile, PATCH_TARGETS))
    for target in PATCH_TARGETS:
        assert (workdir / target).stat().st_size > 0, target


# --- a full disk: library level (every output goes through io_utils' atomic writes) ---------


WRITE_ERRNO = {"code": errno.ENOSPC}  # the error the patched writers raise


def disk_full(*_args: Any, **_kwargs: Any) -> None:
    code = WRITE_ERRNO["code"]
    raise OSError(code, os.strerror(code))


def json_dump_until_full(data: Any, handle: Any, **_kwargs: Any) -> None:
    handle.write('{"mean": 1.0, "trunc')
    disk_full()


def np_save_until_full(file: Any, *_args: Any, **_kwargs: Any) -> None:
    if hasattr(file, "write"):
        file.write(b"PK\x03\x04 half an archive")
    else:
        Path(file).write_bytes(b"PK\x03\x04 half an archive")
    disk_full()


@pytest.mark.parametrize(
    ("patched", "replacement", "write"),
    [
        pytest.param("json.dump", json_dump_until_full,
                     lambda p: io_utils.write_json(p, {"mean": 1.0}), id="write_json"),
        pytest.param("numpy.savez", np_save_until_full,
                     lambda p: io_utils.save_npz(p, {"w": np.ones(4, np.float32)}), id="save_npz"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_full_disk_leaves_old_file_and_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: str, replacement: Any, write: Any,
    code: int,
) -> None:  # fmt: skip
    """The serialiser fails half-way (full disk, read-only, no permission) after writing part
    of its output: a user error naming the file, the free space and that a rerun resumes."""
    target = tmp_path / "out" / "result.bin"
    target.parent.mkdir()
    target.write_bytes(b"the old, complete result")
    old_mtime = target.stat().st_mtime_ns
    monkeypatch.setattr(patched, replacement)
    monkeypatch.setitem(WRITE_ERRNO, "code", code)
    with pytest.raises(WriteError) as raised:
        write(target)
    monkeypatch.undo()
    assert isinstance(raised.value, UserError) and raised.value.errno == code
    message = str(raised.value)
    assert f"cannot write {target}: {os.strerror(code)}" in message
    assert "MiB free there" in message and "rerun" in message and "\n" not in message
    assert target.read_bytes() == b"the old, complete result"
    assert target.stat().st_mtime_ns == old_mtime
    assert [p.name for p in target.parent.iterdir()] == ["result.bin"], "temporary file left"


def test_a_failed_read_inside_a_write_keeps_its_own_error(tmp_path: Path) -> None:
    """EACCES on a file the block reads (a local mirror's image) is not the target's."""
    source = tmp_path / "mirror" / "3096.jpg"
    with pytest.raises(PermissionError) as raised, io_utils.atomic_path(tmp_path / "out" / "a"):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(source))
    assert not isinstance(raised.value, WriteError) and raised.value.filename == str(source)


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 256 KiB tmpfs, where the machine lets the test mount one (root in a VM); else skip."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        gc.collect()  # close any file a failed writer left open, which keeps the mount busy
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


# np.savez leaves its ZipFile open when a write fails; closing it at garbage collection
# raises again, which pytest reports as an unraisable exception (harmless: the temporary
# file is already unlinked).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_full_tmpfs_leaves_old_file_and_no_partial_output(small_tmpfs: Path) -> None:
    """The same with a real full file system: 1 MB into 256 KiB."""
    target = small_tmpfs / "weights.npz"
    io_utils.save_npz(target, {"w": np.zeros(16, np.float32)})
    old_bytes = target.read_bytes()
    with pytest.raises(WriteError, match=f"cannot write {target}: No space left") as raised:
        io_utils.save_npz(target, {"w": np.ones(250_000, np.float32)})
    assert raised.value.errno == errno.ENOSPC
    gc.collect()  # inside the test, so the filterwarnings mark covers the ZipFile's __del__
    assert target.read_bytes() == old_bytes
    assert [p.name for p in small_tmpfs.iterdir()] == ["weights.npz"]
