"""Offline CUDA preparation of Jittor (backends/jittor_env.py).

This machine has nvcc 13 but no driver and no cuBLAS, so a CUDA import of Jittor cannot run
here. The tests check two things instead: the preparation itself, on a toolkit laid out as on
the GPU machine (nvcc wrapper in /usr/local/bin, cuBLAS and cuRAND only in NVIDIA's pip
wheels); and the helper_cuda.h patch, applied to the installed Jittor's header and compiled
with the real nvcc 13. And on the CPU: two Jittor processes never meet a half-written
record of JITTOR_HOME in the user's home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from n2v_repro.backends import jittor_env
from n2v_repro.backends.jittor_env import (
    HELPER_CUDA,
    OFFLINE_CUDA_FLAGS,
    PATCH_MARKER,
    JittorSetupError,
    build_toolkit_shim,
    inspect_nvcc,
    jittor_search_dirs,
    patch_helper_cuda,
    preload_libraries,
    prepare_cuda,
    prepare_jittor_env,
)

NVCC_VERSION = (
    "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88"
)


def jittor_dir() -> Path:
    try:
        return jittor_env.jittor_package_dir()
    except JittorSetupError:
        pytest.skip("jittor is not installed")


def real_nvcc_13() -> Path:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    toolkit = inspect_nvcc(Path(nvcc))
    if toolkit.version < (13, 0):
        pytest.skip(f"nvcc {toolkit.version} predates CUDA 13")
    return toolkit.nvcc


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def gpu_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The GPU machine's layout: a CUDA 13 toolkit without cuBLAS, reached through a wrapper
    script on PATH; cuBLAS/cuRAND headers and versioned libraries in a pip `nvidia/cu13`."""
    root = tmp_path / "cuda-13.0"
    real = write_script(
        root / "bin" / "nvcc",
        f'case "$1" in --version) echo "{NVCC_VERSION}";; '
        f'--dryrun) echo "#\\$ _HERE_={root}/bin" >&2;; esac\n',
    )
    touch(root / "include" / "cuda_runtime.h")
    touch(root / "lib64" / "libcudart.so.13")
    (root / "lib64" / "libcudart.so").symlink_to("libcudart.so.13")
    wrapper = write_script(tmp_path / "usr_local_bin" / "nvcc", f'exec "{real}" "$@"\n')
    site = tmp_path / "site-packages"
    for header in ("cublas.h", "cublas_v2.h", "cublasLt.h", "curand.h", "curand_kernel.h"):
        touch(site / "nvidia" / "cu13" / "include" / header)
    for library in ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10"):
        touch(site / "nvidia" / "cu13" / "lib" / library)
    touch(site / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9")  # cuDNN 9: no cuDNN 8 names
    fake_jittor = tmp_path / "jittor"
    touch(fake_jittor / HELPER_CUDA, HELPER_SNIPPET)
    home = tmp_path / "jittor_home"
    home.mkdir()

    for name in ("nvcc_path", "conv_opt", "CUDA_HOME", "CUDA_PATH", *OFFLINE_CUDA_FLAGS):
        # set, then delete: monkeypatch then restores the variable even after the code under
        # test sets it (it records nothing for a variable that was absent).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("JITTOR_HOME", str(home))
    monkeypatch.setattr(jittor_env, "DEFAULT_NVCC", tmp_path / "absent" / "nvcc")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(jittor_env, "jittor_package_dir", lambda: fake_jittor)
    loaded: list[Path] = []
    monkeypatch.setattr(jittor_env, "preload_libraries", loaded.extend)

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return {"root": root, "real": real, "home": home, "site": site, "jittor": fake_jittor,
            "loaded": loaded}  # fmt: skip


# The lines of Jittor 1.3.11's helper_cuda.h that CUDA 13 breaks, in their order.
HELPER_SNIPPET = """#ifdef __CUDA_RUNTIME_H__
inline int gpuDeviceInit(int devID) {
  if (deviceProp.computeMode == cudaComputeModeProhibited) { return -1; }
}
inline int gpuGetMaxGflopsDeviceId() {
    if (deviceProp.computeMode != cudaComputeModeProhibited) {
      uint64_t compute_perf = sm_per_multiproc * deviceProp.clockRate;
    }
}
inline int findIntegratedGPU() {
    if (deviceProp.integrated && (deviceProp.computeMode != cudaComputeModeProhibited)) {}
}
#endif
"""


# --- the preparation --------------------------------------------------------------------------


def test_prepared_for_cuda_switches_every_download_off(gpu_machine, monkeypatch) -> None:
    monkeypatch.setattr(jittor_env, "cuda_driver_available", lambda: True)
    monkeypatch.delitem(sys.modules, "jittor", raising=False)
    assert prepare_jittor_env("cuda") == "cuda"
    # Jittor 1.3.11's compile_extern.py downloads MKL, cutt, cutlass, NCCL and MPI unless
    # these are "0" (and CUB only for CUDA < 11).
    for flag in ("use_mkl", "use_cutt", "use_cutlass", "use_nccl", "use_mpi"):
        assert os.environ[flag] == "0", flag
    assert os.environ["conv_opt"] == "1"  # noqa: SIM112 - only cuDNN 9 there
    nvcc = Path(os.environ["nvcc_path"])  # noqa: SIM112
    assert nvcc.is_file() and os.access(nvcc, os.X_OK)
    assert nvcc.read_text().endswith(f'exec "{gpu_machine["real"]}" "$@"\n')
    assert PATCH_MARKER in (gpu_machine["jittor"] / HELPER_CUDA).read_text()
    assert not (gpu_machine["home"] / ".cache" / "jittor" / "jtcuda").exists()


def test_shim_gives_jittor_every_file_where_it_looks(gpu_machine) -> None:
    setup = prepare_cuda(gpu_machine["home"])
    assert setup.shim and not setup.use_cudnn and setup.patched_header
    assert setup.toolkit.nvcc == gpu_machine["real"] and setup.toolkit.version == (13, 0)
    headers, libraries = jittor_search_dirs(setup.nvcc_for_jittor)
    # What compile_extern.setup_cuda_lib looks up with conv_opt=1, under Jittor's names.
    assert (libraries[1] / "libcudart.so").resolve() == gpu_machine[
        "root"
    ] / "lib64/libcudart.so.13"
    assert (headers[0] / "cuda_runtime.h").exists()
    wheel = gpu_machine["site"] / "nvidia" / "cu13"
    for name, header, library in (
        ("cublas", "cublas.h", "libcublas.so.13"),
        ("curand", "curand.h", "libcurand.so.10"),
    ):
        assert (headers[0] / header).resolve() == wheel / "include" / header, name
        assert (libraries[1] / f"lib{name}.so").resolve() == wheel / "lib" / library
    assert (headers[0] / "cublas_v2.h").exists()  # the headers' siblings come along
    # cublasLt first: cublas needs it by soname when loaded.
    assert [path.name for path in gpu_machine["loaded"]] == [
        "libcublasLt.so.13",
        "libcublas.so.13",
        "libcurand.so.10",
    ]


def test_shim_is_reused_and_the_patch_not_repeated(gpu_machine) -> None:
    first = prepare_cuda(gpu_machine["home"])
    second = prepare_cuda(gpu_machine["home"])
    assert first.nvcc_for_jittor == second.nvcc_for_jittor
    assert first.patched_header and not second.patched_header
    assert len(list((gpu_machine["home"] / "cuda_toolkit_shim").iterdir())) == 1


def test_no_shim_when_the_toolkit_has_everything(gpu_machine) -> None:
    root = gpu_machine["root"]
    for name in ("cublas.h", "curand.h"):
        touch(root / "include" / name)
    for name in ("libcublas.so", "libcurand.so"):
        touch(root / "lib64" / name)
    setup = prepare_cuda(gpu_machine["home"])
    assert not setup.shim
    # the real nvcc, not the /usr/local/bin wrapper
    assert os.environ["nvcc_path"] == str(gpu_machine["real"])  # noqa: SIM112


def test_missing_cublas_is_named(gpu_machine) -> None:
    shutil.rmtree(gpu_machine["site"] / "nvidia" / "cu13")
    with pytest.raises(JittorSetupError, match=r"cublas\.h.*libcublas\.so"):
        prepare_cuda(gpu_machine["home"])


def test_cudnn_forced_on_without_cudnn_8_is_named(gpu_machine, monkeypatch) -> None:
    monkeypatch.setenv("conv_opt", "0")
    with pytest.raises(JittorSetupError, match=r"cudnn\.h.*libcudnn_ops_infer\.so"):
        prepare_cuda(gpu_machine["home"])


def test_jtcuda_folder_is_refused(gpu_machine) -> None:
    jtcuda = gpu_machine["home"] / ".cache" / "jittor" / "jtcuda"
    jtcuda.mkdir(parents=True)
    with pytest.raises(JittorSetupError, match=str(jtcuda)):
        prepare_cuda(gpu_machine["home"])


def test_no_nvcc_is_named_instead_of_a_download(gpu_machine, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JittorSetupError, match="no nvcc found"):
        prepare_cuda(gpu_machine["home"])
    monkeypatch.setenv("nvcc_path", str(gpu_machine["home"] / "nvcc"))
    with pytest.raises(JittorSetupError, match="is not an executable file"):
        prepare_cuda(gpu_machine["home"])


def test_build_toolkit_shim_is_content_addressed(gpu_machine) -> None:
    toolkit = inspect_nvcc(gpu_machine["real"])
    lib = gpu_machine["site"] / "nvidia" / "cu13" / "lib"
    one = build_toolkit_shim(toolkit, [], {"cublas": lib / "libcublas.so.13"}, gpu_machine["home"])
    same = build_toolkit_shim(toolkit, [], {"cublas": lib / "libcublas.so.13"}, gpu_machine["home"])
    other = build_toolkit_shim(
        toolkit, [], {"curand": lib / "libcurand.so.10"}, gpu_machine["home"]
    )
    assert one == same != other
    assert not [p for p in one.parents[1].iterdir() if p.name.startswith(".")]  # no staging left


def test_preload_names_the_library_that_fails(tmp_path: Path) -> None:
    with pytest.raises(JittorSetupError, match="libnothing.so.1"):
        preload_libraries([tmp_path / "libnothing.so.1"])
    cudart = Path("/usr/local/cuda/lib64/libcudart.so")
    if cudart.exists():
        preload_libraries([cudart])


def test_real_nvcc_here_lacks_cublas_and_says_so(tmp_path, monkeypatch) -> None:
    """This machine's real CUDA 13 toolkit has no cuBLAS: the preparation fails at once."""
    nvcc = real_nvcc_13()
    monkeypatch.setenv("nvcc_path", str(nvcc))
    for name in ("conv_opt", *OFFLINE_CUDA_FLAGS):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(jittor_env, "wheel_cuda_dirs", lambda: ([], []))
    try:
        import nvidia  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("NVIDIA wheels installed here")
    headers, libraries = jittor_search_dirs(nvcc)
    if jittor_env.find_header("cublas.h", headers):
        pytest.skip("this toolkit has cuBLAS")
    with pytest.raises(JittorSetupError, match="cublas.h"):
        prepare_cuda(tmp_path, jittor_dir=tmp_path)


# --- the helper_cuda.h patch -------------------------------------------------------------------


def test_patch_fits_the_installed_helper_cuda(tmp_path: Path) -> None:
    header = tmp_path / "helper_cuda.h"
    shutil.copy(jittor_dir() / HELPER_CUDA, header)
    if PATCH_MARKER in header.read_text():
        pytest.skip("this Jittor's helper_cuda.h is already patched")
    assert patch_helper_cuda(header)
    patched = header.read_text()
    assert "deviceProp.computeMode" not in patched and "deviceProp.clockRate" not in patched


def test_patch_is_idempotent_and_rejects_another_header(tmp_path: Path) -> None:
    header = touch(tmp_path / "helper_cuda.h", HELPER_SNIPPET)
    assert patch_helper_cuda(header) is True
    patched = header.read_text()
    assert "deviceProp.computeMode" not in patched and "deviceProp.clockRate" not in patched
    assert "n2v_device_attribute(cudaDevAttrComputeMode, devID)" in patched
    assert patch_helper_cuda(header) is False
    assert header.read_text() == patched
    other = touch(tmp_path / "other.h", "#ifdef __CUDA_RUNTIME_H__\n#endif\n")
    with pytest.raises(JittorSetupError, match="not 1.3.11"):
        patch_helper_cuda(other)


def nvcc_compile(nvcc: Path, include: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    source = touch(
        tmp_path / "probe.cu",
        '#include <cuda_runtime.h>\n#include "helper_cuda.h"\n'
        "__global__ void k(float* x) { x[threadIdx.x] += 1.f; }\n"
        "int main() { return gpuGetMaxGflopsDeviceId() + findIntegratedGPU(); }\n",
    )
    jittor = jittor_dir()
    command = [str(nvcc), "-std=c++14", "-arch=sm_90", "-DIS_CUDA", "-DHAS_CUDA",
               f"-I{include}", f"-I{jittor / 'src'}", f"-I{jittor / HELPER_CUDA.parent}",
               "-c", str(source), "-o", str(tmp_path / "probe.o")]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_patched_helper_cuda_compiles_with_nvcc_13(tmp_path: Path) -> None:
    nvcc = real_nvcc_13()
    include = tmp_path / "inc"
    header = include / "helper_cuda.h"
    include.mkdir()
    shutil.copy(jittor_dir() / HELPER_CUDA, header)
    if PATCH_MARKER not in header.read_text():
        broken = nvcc_compile(nvcc, include, tmp_path)
        assert broken.returncode != 0
        assert 'has no member "computeMode"' in broken.stdout + broken.stderr
        assert patch_helper_cuda(header)
    fixed = nvcc_compile(nvcc, include, tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert (tmp_path / "probe.o").stat().st_size > 0


def test_jittor_home_is_recorded_whole_and_not_rewritten_by_jittor(tmp_path: Path) -> None:
    jittor_dir()
    record = tmp_path / "user" / ".cache" / "jittor" / "config.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"JITTOR_HOME": str(tmp_path / "other checkout"), "kept": 1}))
    environment = {**os.environ, "HOME": str(tmp_path / "user")}
    environment["JITTOR_HOME"] = str(tmp_path / "jittor")
    script = (
        "from n2v_repro.backends.jittor_env import prepare_jittor_env; prepare_jittor_env('cpu')"
    )

    def prepare() -> int:
        before = record.stat().st_ino
        result = subprocess.run(
            [sys.executable, "-c", script], env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(record.read_text()) == {
            "JITTOR_HOME": str(tmp_path / "jittor"),
            "kept": 1,
        }
        return before

    # Replaced by a whole new file: Jittor's own rewrite truncates it in place, where a
    # second process starting at that moment reads it half-written (a JSONDecodeError).
    first = prepare()
    assert record.stat().st_ino != first
    # Recorded already: nobody writes it again.
    second = prepare()
    assert record.stat().st_ino == second
