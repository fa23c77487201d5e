"""The denoise command: a BSD68 PNG made by the pipeline, a folder of a user's images (8- and
16-bit PNG/TIFF, colour JPEG, one tiled), both frameworks, and every error case."""

from __future__ import annotations

import csv
import errno
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n2v_repro.backends.registry import make_backend
from n2v_repro.cli import denoise as cli
from n2v_repro.data.noise import noisy_set
from n2v_repro.evaluation import denoise
from n2v_repro.evaluation.denoise import DenoiseError, DenoiseOptions, run_denoise
from n2v_repro.evaluation.metrics import psnr
from n2v_repro.evaluation.predict import predict_image, to_uint8
from n2v_repro.io.atomic import save_npz
from n2v_repro.models.card import ModelCard, write_model_card
from n2v_repro.models.initialisation import make_init_weights

pytest.importorskip("torch")

ARCH = "rednet10"
MEAN, STD = 110.0, 62.0
SEED = 123
FRAMEWORKS = ["torch", pytest.param("jittor", marks=[pytest.mark.jittor, pytest.mark.slow])]


def model_dir(folder: Path, arch: str = ARCH, card_arch: str | None = ARCH) -> Path:
    """A training output folder: best.npz and (unless card_arch is None) model.json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / "best.npz", make_init_weights(arch, 4))
    if card_arch is not None:
        write_model_card(folder / "model.json", ModelCard(card_arch, MEAN, STD, 64, "torch", SEED))
    return folder / "best.npz"


def torch_backend(arch: str = ARCH):
    backend = make_backend("torch", arch, device="cpu", threads=2)
    backend.load_weights(make_init_weights(arch, 4))
    return backend


def run_cli(*args: object) -> list[denoise.Result]:
    return cli.main([str(a) for a in args])


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


# --- a BSD68 image made by the pipeline ----------------------------------------------------


@pytest.fixture(scope="module")
def bsd68_png(tmp_path_factory: pytest.TempPathFactory, shared_bsds500: Path) -> Path:
    """resources/gray/bsd68/3096.png as the pipeline's to_gray makes it (pixel-checked)."""
    from n2v_repro.data.gray import convert_images

    png = tmp_path_factory.mktemp("resources") / "gray" / "bsd68" / "3096.png"
    convert_images(
        jpgs=[shared_bsds500 / "data" / "images" / "val" / "3096.jpg"],
        train_pngs=[],
        bsd68_pngs=[png],
        pixel_hashes_file=shared_bsds500 / "bsd68_pixels.sha256",
    )
    return png


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bsd68_png_gets_the_pipelines_noise_and_prediction(tmp_path, bsd68_png, framework):
    weights = model_dir(tmp_path / "model")
    out = tmp_path / "out"
    (result,) = run_cli(
        "--weights", weights, "--input", bsd68_png, "--output", out, "--add-noise", 25,
        "--framework", framework, "--device", "cpu", "--threads", 2,
    )  # fmt: skip
    clean = read(bsd68_png)
    # The default seed is the training seed (model.json): the pipeline's noisy image.
    noisy = noisy_set([bsd68_png], 25, SEED)["3096"]
    np.testing.assert_array_equal(read(out / "3096_noisy.png"), to_uint8(noisy))
    # 481x321 fits one tile: predicted whole, exactly as the pipeline's evaluation.
    expected = predict_image(torch_backend(), noisy, MEAN, STD)
    got = read(out / "3096.png").astype(int)
    if framework == "torch":
        np.testing.assert_array_equal(got, to_uint8(expected))
    else:
        assert np.abs(got - to_uint8(expected)).max() <= 1  # rounding of 1e-7 differences
    assert result.metrics is not None
    assert result.metrics["psnr"] == pytest.approx(psnr(clean, expected), abs=1e-3)
    assert result.metrics["noisy_psnr"] == pytest.approx(psnr(clean, noisy), abs=1e-9)
    with open(out / "metrics.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["image"] == "3096.png" and float(row["psnr"]) == pytest.approx(
        result.metrics["psnr"], abs=1e-5
    )


# --- a folder of a user's images -----------------------------------------------------------


def user_folder(folder: Path) -> dict[str, np.ndarray]:
    """Images of every supported kind, with their clean versions in folder/clean."""
    rng = np.random.default_rng(5)
    (folder / "clean").mkdir(parents=True)
    y, x = np.mgrid[0:70, 0:90]
    smooth = 60 + 120 * (np.sin(x / 9.0) * np.cos(y / 13.0) + 1) / 2  # 8-bit grey levels
    images = {
        "small8.png": smooth[:40, :36].astype(np.uint8),
        "large8.png": smooth.astype(np.uint8),  # larger than --tile 32: tiled
        "deep16.png": (smooth[:33, :50] * 257).astype(np.uint16),
        "deep16.tif": (smooth[:30, :41] * 257).astype(np.uint16),
        "plain8.tif": smooth[:20, :24].astype(np.uint8),
    }
    for name, clean in images.items():
        Image.fromarray(clean).save(folder / "clean" / name)
        scale = 257 if clean.dtype == np.uint16 else 1
        noisy = clean + rng.normal(0, 20 * scale, clean.shape)
        Image.fromarray(np.clip(noisy, 0, 255 * scale).astype(clean.dtype)).save(folder / name)
    colour = np.stack([smooth[:26, :30]] * 3, axis=-1).astype(np.uint8)
    Image.fromarray(colour).save(folder / "colour.jpg", quality=95)
    Image.fromarray(colour[..., 0]).save(folder / "clean" / "colour.png")  # found by stem
    (folder / "notes.txt").write_text("not an image: skipped")
    return images


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_folder_of_user_images(tmp_path, framework):
    images = user_folder(tmp_path / "mine")
    out = tmp_path / "out"
    results = run_cli(
        "--weights", model_dir(tmp_path / "model"), "--input", tmp_path / "mine",
        "--output", out, "--framework", framework, "--device", "cpu", "--tile", 32,
        "--overlap", 32, "--clean", tmp_path / "mine" / "clean",
    )  # fmt: skip
    assert [r.image for r in results] == sorted([*images, "colour.jpg"])
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([*images, "colour.png", "metrics.csv"])
    backend = torch_backend()
    for name, clean in images.items():
        got = read(out / name)
        assert got.dtype == clean.dtype and got.shape == clean.shape, name
        # Reference: the noisy input in 8-bit grey levels through the torch network.
        scale = 257.0 if clean.dtype == np.uint16 else 1.0
        noisy = read(tmp_path / "mine" / name).astype(np.float32) / np.float32(scale)
        pred = denoise.predict_tiled(backend, noisy, MEAN, STD, 32, 32)
        expected = np.clip(np.rint(pred.astype(np.float64) * scale), 0, 255 * scale)
        assert np.abs(got.astype(float) - expected).max() <= (1 if scale == 1 else 2), name
    assert read(out / "colour.png").dtype == np.uint8
    with open(out / "metrics.csv", newline="") as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {*images, "colour.jpg"}
    assert all(float(row["noisy_psnr"]) > 15 for row in rows.values())


def test_tiles_agree_with_the_whole_image():
    """With more context than the receptive field, tiling changes nothing but rounding."""
    rng = np.random.default_rng(0)
    noisy = rng.uniform(0, 255, (70, 90)).astype(np.float32)
    backend = torch_backend()
    whole = predict_image(backend, noisy, MEAN, STD)
    tiled = denoise.predict_tiled(backend, noisy, MEAN, STD, tile=32, overlap=32)
    assert np.abs(tiled - whole).max() < 1e-3
    # Without context the tile borders show: the check above can fail.
    seams = denoise.predict_tiled(backend, noisy, MEAN, STD, tile=32, overlap=0)
    assert np.abs(seams - whole).max() > 1e-2


# --- errors --------------------------------------------------------------------------------


def good_input(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24), 100, np.uint8)).save(folder / "a.png")
    return folder


def options(tmp_path: Path, **overrides: object) -> DenoiseOptions:
    values: dict[str, object] = {
        "weights": tmp_path / "model" / "best.npz",
        "input": tmp_path / "in",
        "output": tmp_path / "out",
        "framework": "torch",
        "device": "cpu",
        **overrides,
    }
    return DenoiseOptions(**values)  # type: ignore[arg-type]


def assert_fails(tmp_path: Path, match: str, **overrides: object) -> None:
    with pytest.raises(DenoiseError, match=match):
        run_denoise(options(tmp_path, **overrides))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".denoise-" in p.name]


@pytest.mark.parametrize("content", ["missing", "png", "text", "npy"])
def test_wrong_weights_file(tmp_path, content):
    good_input(tmp_path / "in")
    if content == "missing":
        assert_fails(tmp_path, r"weights file .*best\.npz not found")
        return
    weights = model_dir(tmp_path / "model")
    if content == "png":
        weights.write_bytes((tmp_path / "in" / "a.png").read_bytes())
    elif content == "text":
        weights.write_text("epoch,loss\n1,0.5\n")
    else:
        with open(weights, "wb") as handle:
            np.save(handle, np.zeros(3))
    assert_fails(tmp_path, r"best\.npz is not a weights file")


@pytest.mark.parametrize(
    ("weights_arch", "option", "match"),
    [
        ("n2n_unet", {}, r"arch mismatch: .*does not fit rednet10 .*they are n2n_unet weights"),
        (ARCH, {"arch": "rednet20"}, r"--arch rednet20, but .*model\.json says .*rednet10"),
    ],
)
def test_arch_mismatch(tmp_path, weights_arch, option, match):
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model", arch=weights_arch, card_arch=ARCH)
    assert_fails(tmp_path, match, **option)


def test_weights_without_model_json(tmp_path):
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model", card_arch=None)
    assert_fails(tmp_path, r"no model\.json beside .*--arch and --stats")
    stats = tmp_path / "train_stats.json"
    stats.write_text('{"mean": 110.0, "std": 62.0}')
    assert_fails(tmp_path, r"arch mismatch: .*does not fit rednet20 \(--arch\)",
                 arch="rednet20", stats=stats)  # fmt: skip
    (result,) = run_denoise(options(tmp_path, arch=ARCH, stats=stats), report=lambda _: None)
    assert (tmp_path / "out" / "a.png").exists() and result.metrics is None


@pytest.mark.parametrize(
    "kind", ["garbage", "several", "truncated", "float", "empty_folder", "missing"]
)
def test_unreadable_images(tmp_path, kind):
    good = good_input(tmp_path / "in")
    model_dir(tmp_path / "model")
    if kind == "garbage":
        (good / "b.png").write_bytes(b"\x89PNG not really")
        match = r"cannot read image .*b\.png"
    elif kind == "several":  # every unusable image is named
        for name in ("b.png", "c.png"):
            (good / name).write_bytes(b"\x89PNG not really")
        match = r"2 of 3 images unusable: cannot read image .*b\.png.*; cannot read image .*c\.png"
    elif kind == "truncated":
        full = tmp_path / "full.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(full)
        (good / "b.png").write_bytes(full.read_bytes()[:400])
        match = r"cannot read image .*b\.png"
    elif kind == "float":
        Image.fromarray(np.zeros((8, 8), np.float32)).save(good / "b.tif")
        match = r"b\.tif: image mode F is not supported"
    elif kind == "empty_folder":
        (good / "a.png").unlink()
        match = r"no .*images in folder"
    else:
        match = r"input .*nowhere not found"
    overrides = {"input": tmp_path / "nowhere"} if kind == "missing" else {}
    assert_fails(tmp_path, match, **overrides)


def test_clean_reference_errors(tmp_path):
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model")
    (tmp_path / "clean").mkdir()
    assert_fails(tmp_path, r"--clean .*clean has no image for a\.png", clean=tmp_path / "clean")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "clean" / "a.png")
    assert_fails(tmp_path, r"--clean .*a\.png: 10x10, but .*a\.png is 24x20",
                 clean=tmp_path / "clean")  # fmt: skip


@pytest.mark.parametrize(
    ("output", "match"),
    [("in", "would overwrite an input"), ("afile/sub", r"--output .*afile/sub: .*afile is a file")],
)
def test_output_that_cannot_be(tmp_path, output, match):
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model")
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(DenoiseError, match=match):
        run_denoise(options(tmp_path, output=tmp_path / output))


def test_a_failure_midway_leaves_no_output(tmp_path):
    """The second image fails inside the network: the first one's output is not kept, an
    existing output folder keeps only what it had, and no staging folder is left."""
    folder = good_input(tmp_path / "in")
    Image.fromarray(np.full((20, 24), 50, np.uint8)).save(folder / "b.png")
    model_dir(tmp_path / "model")
    backend = torch_backend()
    calls = []

    def predict(inputs):
        calls.append(inputs.shape)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return type(backend).predict(backend, inputs)

    backend.predict = predict
    for output in (tmp_path / "new" / "deeper" / "out", tmp_path / "existing"):
        if output.name == "existing":
            output.mkdir()
            (output / "keep.txt").write_text("mine")
        calls.clear()
        with pytest.raises(RuntimeError, match="out of memory"):
            run_denoise(options(tmp_path, output=output), backend=backend, report=lambda _: None)
        assert len(calls) == 2
        if output.name == "existing":
            assert [p.name for p in output.iterdir()] == ["keep.txt"]
        else:
            assert not (tmp_path / "new").exists()  # parents made for it are removed too
        assert not list(tmp_path.glob("**/.*.denoise-*"))


@pytest.mark.parametrize("value", [np.nan, np.inf, "float16"])
def test_unusable_weights_are_refused(tmp_path, value):
    good_input(tmp_path / "in")
    weights_path = model_dir(tmp_path / "model")
    weights = make_init_weights(ARCH, 4)
    first = next(iter(weights))
    if value == "float16":
        weights[first] = weights[first].astype(np.float16)
        problem = rf"not float32 in 1 of .* \({first} float16\)"
    else:
        weights[first].flat[0] = value
        problem = rf"NaN or infinite values in 1 of .* \({first}\)"
    save_npz(weights_path, weights)
    assert_fails(tmp_path, rf"best\.npz: {problem}")


def test_non_finite_output_is_refused(tmp_path):
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model")
    backend = torch_backend()
    backend.predict = lambda inputs: np.full(inputs.shape, np.nan, np.float32)
    with pytest.raises(DenoiseError, match=r"a\.png: the network's output holds NaN"):
        run_denoise(options(tmp_path), backend=backend, report=lambda _: None)
    assert not (tmp_path / "out").exists()


def other_file_system_folder(tmp_path: Path) -> Path:
    """A new folder on another file system than tmp_path (/dev/shm), or skip."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    folder = Path(tempfile.mkdtemp(dir=shm))
    return folder


@pytest.mark.parametrize("existing", [True, False])
def test_output_folder_on_another_file_system(tmp_path, existing):
    """--output a symlink to (or a folder under a symlink to) another file system."""
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model")
    elsewhere = other_file_system_folder(tmp_path)
    try:
        (tmp_path / "link").symlink_to(elsewhere)
        output = tmp_path / "link" if existing else tmp_path / "link" / "new"
        run_denoise(options(tmp_path, output=output), report=lambda _: None)
        assert [p.name for p in output.iterdir()] == ["a.png"]
        assert not list(elsewhere.glob("**/.*.denoise-*"))
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_unwritable_output_location(tmp_path, monkeypatch, code):
    """A read-only file system or no permission (injected: root ignores permissions)."""
    good_input(tmp_path / "in")
    model_dir(tmp_path / "model")

    def refuse(*_args: object, **_kwargs: object) -> str:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(denoise.tempfile, "mkdtemp", refuse)
    with pytest.raises(
        DenoiseError, match=rf"--output .*out: cannot write there \({os.strerror(code)}"
    ):
        run_denoise(options(tmp_path))


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    good_input(tmp_path / "in")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("--weights", tmp_path / "none.npz", "--input", tmp_path / "in",
                "--output", tmp_path / "out")  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights file") and "Traceback" not in err


def test_weights_from_the_training_loop(tmp_path):
    """model.json as training writes it is all the command needs beside the weights."""
    from test_train import make_job

    from n2v_repro.training.loop import train

    job = make_job(tmp_path / "run", "torch", arch=ARCH, epochs=1, steps_per_epoch=1)
    save_npz(job.init_weights, make_init_weights(ARCH, 7))  # make_job's is an n2n_unet's
    train(job)
    good_input(tmp_path / "in")
    (result,) = run_denoise(
        options(tmp_path, weights=job.out_dir / "best.npz", framework=None, add_noise=10),
        report=lambda _: None,
    )
    assert result.metrics is not None and result.metrics["noisy_psnr"] > 20
    assert read(tmp_path / "out" / "a.png").shape == (20, 24)
