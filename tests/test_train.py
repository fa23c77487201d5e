"""The training loop on tiny synthetic data: outputs, resume exactness, SIGTERM, divergence."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from n2v_repro.config import MaskingConfig, PipelineConfig, TrainConfig
from n2v_repro.data.patches import pixel_stats, write_train_source
from n2v_repro.evaluation.metrics import psnr
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import HISTORY_COLUMNS, write_train_stats
from n2v_repro.models.card import read_model_card
from n2v_repro.models.initialisation import make_init_weights
from n2v_repro.training.checkpoint import (
    TrainState,
    fingerprint,
    load_checkpoint,
    previous_checkpoint,
    resume_state,
    save_checkpoint,
)
from n2v_repro.training.job import TrainingDivergedError, TrainJob
from n2v_repro.training.loop import train
from n2v_repro.training.masking import masked_mse
from n2v_repro.training.sampler import Batch, PatchSampler, load_training_data, load_validation
from n2v_repro.training.validation import validate

PATCH = 64
SIGMA = 25.0
ARCH = "n2n_unet"


def write_patch_dir(folder: Path, seed: int = 0) -> Path:
    """A patchify-format training source: three noisy images and six validation tiles."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    images = {
        f"img{number}": np.float32(rng.uniform(40, 200, shape) + rng.normal(0, SIGMA, shape))
        for number, shape in enumerate([(70, 90), (64, 64), (96, 72)])
    }
    write_train_source(images, folder / "train.npy", folder / "train_index.csv")
    write_train_stats(folder / "train_stats.json", pixel_stats(images))
    clean = rng.integers(30, 220, (6, PATCH, PATCH)).astype(np.uint8)
    noisy = (clean + rng.normal(0, SIGMA, clean.shape)).astype(np.float32)
    ids = np.array(["v0", "v0", "v0", "v1", "v1", "v1"])
    np.savez(folder / "valid_tiles.npz", noisy=noisy, clean=clean, ids=ids)
    return folder


def small_train_cfg(**overrides) -> TrainConfig:
    train_cfg = {
        "arch": ARCH,
        "epochs": 2,
        "steps_per_epoch": 2,
        "batch_size": 2,
        "valid_tiles": 3,
        "valid_epoch_tiles": 2,
        "device": "cpu",
        "schedule": {"kind": "step", "step_epochs": 1, "factor": 0.5},
        **overrides,
    }
    return PipelineConfig.from_mapping({"train": train_cfg}).train


def make_job(tmp: Path, framework: str = "torch", **overrides) -> TrainJob:
    patch_dir = tmp / "patches"
    if not patch_dir.exists():
        write_patch_dir(patch_dir)
    init = tmp / "init.npz"
    if not init.exists():
        save_npz(init, make_init_weights(ARCH, 7))
    return TrainJob(
        framework=framework,
        patch_dir=patch_dir,
        init_weights=init,
        out_dir=tmp / "models" / framework,
        checkpoint=tmp / "checkpoints" / framework / "checkpoint.npz",
        train=small_train_cfg(**overrides),
        patch_size=PATCH,
        seed=123,
        threads=1,
    )


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == HISTORY_COLUMNS
        return list(reader)


def load_weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --- validation ---------------------------------------------------------------------------


class IdentityBackend:
    """Predicts its input: validation's batching and metrics can be checked by hand."""

    def masked_loss(self, inputs, targets, mask) -> float:
        return masked_mse(inputs, targets, mask)

    def predict(self, inputs):
        return inputs.copy()


def test_validation_loss_is_the_whole_set_mean_for_any_batch_size(tmp_path: Path) -> None:
    patch_dir = write_patch_dir(tmp_path / "patches")
    stats = json.loads((patch_dir / "train_stats.json").read_text())
    masking = MaskingConfig(kind="uniform_withCP", percentage=0.198, radius=2)
    valid = load_validation(patch_dir / "valid_tiles.npz", stats["mean"], stats["std"], masking, 1)
    whole = masked_mse(valid.inputs, valid.targets, valid.mask)
    noisy_psnr = np.mean([psnr(c, n) for c, n in zip(valid.clean, valid.noisy, strict=True)])
    for batch_size in (1, 4, 6, 100):
        loss, valid_psnr, valid_ssim = validate(
            IdentityBackend(), valid, stats["mean"], stats["std"], batch_size
        )
        assert loss == pytest.approx(whole, rel=1e-12)
        # the identity "denoiser" returns the noisy tiles (up to float32 round trips)
        assert valid_psnr == pytest.approx(noisy_psnr, abs=1e-3)
        assert 0 < valid_ssim < 1


def test_fingerprint_ignores_epochs_and_device_only(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    data = load_training_data(job.patch_dir)
    base = fingerprint(job, data)
    same = [
        make_job(tmp_path, epochs=50),
        make_job(tmp_path, device="auto"),
    ]
    different = [
        make_job(tmp_path, batch_size=4),
        make_job(tmp_path, optimizer={"lr": 2e-4}),
        make_job(tmp_path, framework="jittor"),
    ]
    assert all(fingerprint(other, data) == base for other in same)
    assert all(fingerprint(other, data) != base for other in different)
    # A cosine schedule spans all epochs: a cosine run cannot be resumed with more of them.
    cosine = fingerprint(make_job(tmp_path, schedule={"kind": "cosine"}), data)
    assert fingerprint(make_job(tmp_path, schedule={"kind": "cosine"}, epochs=50), data) != cosine


# --- training runs (torch) ----------------------------------------------------------------


def test_train_writes_history_weights_monitor_and_summary(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    state = train(job).state
    out = job.out_dir

    rows = read_history(out / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert [float(row["lr"]) for row in rows] == [1e-4, 5e-5]  # step schedule, 1 epoch steps
    for row in rows:
        values = {key: float(value) for key, value in row.items()}
        assert all(np.isfinite(list(values.values())))
        assert values["train_loss"] > 0 and values["valid_loss"] > 0
        assert 5 < values["valid_psnr"] < 60 and -1 < values["valid_ssim"] <= 1
        assert values["patches_per_s"] == pytest.approx(4 / values["epoch_time_s"], rel=1e-9)
        assert values["valid_time_s"] > 0 and values["checkpoint_time_s"] > 0
    assert float(rows[1]["wall_time_s"]) > float(rows[0]["wall_time_s"]) > 0
    # the wall time holds every part of the epoch
    first = {key: float(value) for key, value in rows[0].items()}
    parts = first["epoch_time_s"] + first["valid_time_s"] + first["checkpoint_time_s"]
    assert parts <= first["wall_time_s"] < parts + 1.0

    init = load_weights(job.init_weights)
    last, best = load_weights(out / "last.npz"), load_weights(out / "best.npz")
    assert last.keys() == init.keys() == best.keys()
    assert any(not np.array_equal(last[k], init[k]) for k in init)
    losses = [float(row["valid_loss"]) for row in rows]
    if losses[1] < losses[0]:
        assert_same_weights(best, last)
    else:
        assert any(not np.array_equal(best[k], last[k]) for k in init)
    assert_same_weights(last, state.weights)

    with open(out / "monitor.csv") as handle:
        header = handle.readline().strip()
        samples = handle.readlines()
    assert header == "time_s,cpu_percent,rss_mib,gpu_util_percent,gpu_mem_mib,framework_mem_mib"
    assert samples

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["device"] == "cpu" and summary["epochs"] == 2
    # 2 of the 3 validation tiles after each epoch, all 3 once at the end
    assert summary["valid_tiles_per_epoch"] == 2
    final = summary["final_validation"]
    assert final["tiles"] == 3 and final["weights"] == "last"
    assert 5 < final["psnr"] < 60 and final["loss"] > 0
    # throughput = total patches / total training time, not a mean of per-epoch rates
    epoch_times = [float(row["epoch_time_s"]) for row in rows]
    assert summary["patches"] == 2 * 2 * 2
    assert summary["train_patches_per_s"] == pytest.approx(8 / sum(epoch_times))
    assert summary["steady_patches_per_s"] == pytest.approx(4 / epoch_times[1])
    assert summary["valid_time_s"] == pytest.approx(sum(float(r["valid_time_s"]) for r in rows))
    card = read_model_card(out / "model.json")
    stats = json.loads((job.patch_dir / "train_stats.json").read_text())
    assert (card.arch, card.framework, card.patch_size, card.seed) == (ARCH, "torch", PATCH, 123)
    assert (card.mean, card.std) == (stats["mean"], stats["std"])
    assert summary["total_time_s"] == pytest.approx(float(rows[-1]["wall_time_s"]))
    assert summary["peak_rss_mib"] > 0

    # resume state is gone once the outputs exist
    assert not job.checkpoint.exists() and not job.partial_monitor.exists()


def test_nan_loss_stops_at_once_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(tmp_path, epochs=3)
    clean_batch = PatchSampler.batch

    def poisoned_batch(self: PatchSampler, step: int) -> Batch:
        batch = clean_batch(self, step)
        if step == job.train.steps_per_epoch:  # first step of epoch 2
            batch.inputs[0, 0, 5, 5] = np.nan
        return batch

    monkeypatch.setattr(PatchSampler, "batch", poisoned_batch)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 1 \(global step 2\)"):
        train(job)
    meta, state = load_checkpoint(job.checkpoint)
    assert state.epochs_done == 1 and len(state.history) == 1
    assert all(np.isfinite(w).all() for w in state.weights.values())
    assert not (job.out_dir / "last.npz").exists()

    # the same run without the poison resumes from epoch 2 and finishes
    monkeypatch.setattr(PatchSampler, "batch", clean_batch)
    train(job)
    summary = json.loads((job.out_dir / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == 1
    assert len(read_history(job.out_dir / "history.csv")) == 3


def test_mismatched_checkpoint_starts_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = make_job(tmp_path, epochs=1)
    data = load_training_data(job.patch_dir)
    weights = make_init_weights(ARCH, 7)
    state = TrainState(1, weights, {}, weights, 0.5, [])
    other = make_job(tmp_path, epochs=1, optimizer={"lr": 3e-4})
    save_checkpoint(job.checkpoint, state, other, fingerprint(other, data))
    assert resume_state(job, fingerprint(job, data), job.checkpoint) is None
    assert "starting over" in caplog.text
    assert resume_state(other, fingerprint(other, data), other.checkpoint) is not None


# --- interruption (subprocesses) ----------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import json, logging, sys
    from pathlib import Path
    logging.basicConfig(level=logging.INFO)
    from test_train import make_job
    from n2v_repro.training.loop import train
    train(make_job(Path(sys.argv[1]), **json.loads(sys.argv[2])))
    """
)


def start_run(tmp: Path, overrides: dict) -> subprocess.Popen[str]:
    # `-c` puts the working directory first on the path: the tests folder, for make_job.
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp), json.dumps(overrides)],
        cwd=Path(__file__).parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_first_checkpoint(process: subprocess.Popen[str], checkpoint: Path) -> None:
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint after 120 s")
        time.sleep(0.02)


RESUME_CFG = {"epochs": 4, "steps_per_epoch": 3}


def skip_without_jittor(framework: str) -> None:
    if framework == "jittor" and importlib.util.find_spec("jittor") is None:
        pytest.skip("jittor is not installed")  # not imported: the backend prepares it


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The model folder (last.npz, history) of a run that nobody interrupts, per framework."""
    runs: dict[str, Path] = {}

    def run(framework: str) -> Path:
        if framework not in runs:
            tmp = tmp_path_factory.mktemp(f"uninterrupted_{framework}")
            process = start_run(tmp, {**RESUME_CFG, "framework": framework})
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output
            runs[framework] = tmp / "models" / framework
        return runs[framework]

    return run


JITTOR_MARKS = [pytest.mark.slow, pytest.mark.jittor]


@pytest.mark.parametrize(
    ("framework", "sig"),
    [
        pytest.param("torch", signal.SIGKILL, id="torch-SIGKILL"),
        pytest.param("torch", signal.SIGTERM, id="torch-SIGTERM"),
        pytest.param("jittor", signal.SIGKILL, id="jittor-SIGKILL", marks=JITTOR_MARKS),
        pytest.param("jittor", signal.SIGTERM, id="jittor-SIGTERM", marks=JITTOR_MARKS),
    ],
)
def test_killed_run_resumes_to_the_same_weights(
    tmp_path: Path,
    uninterrupted: Callable[[str], Path],
    framework: str,
    sig: signal.Signals,
) -> None:
    skip_without_jittor(framework)
    reference = uninterrupted(framework)
    job = make_job(tmp_path, framework, **RESUME_CFG)
    process = start_run(tmp_path, {**RESUME_CFG, "framework": framework})
    wait_for_first_checkpoint(process, job.checkpoint)
    os.kill(process.pid, sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    if sig == signal.SIGTERM:
        assert "TrainingInterruptedError" in output and "signal SIGTERM" in output
    _, state = load_checkpoint(job.checkpoint)
    assert 1 <= state.epochs_done < RESUME_CFG["epochs"]
    assert not (job.out_dir / "last.npz").exists()

    train(job)  # resumes in this process, from the kill's last complete epoch

    assert_same_weights(
        load_weights(job.out_dir / "last.npz"), load_weights(reference / "last.npz")
    )
    assert_same_weights(
        load_weights(job.out_dir / "best.npz"), load_weights(reference / "best.npz")
    )
    deterministic = ("epoch", "lr", "train_loss", "valid_loss", "valid_psnr", "valid_ssim")
    resumed_rows = read_history(job.out_dir / "history.csv")
    reference_rows = read_history(reference / "history.csv")
    assert [[r[k] for k in deterministic] for r in resumed_rows] == [
        [r[k] for k in deterministic] for r in reference_rows
    ]
    with open(job.out_dir / "monitor.csv", newline="") as handle:
        times = [float(row["time_s"]) for row in csv.DictReader(handle)]
    assert times == sorted(times)  # the resumed part continues the killed part's clock


def corrupt(path: Path, how: str) -> None:
    """Damage a checkpoint as a crash, a disk or a person might."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    elif how in ("float16", "int64", "nan"):  # right names and shapes, unusable values
        arrays = dict(np.load(path))
        for key in [k for k in arrays if k.startswith("weights/")]:
            arrays[key] = arrays[key] * np.nan if how == "nan" else arrays[key].astype(how)
        np.savez(path, **arrays)
    else:  # without its optimizer state, or without some of its weights
        prefix = "optimizer/" if how == "no_optimizer" else "weights/enc"
        kept = {k: v for k, v in np.load(path).items() if not k.startswith(prefix)}
        np.savez(path, **kept)


class StoppedAfterSavesError(Exception):
    pass


def run_until_saved(monkeypatch: pytest.MonkeyPatch, job: TrainJob, saves: int) -> None:
    """Train until `saves` checkpoints are written, then stop as a killed job would."""
    from n2v_repro.training import loop

    written = []

    def save_then_maybe_stop(*args: object) -> None:
        save_checkpoint(*args)
        written.append(1)
        if len(written) == saves:
            raise StoppedAfterSavesError

    monkeypatch.setattr(loop, "save_checkpoint", save_then_maybe_stop)
    with pytest.raises(StoppedAfterSavesError):
        train(job)
    monkeypatch.undo()


CORRUPTIONS = ["truncated", "random_bytes", "no_optimizer", "no_weights", "float16", "int64", "nan"]


@pytest.mark.parametrize(
    ("framework", "how", "damaged"),
    [
        *[pytest.param("torch", how, 1, id=f"torch-{how}") for how in CORRUPTIONS],
        pytest.param("torch", "truncated", 2, id="torch-both-damaged"),
        pytest.param("jittor", "random_bytes", 1, id="jittor-random_bytes", marks=JITTOR_MARKS),
        pytest.param("jittor", "no_optimizer", 2, id="jittor-both-damaged", marks=JITTOR_MARKS),
    ],
)
def test_damaged_checkpoint_is_moved_aside_and_the_run_still_matches(
    tmp_path: Path,
    uninterrupted: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    framework: str,
    how: str,
    damaged: int,
) -> None:
    """The newest checkpoint (or both kept ones) damaged: the rerun falls back to the previous
    checkpoint (or to epoch 1), keeps the damaged files aside, and ends as if never stopped."""
    skip_without_jittor(framework)
    reference = uninterrupted(framework)
    job = make_job(tmp_path, framework, **RESUME_CFG)
    run_until_saved(monkeypatch, job, saves=3)
    previous = previous_checkpoint(job.checkpoint)
    for path in [job.checkpoint, previous][:damaged]:
        corrupt(path, how)

    with caplog.at_level("INFO"):
        train(job)

    for path in [job.checkpoint, previous][:damaged]:
        assert path.with_name(path.name + ".bad-1").exists()  # kept for inspection
        assert f"checkpoint {path} is unusable" in caplog.text
    expected = "resuming from" if damaged == 1 else "starting from epoch 1"
    assert expected in caplog.text
    summary = json.loads((job.out_dir / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == (2 if damaged == 1 else 0)
    for name in ("last.npz", "best.npz"):
        assert_same_weights(load_weights(job.out_dir / name), load_weights(reference / name))
    assert not job.checkpoint.exists() and not previous.exists()


# --- jittor -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.jittor
@pytest.mark.parametrize("arch", ["rednet10", "rednet20", "rednet30"])
def test_rednet_trains_the_same_in_both_frameworks(tmp_path: Path, arch: str) -> None:
    """The training loop, a few Adam steps from the same initial weights on the same batches:
    per-epoch training and validation losses agree within the parity tolerance (1e-4)."""
    init = tmp_path / "init.npz"
    save_npz(init, make_init_weights(arch, 7))
    histories = {}
    for framework in ("torch", "jittor"):
        # make_job keeps the init.npz already there: both frameworks start from it.
        job = make_job(tmp_path, framework, arch=arch, epochs=2, steps_per_epoch=2)
        assert job.init_weights == init
        train(job)
        histories[framework] = read_history(job.out_dir / "history.csv")
        assert read_model_card(job.out_dir / "model.json").arch == arch
    for key in ("train_loss", "valid_loss"):
        torch_losses = [float(row[key]) for row in histories["torch"]]
        jittor_losses = [float(row[key]) for row in histories["jittor"]]
        assert len(torch_losses) == 2
        np.testing.assert_allclose(jittor_losses, torch_losses, rtol=1e-4, err_msg=key)
    # The steps did train: the second epoch's losses differ from the first's.
    assert torch_losses[0] != torch_losses[1]


@pytest.mark.slow
@pytest.mark.jittor
def test_the_exact_batch_norm_is_one_switch_away_and_labelled(tmp_path: Path) -> None:
    """`jittor` trains with jittor.nn.BatchNorm, `jittor-exactbn` with the project's; each
    run says which, from the same initial weights on the same batches."""
    arch = "n2v_unet32"
    save_npz(tmp_path / "init.npz", make_init_weights(arch, 7))
    out = {}
    for framework in ("jittor", "jittor-exactbn"):
        job = make_job(tmp_path, framework, arch=arch, epochs=1, steps_per_epoch=2)
        train(job)
        summary = json.loads((job.out_dir / "train_summary.json").read_text())
        assert summary["framework"] == framework
        assert read_model_card(job.out_dir / "model.json").framework == framework
        out[framework] = (summary["batch_norm"], load_weights(job.out_dir / "last.npz"))
    assert out["jittor"][0] == "stock" and out["jittor-exactbn"][0] == "exact"
    stock, exact = out["jittor"][1], out["jittor-exactbn"][1]
    # The same model trained two ways: close, but not one computation.
    assert stock.keys() == exact.keys()
    assert any(not np.array_equal(stock[k], exact[k]) for k in stock)
    for name in stock:
        np.testing.assert_allclose(stock[name], exact[name], rtol=1e-2, atol=1e-3, err_msg=name)
