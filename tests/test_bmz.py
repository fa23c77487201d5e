"""bioimage.io export (src/n2v_repro/bmz): the package's own network file, every arch's ONNX
weights, one real export validated with bioimage.io's validator, the README's use of a
package, and a failed validation. The pipeline test (tests/test_report_browser.py) checks
every package of the test configuration's run, the Jittor-trained ones against Jittor's own
output.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from n2v_repro.bmz.arch_source import arch_source
from n2v_repro.bmz.export import ABSOLUTE_TOLERANCE, readme_use_lines, write_onnx
from n2v_repro.io.formats import save_valid_tiles, save_weights, write_train_stats
from n2v_repro.models.initialisation import make_init_weights
from n2v_repro.models.spec import ARCH_STRIDE, ARCHS
from n2v_repro.models.torch_nets import build_model
from n2v_repro.report.references import METHOD_PAPER_PSNR, method_paper_psnr

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCH = "n2v_unet32"
STATS = {"mean": 110.25, "std": 61.5}

# Run in a fresh interpreter in which n2v_repro cannot be imported: arch.py must stand alone.
ALONE = """
import importlib.util, sys
import numpy as np, torch
sys.modules["n2v_repro"] = None  # any `import n2v_repro...` now raises ImportError
spec = importlib.util.spec_from_file_location("arch", sys.argv[1])
arch_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(arch_module)
data = np.load(sys.argv[2])
outputs = {}
for arch in sys.argv[4:]:
    model = arch_module.build_model(arch=arch)
    weights = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(arch + "/")}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        outputs[arch] = model.eval()(torch.from_numpy(data["input/" + arch])).numpy()
np.savez(sys.argv[3], **outputs)
"""


def _perturbed_weights(arch: str, seed: int) -> dict[str, np.ndarray]:
    """Initial weights with batch-norm statistics away from 0/1, so eval mode matters."""
    weights = make_init_weights(arch, seed, "glorot_uniform")
    rng = np.random.default_rng(seed)
    for name, value in weights.items():
        if name.endswith("running_mean"):
            weights[name] = (0.2 * rng.standard_normal(value.shape)).astype(np.float32)
        elif name.endswith("running_var"):
            weights[name] = (0.5 + rng.random(value.shape)).astype(np.float32)
    return weights


def test_arch_file_alone_computes_what_torch_nets_computes(tmp_path: Path) -> None:
    """Every arch: the generated arch.py, imported without the project, gives our output."""
    from n2v_repro.models.torch_nets import build_model

    source = arch_source()
    assert not re.search(r"^\s*(from|import)\s+n2v_repro", source, re.MULTILINE)
    arch_file = tmp_path / "arch.py"
    arch_file.write_text(source)
    arrays, expected = {}, {}
    rng = np.random.default_rng(0)
    for arch in ARCHS:
        weights = _perturbed_weights(arch, 3)
        size = max(2 * ARCH_STRIDE[arch], 16)
        image = rng.standard_normal((1, 1, size, size)).astype(np.float32)
        arrays |= {f"{arch}/{k}": v for k, v in weights.items()} | {f"input/{arch}": image}
        model = build_model(arch)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        with torch.no_grad():
            expected[arch] = model.eval()(torch.from_numpy(image)).numpy()
    np.savez(tmp_path / "inputs.npz", **arrays)
    result = subprocess.run(
        [sys.executable, "-c", ALONE, str(arch_file), str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npz"), *ARCHS],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "outputs.npz") as got:
        for arch in ARCHS:
            np.testing.assert_array_equal(got[arch], expected[arch], err_msg=arch)


def _run_folder(tmp_path: Path, seed: int = 5) -> dict[str, Path]:
    """A trained-looking run of ARCH: weights, statistics, held-out tiles, an evaluation."""
    rng = np.random.default_rng(seed)
    paths = {name: tmp_path / name for name in ("last.npz", "stats.json", "valid.npz")}
    save_weights(paths["last.npz"], _perturbed_weights(ARCH, seed))
    write_train_stats(paths["stats.json"], {**STATS, "n_images": 6})
    clean = rng.integers(0, 256, (3, 32, 32)).astype(np.uint8)
    noisy = (clean + 25.0 * rng.standard_normal(clean.shape)).astype(np.float32)
    tiles = {"noisy": noisy, "clean": clean, "ids": np.array(["7", "7", "9"])}
    save_valid_tiles(paths["valid.npz"], tiles)
    summary = {
        "recipe": "paper", "framework": "torch", "arch": ARCH, "sigma": 25, "seed": 1,
        "validation": {"scheme": "heldout_train"}, "tta": False, "train_stats": STATS,
        "inference": {},
        "test_sets": {"bsd68": {"last": {"n": 68, "psnr_mean": 27.1234, "psnr_std": 2.0,
                                         "ssim_mean": 0.77, "ssim_std": 0.05}}},
    }  # fmt: skip
    paths["summary.json"] = tmp_path / "summary.json"
    paths["summary.json"].write_text(json.dumps(summary))
    return paths


def _export(tmp_path: Path, paths: dict[str, Path], tensors: Path) -> tuple[Path, Path, dict]:
    from n2v_repro.bmz.export import RunInfo, export_package

    info = RunInfo(
        recipe="paper", framework="torch", sigma=25, seed=1, weights="last", arch=ARCH,
        train_set="train400", validation="heldout_train",
        authors=({"name": "Test Author", "affiliation": "Nowhere"},),
    )  # fmt: skip
    package, validation = tmp_path / f"{info.stem}.zip", tmp_path / "last_validation.json"
    result = export_package(
        info=info, weights_npz=paths["last.npz"], tensors_npz=tensors,
        stats_json=paths["stats.json"], eval_summary=paths["summary.json"],
        package=package, validation_json=validation, threads=1,
    )  # fmt: skip
    return package, validation, result


def _tensors(tmp_path: Path, paths: dict[str, Path]) -> Path:
    from n2v_repro.bmz.test_tensors import write_test_tensors

    tensors = tmp_path / "test_tensors.npz"
    write_test_tensors(
        tensors, framework="torch", arch=ARCH, validation="heldout_train",
        weight_files={"last": paths["last.npz"]}, stats_json=paths["stats.json"],
        valid_npz=paths["valid.npz"], train_npy=tmp_path / "unused.npy",
        index_csv=tmp_path / "unused.csv", size=32, threads=1,
    )  # fmt: skip
    return tensors


def _can_go_offline() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    return subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_exports_onnx_that_runs_at_other_sizes(arch: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    model = build_model(arch).eval()
    weights = _perturbed_weights(arch, 1)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    side = max(ARCH_STRIDE[arch], 16)
    example = np.random.default_rng(0).standard_normal((1, 1, side, side), dtype=np.float32)
    assert write_onnx(model, example, tmp_path / "weights.onnx") is None  # None: exported
    # Free batch and spatial sizes, as the package's rdf.yaml promises.
    other = np.random.default_rng(1).standard_normal((2, 1, 2 * side, 3 * side), dtype=np.float32)
    session = onnxruntime.InferenceSession(
        str(tmp_path / "weights.onnx"), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, {"input": other})
    with torch.no_grad():
        expected = model(torch.from_numpy(other)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_exported_package_passes_bioimageio_test_and_runs_as_its_readme_says(
    tmp_path: Path,
) -> None:
    paths = _run_folder(tmp_path)
    package, validation, result = _export(tmp_path, paths, _tensors(tmp_path, paths))
    assert result["status"] == "passed", result["failures"]
    assert json.loads(validation.read_text())["status"] == "passed"
    assert set(result["weight_formats"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    for numbers in result["reproduction"].values():
        assert numbers["max_abs_diff"] < 1e-2
    # The test image is the held-out tile with the most texture, never a BSD68 image.
    assert result["test_input"]["image_id"] in {"7", "9"}

    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
    assert {"rdf.yaml", "arch.py", "weights.pt", "weights_torchscript.pt", "weights.onnx",
            "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names  # fmt: skip
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    assert rdf["license"] == "MIT"
    assert {c.get("doi") for c in rdf["cite"]} >= {"10.1109/CVPR.2019.00223"}
    assert rdf["authors"] == [{"name": "Test Author", "affiliation": "Nowhere"}]
    (pre,) = [p for p in rdf["inputs"][0]["preprocessing"] if p["id"].startswith("fixed_zero")]
    assert pre["kwargs"] == {"mean": STATS["mean"], "std": STATS["std"]}
    (post,) = [p for p in rdf["outputs"][0]["postprocessing"] if p["id"] == "scale_linear"]
    assert post["kwargs"] == {"gain": STATS["std"], "offset": STATS["mean"]}
    arch_entry = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch_entry["callable"] == "build_model" and arch_entry["kwargs"] == {"arch": ARCH}
    for text in ("`paper`", "torch", "sigma 25", "| training seed | 1 |", "27.12", "Train400",
                 "Noise2Void", "10.1109/CVPR.2019.00223", "# Validation"):  # fmt: skip
        assert text in readme, text

    # The README's lines, on a whole image of BSD68's size (321 x 481, off the stride: core's
    # predict alone refuses it), give the pipeline's own prediction: within the package's
    # tolerance of 0.01 grey levels, which moves PSNR by far less than 0.01 dB.
    from n2v_repro.backends.registry import make_backend
    from n2v_repro.evaluation.predict import predict_image
    from n2v_repro.io.formats import load_weights

    image = np.random.default_rng(11).uniform(0, 255, (321, 481)).astype(np.float32)
    backend = make_backend("torch", ARCH, "cpu", 1)
    backend.load_weights(load_weights(paths["last.npz"]))
    ours = predict_image(backend, image, STATS["mean"], STATS["std"])
    # The project README shows the same lines for a pipeline package.
    project = (REPO_ROOT / "README.md").read_text()
    for snippet in (readme_use_lines(readme, package), readme_use_lines(project, package)):
        namespace: dict = {"image": image}
        exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - the README's code
        np.testing.assert_allclose(namespace["denoised"], ours, atol=ABSOLUTE_TOLERANCE)

    # `bioimageio test` itself, the command line users run, with an empty cache and, where
    # this machine lets a process drop its network (unshare), offline.
    command = [str(Path(sys.executable).parent / "bioimageio"), "test", str(package)]
    if _can_go_offline():
        command = ["unshare", "-n", *command]
    env = {
        "BIOIMAGEIO_CACHE_PATH": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    cli = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert cli.returncode == 0, (cli.stdout + cli.stderr)[-3000:]


def test_validation_failure_fails_the_export_with_the_validators_message(
    tmp_path: Path,
) -> None:
    from n2v_repro.bmz.export import BmzValidationError

    paths = _run_folder(tmp_path)
    tensors = _tensors(tmp_path, paths)
    with np.load(tensors) as data:
        arrays = dict(data)
    arrays["output_last"] = arrays["output_last"] + np.float32(0.5)  # half a grey level off
    np.savez(tensors, **arrays)
    with pytest.raises(BmzValidationError) as failure:
        _export(tmp_path, paths, tensors)
    message = str(failure.value)
    assert "bioimageio test failed" in message and "Reproduce test outputs" in message
    assert "\n" not in message
    assert not list(tmp_path.glob("*.zip")), "a package that failed validation was kept"
    summary = json.loads((tmp_path / "last_validation.json").read_text())
    # bioimage.io says "valid-format" when the format is valid but a test failed.
    assert summary["status"] != "passed" and summary["failures"]


@pytest.mark.parametrize(
    ("method", "paper"),
    [("n2v", "Noise2Void"), ("n2v2", "N2V2"), ("n2n", "Noise2Noise"), ("n2c", "supervised")],
)
def test_readme_and_citations_name_the_method(method: str, paper: str) -> None:
    from n2v_repro.bmz.export import RunInfo, citations_of, readme_text

    info = RunInfo(
        recipe="r", framework="jittor", sigma=25, seed=3, weights="best", arch=ARCH,
        train_set="bsd400", validation="heldout_train", authors=({"name": "A"},), method=method,
    )  # fmt: skip
    rows = [{"test_set": "bsd68", "n": 68, "psnr_mean": 25.5, "psnr_std": 1.0,
             "ssim_mean": 0.7, "ssim_std": 0.1}]  # fmt: skip
    readme = readme_text(
        info, mean=1.0, std=2.0, n_train_images=396, rows=rows, origin={"image_id": "42"},
        weight_formats=["pytorch_state_dict"], onnx_note="no onnxruntime",
    )  # fmt: skip
    first = readme.split("\n\n")[1]
    assert paper in first and "sigma 25" in readme and "| method | `" + method in readme
    assert "25.50" in readme and "No ONNX weights: no onnxruntime" in readme
    # The method's own number from the paper's table, as in the report's methods table.
    own = method_paper_psnr(method, "bsd68", 25)
    assert (f"reports {own:.2f} dB" if own else "no BSD68 number for N2V2") in readme
    others = [v for v in METHOD_PAPER_PSNR.values() if v != own]
    assert not [v for v in others if f"{v:.2f} dB" in readme]
    cited = [entry["text"] for entry in citations_of(method)]
    assert any("Noise2Void" in text for text in cited) and any("Segmented" in t for t in cited)
    assert len(cited) == len(set(cited))
