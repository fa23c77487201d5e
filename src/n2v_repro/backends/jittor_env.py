"""Prepare the process environment before the first `import jittor`.

Jittor reads its settings from environment variables at import time, so everything here must
run first (docs/migration.md, Environment; docs/gpu.md). Facts below were read from Jittor
1.3.11's source (jittor/compiler.py, jittor/compile_extern.py, jittor_utils/install_cuda.py)
and are guarded by tests/test_jittor_env.py:

- `JITTOR_HOME` decides where Jittor keeps its cache (compiled kernels, oneDNN); the project
  keeps it in `<repo>/.cache/jittor` unless the user set it.
- CPU: on a machine with `nvcc` but no CUDA driver, Jittor's import fails unless `nvcc_path` is
  empty, which puts it in CPU mode. Jittor would download oneDNN from its own server at first
  import; the same oneDNN 2.2 comes from PyPI (onednn-cpu-gomp / onednn-devel-cpu-gomp
  2021.2.0) into the environment prefix, and linking it where Jittor looks skips the download.
- CUDA, every download switched off (urlretrieve without a timeout would hang an offline
  machine): nvcc from env `nvcc_path`, else PATH, else a CUDA 12.2 toolkit download, and a
  `<JITTOR_HOME>/.cache/jittor/jtcuda` folder makes Jittor prefer (and complete) that download;
  cutt, cutlass (and nccl where `mpicc` exists) download at import unless `use_cutt=0`,
  `use_cutlass=0`, `use_mpi=0`/`use_nccl=0`; oneDNN unless `use_mkl=0` (CPU ops only).
- CUDA libraries: Jittor takes the toolkit folder from nvcc's own folder (symlinks resolved,
  but not a wrapper script such as /usr/local/bin/nvcc -> /usr/local/cuda-13.0/bin/nvcc), loads
  `<toolkit>/lib64/libcudart.so` and needs `cublas.h` + `libcublas.so` and `curand.h` +
  `libcurand.so` (unversioned names) in the toolkit or system folders; cuDNN also needs the
  cuDNN 8 file names (libcudnn_ops_infer.so...), which cuDNN 9 lacks, so the import fails
  unless `conv_opt=1` (which also skips cufft and cusparse). When the headers and libraries
  only exist in NVIDIA's pip wheels (torch's `nvidia/cu13`), a small shim toolkit folder under
  JITTOR_HOME gathers them under the names Jittor looks for.
- CUDA 13 removed `cudaDeviceProp::computeMode` and `::clockRate`, which Jittor's
  `extern/cuda/inc/helper_cuda.h` reads: every CUDA source of Jittor fails to compile under
  nvcc 13 (and g++ with CUDA 13 headers). `patch_helper_cuda` rewrites those reads through
  `cudaDeviceGetAttribute`; it is idempotent and applied only for CUDA >= 13.
- Jittor records JITTOR_HOME in the user's `~/.cache/jittor/config.json` and, at import,
  rewrites that file in place whenever the variable differs from the record: a second Jittor
  process starting meanwhile (another checkout's run, or two jobs of a first run) reads it
  truncated and dies with a JSONDecodeError. `record_jittor_home` writes the record whole and
  holds a lock until Jittor has read it, so Jittor finds its own value and writes nothing.
- Jittor sizes its compile pool from the machine's memory alone (one process per 3 GB, up to
  16): 7 processes in a 4-CPU SLURM job on a large node. `compile_workers()` caps it at the
  CPUs and memory this process was given.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from n2v_repro.config import REPO_ROOT
from n2v_repro.errors import UserError
from n2v_repro.framework_site import onednn_dirs
from n2v_repro.io.atomic import atomic_open

DEFAULT_JITTOR_HOME = REPO_ROOT / ".cache" / "jittor"
ONEDNN_DIR_NAME = "dnnl_lnx_2.2.0_cpu_gomp"
# Jittor's own sizing of its compile pool: one process per 3 GiB of memory, at most 16.
COMPILE_GIB_PER_WORKER = 3
MAX_COMPILE_WORKERS = 16

# Environment switches that keep a CUDA import of Jittor 1.3.11 off the network.
OFFLINE_CUDA_FLAGS = {
    "use_cutt": "0",  # cutt: zip from codeload.github.com, then compiled
    "use_cutlass": "0",  # cutlass: zip from cg.cs.tsinghua.edu.cn
    "use_mkl": "0",  # oneDNN: only Jittor's CPU ops use it
    "use_mpi": "0",  # with mpicc on PATH Jittor builds MPI ops, and nccl (a download) on CUDA
    "use_nccl": "0",
}
# Libraries Jittor links on CUDA (compile_extern.setup_cuda_extern), header beside each.
CUDA_LIBRARIES = {"cublas": "cublas.h", "curand": "curand.h"}
# Also linked unless conv_opt=1; Jittor's cuDNN code needs the cuDNN 8 part libraries.
CUDNN_LIBRARIES = {"cudnn": "cudnn.h", "cufft": "cufft.h", "cusparse": "cusparse.h"}
CUDNN8_PARTS = ("cudnn_ops_infer", "cudnn_ops_train", "cudnn_cnn_infer", "cudnn_cnn_train")
# Jittor loads cublasLt by hand when it finds it; the shim offers it and tolerates its absence.
OPTIONAL_LIBRARIES = ("cublasLt",)
NVCC_TIMEOUT_S = 60.0
HELPER_CUDA = Path("extern") / "cuda" / "inc" / "helper_cuda.h"
PATCH_MARKER = "n2v_repro: CUDA 13 patch v1"
_ARCH_DIR = "targets/x86_64-linux"
DEFAULT_NVCC = Path("/usr/local/cuda/bin/nvcc")


class JittorSetupError(UserError, RuntimeError):
    """Jittor cannot be prepared on this machine as requested."""


def cuda_driver_available() -> bool:
    """Tell whether the CUDA driver library can be loaded (nvcc alone is not enough)."""
    name = ctypes.util.find_library("cuda")
    for candidate in filter(None, [name, "libcuda.so.1", "libcuda.so"]):
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        return True
    return False


def link_onednn(jittor_home: Path, prefix: Path = Path(sys.prefix)) -> Path:
    """Point Jittor's oneDNN cache folder at the PyPI oneDNN in `prefix`; return that folder."""
    lib_dir, include_dir = onednn_dirs(prefix)
    if not (lib_dir / "libmkldnn.so").exists() or not (include_dir / "dnnl.hpp").exists():
        raise JittorSetupError(
            f"oneDNN not found under {prefix} (expected lib/libmkldnn.so and include/dnnl.hpp): "
            "install onednn-cpu-gomp==2021.2.0 and onednn-devel-cpu-gomp==2021.2.0 "
            "(requirements.txt / envs/jittor.yaml); without it Jittor would download oneDNN "
            "at import, or run ~85x slower with use_mkl=0"
        )
    target = jittor_home / ".cache" / "jittor" / "mkl" / ONEDNN_DIR_NAME
    target.mkdir(parents=True, exist_ok=True)
    for name, source in (("lib", lib_dir), ("include", include_dir)):
        link = target / name
        if link.is_symlink() and Path(os.readlink(link)) != source:
            link.unlink()
        if not link.exists():
            link.symlink_to(source, target_is_directory=True)
    return target


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number and number > 0 else None


def compile_workers(environ: dict[str, str] | None = None) -> int:
    """Compile processes for Jittor: Jittor's memory rule, within this job's CPUs and memory.

    Inside a SLURM job the allocation is SLURM_CPUS_PER_TASK and SLURM_MEM_PER_NODE (or
    SLURM_MEM_PER_CPU x CPUs, in MB); elsewhere the CPUs this process may run on and the
    machine's memory.
    """
    environ = os.environ if environ is None else environ
    cpus = _positive_int(environ.get("SLURM_CPUS_PER_TASK")) or len(os.sched_getaffinity(0))
    mem_mb = _positive_int(environ.get("SLURM_MEM_PER_NODE"))
    per_cpu_mb = _positive_int(environ.get("SLURM_MEM_PER_CPU"))
    if mem_mb is None and per_cpu_mb is not None:
        mem_mb = per_cpu_mb * cpus
    if mem_mb is None:
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    by_memory = max(1, mem_mb // (1024 * COMPILE_GIB_PER_WORKER))
    return max(1, min(MAX_COMPILE_WORKERS, cpus, by_memory))


def record_jittor_home(jittor_home: Path) -> None:
    """Record `jittor_home` for Jittor whole, then let jittor_utils read it under a lock."""
    record = Path.home() / ".cache" / "jittor" / "config.json"  # jittor_utils.home()'s
    home = os.path.abspath(jittor_home)  # what jittor_utils.home() compares
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        lock = open(record.with_name("config.json.n2v_repro.lock"), "w")  # noqa: SIM115
    except OSError:
        return  # an unwritable home: Jittor's own import reports it
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        if data.get("JITTOR_HOME") != home:
            with atomic_open(record) as handle:
                json.dump({**data, "JITTOR_HOME": home}, handle)
        # Its import reads the record: still under the lock. Without Jittor, `import jittor`
        # fails later with Jittor's own message.
        with contextlib.suppress(ImportError):
            import jittor_utils  # noqa: F401


def limit_compile_workers(workers: int) -> None:
    """Cap Jittor's two compile pools; the user's own `use_parallel_op_compiler` stands."""
    # Kernels are compiled by a C++ thread pool, sized from this variable at import.
    os.environ.setdefault("use_parallel_op_compiler", str(workers))
    try:
        import jittor_utils
    except ImportError:
        return  # `import jittor` will fail with Jittor's own message
    # Jittor's core is compiled by a process pool that jittor_utils.run_cmds creates on first
    # use, sized from get_total_mem() (its only caller) at 3 GiB per process: report the memory
    # that gives `workers` processes. `import jittor` reuses this module.
    budget = workers * COMPILE_GIB_PER_WORKER * 2**30
    jittor_utils.get_total_mem = lambda: budget


# --- CUDA: nvcc and its toolkit -------------------------------------------------------------


@dataclass(frozen=True)
class CudaToolkit:
    """The real nvcc binary (wrappers resolved), its toolkit folder and its release."""

    nvcc: Path
    root: Path
    version: tuple[int, int]


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_nvcc() -> Path:
    """Nvcc as Jittor would find it: env `nvcc_path`, CUDA_HOME, PATH, /usr/local/cuda."""
    configured = os.environ.get("nvcc_path", "")  # noqa: SIM112 - Jittor's name
    if configured:
        if not _is_executable(Path(configured)):
            raise JittorSetupError(f"nvcc_path={configured!r} is not an executable file")
        return Path(configured)
    candidates = [Path(home) / "bin" / "nvcc" for home in _env_paths("CUDA_HOME", "CUDA_PATH")]
    found = shutil.which("nvcc")
    if found:
        candidates.append(Path(found))
    candidates.append(DEFAULT_NVCC)
    for candidate in candidates:
        if _is_executable(candidate):
            return candidate
    raise JittorSetupError(
        "no nvcc found (env nvcc_path, CUDA_HOME, PATH, /usr/local/cuda/bin): without one "
        "Jittor downloads a CUDA 12.2 toolkit at import; install the CUDA toolkit or set "
        "nvcc_path"
    )


def _env_paths(*names: str) -> list[str]:
    return [os.environ[name] for name in names if os.environ.get(name)]


def _run_nvcc(nvcc: Path, *args: str) -> str:
    try:
        result = subprocess.run(
            [str(nvcc), *args], capture_output=True, text=True, timeout=NVCC_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise JittorSetupError(f"cannot run {nvcc} {' '.join(args)}: {error}") from error
    return result.stdout + result.stderr


def inspect_nvcc(nvcc: Path) -> CudaToolkit:
    """Ask `nvcc` for its release and for the folder it really runs from (`_HERE_`)."""
    version_text = _run_nvcc(nvcc, "--version")
    match = re.search(r"release (\d+)\.(\d+)", version_text)
    if not match:
        raise JittorSetupError(f"{nvcc} --version printed no 'release X.Y': {version_text!r}")
    # --dryrun only prints the steps: the source file need not exist.
    dry = _run_nvcc(nvcc, "--dryrun", "-c", "/nonexistent/n2v_probe.cu")
    here = re.search(r"^#\$ _HERE_=(.+)$", dry, flags=re.MULTILINE)
    real = Path(here.group(1).strip()) / "nvcc" if here else Path(os.path.realpath(nvcc))
    if not _is_executable(real):
        raise JittorSetupError(f"{nvcc} reports its folder as {real.parent}, but no nvcc is there")
    return CudaToolkit(real, real.parent.parent, (int(match.group(1)), int(match.group(2))))


def jittor_search_dirs(nvcc: Path) -> tuple[list[Path], list[Path]]:
    """(header folders, library folders) Jittor 1.3.11 searches with `nvcc_path=nvcc`.

    Mirrors compiler.check_cuda and compile_extern.setup_cuda_lib; the first library folder
    after nvcc's own is `cuda_lib`, where libcudart.so must be.
    """
    full = Path(os.path.abspath(nvcc))
    while full.is_symlink():
        full = Path(os.path.realpath(full))
    bin_dir = full.parent
    include = Path(os.path.abspath(bin_dir / ".." / "include"))
    lib = Path(os.path.abspath(bin_dir / ".." / "lib64"))
    if str(nvcc) == "/usr/bin/nvcc":  # Jittor's case for a distribution-packaged toolkit
        lib = Path("/usr/lib/x86_64-linux-gnu")
    headers = [
        include,
        Path(os.path.abspath(include / ".." / _ARCH_DIR / "include")),
        Path("/usr/include"),
    ]
    libraries = [
        bin_dir,
        lib,
        Path(os.path.abspath(lib / ".." / _ARCH_DIR / "lib")),
        Path("/usr/lib/x86_64-linux-gnu"),
        Path("/usr/lib"),
    ]
    return headers, libraries


def wheel_cuda_dirs(paths: list[str] | None = None) -> tuple[list[Path], list[Path]]:
    """(include, lib) folders of NVIDIA's pip wheels on `paths` (default sys.path).

    CUDA 13 wheels share `nvidia/cu13/{include,lib}`; older ones use `nvidia/<name>/...`.
    """
    includes: list[Path] = []
    libs: list[Path] = []
    for entry in sys.path if paths is None else paths:
        base = Path(entry or ".") / "nvidia"
        if not base.is_dir():
            continue
        for package in sorted(base.iterdir()):
            if (package / "include").is_dir():
                includes.append(package / "include")
            if (package / "lib").is_dir():
                libs.append(package / "lib")
    return includes, libs


def find_header(name: str, folders: list[Path]) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def find_library(name: str, folders: list[Path], versioned: bool = False) -> Path | None:
    """`lib<name>.so` in the first folder holding it; with `versioned`, also `lib<name>.so.N`."""
    for folder in folders:
        if (folder / f"lib{name}.so").exists():
            return folder / f"lib{name}.so"
    if versioned:
        for folder in folders:
            # The shortest versioned name is the soname (libcublas.so.13, not .so.13.0.2).
            found = sorted(folder.glob(f"lib{name}.so.*"), key=lambda p: (len(p.name), p.name))
            if found:
                return found[0]
    return None


# --- CUDA: helper_cuda.h under CUDA 13 ------------------------------------------------------

_PATCH_HELPER = f"""// {PATCH_MARKER}: CUDA 13 removed cudaDeviceProp::computeMode and ::clockRate;
// the same values come from cudaDeviceGetAttribute, present since CUDA 5.
inline int n2v_device_attribute(cudaDeviceAttr attribute, int device) {{
  int value = 0;
  cudaDeviceGetAttribute(&value, attribute, device);
  return value;
}}
"""
# (old text, new text, expected occurrences in Jittor 1.3.11's helper_cuda.h)
_PATCH_EDITS = (
    ("#ifdef __CUDA_RUNTIME_H__\n", "#ifdef __CUDA_RUNTIME_H__\n" + _PATCH_HELPER, 1),
    (
        "deviceProp.computeMode == cudaComputeModeProhibited",
        "n2v_device_attribute(cudaDevAttrComputeMode, devID) == cudaComputeModeProhibited",
        1,
    ),
    (
        "deviceProp.computeMode != cudaComputeModeProhibited",
        "n2v_device_attribute(cudaDevAttrComputeMode, current_device) != cudaComputeModeProhibited",
        2,
    ),
    ("deviceProp.clockRate", "n2v_device_attribute(cudaDevAttrClockRate, current_device)", 1),
)


def patch_helper_cuda(header: Path) -> bool:
    """Make Jittor's helper_cuda.h compile under CUDA 13; True when the file was changed.

    Idempotent (a marker line records the patch). Raises JittorSetupError when the header is
    not the one this patch was written for, or cannot be written.
    """
    header = Path(header)
    try:
        text = header.read_text()
    except OSError as error:
        raise JittorSetupError(f"cannot read Jittor's {header}: {error}") from error
    if PATCH_MARKER in text:
        return False
    for old, _new, count in _PATCH_EDITS:
        if text.count(old) != count:
            raise JittorSetupError(
                f"{header}: expected {count} occurrence(s) of {old.strip()!r}, found "
                f"{text.count(old)}; this Jittor is not 1.3.11, check the CUDA 13 patch"
            )
    for old, new, _count in _PATCH_EDITS:
        text = text.replace(old, new)
    try:
        with atomic_open(header) as handle:
            handle.write(text)
    except OSError as error:
        raise JittorSetupError(
            f"cannot patch {header} for CUDA 13 ({error}): install Jittor where this user can "
            "write (pip --target), see docs/gpu.md"
        ) from error
    return True


def jittor_package_dir() -> Path:
    """Find the installed jittor package folder without importing it."""
    spec = importlib.util.find_spec("jittor")
    if spec is None or not spec.submodule_search_locations:
        raise JittorSetupError("jittor is not installed in this Python (see docs/gpu.md)")
    return Path(next(iter(spec.submodule_search_locations)))


# --- CUDA: libraries and the shim toolkit ---------------------------------------------------


@dataclass(frozen=True)
class CudaLibraries:
    """What Jittor will link: each name -> (header or None, library file)."""

    headers: dict[str, Path]
    libraries: dict[str, Path]


def _wanted(use_cudnn: bool) -> tuple[dict[str, str], tuple[str, ...]]:
    headers = dict(CUDA_LIBRARIES)
    parts: tuple[str, ...] = ()
    if use_cudnn:
        headers.update(CUDNN_LIBRARIES)
        parts = CUDNN8_PARTS
    return headers, parts


def locate_cuda_libraries(
    header_dirs: list[Path], library_dirs: list[Path], use_cudnn: bool, versioned: bool
) -> tuple[CudaLibraries, list[str]]:
    """Find every header and library Jittor needs; return them and a list of what is missing."""
    wanted_headers, parts = _wanted(use_cudnn)
    headers: dict[str, Path] = {}
    libraries: dict[str, Path] = {}
    missing: list[str] = []
    for name, header_name in wanted_headers.items():
        header = find_header(header_name, header_dirs)
        if header is None:
            missing.append(header_name)
        else:
            headers[name] = header
    for name in (*wanted_headers, *parts, *OPTIONAL_LIBRARIES):
        library = find_library(name, library_dirs, versioned)
        if library is not None:
            libraries[name] = library
        elif name not in OPTIONAL_LIBRARIES:
            missing.append(f"lib{name}.so" + ("[.N]" if versioned else ""))
    return CudaLibraries(headers, libraries), missing


def cudnn8_available(header_dirs: list[Path], library_dirs: list[Path]) -> bool:
    """Tell whether Jittor's cuDNN path (cuDNN 8 names, plus cufft and cusparse) would load."""
    _found, missing = locate_cuda_libraries(header_dirs, library_dirs, True, versioned=False)
    return not missing


def build_toolkit_shim(
    toolkit: CudaToolkit, extra_include_dirs: list[Path], libraries: dict[str, Path], home: Path
) -> Path:
    """Build a folder laid out as Jittor expects a toolkit; return its bin/nvcc.

    bin/nvcc is a script (Jittor would resolve a symlink back to the real folder); include
    links every entry of the real toolkit's include folder, then those of the wheels' folders
    that the toolkit lacks; lib64 links libcudart.so and each library under its unversioned
    name. The folder is named by a hash of its content and built by an atomic rename, so
    concurrent jobs share one.
    """
    cudart = find_library("cudart", [toolkit.root / "lib64", toolkit.root / "lib"], True)
    if cudart is None:
        raise JittorSetupError(f"libcudart.so not found under {toolkit.root}/lib64")
    links = {"lib64/libcudart.so": cudart}
    links.update({f"lib64/lib{name}.so": path for name, path in libraries.items()})
    for folder in [toolkit.root / "include", *extra_include_dirs]:
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            links.setdefault(f"include/{entry.name}", entry)
    script = f'#!/bin/sh\nexec "{toolkit.nvcc}" "$@"\n'
    key = hashlib.sha256(
        (script + "".join(f"{k}={v}\n" for k, v in sorted(links.items()))).encode()
    ).hexdigest()[:16]
    final = home / "cuda_toolkit_shim" / key
    if (final / "bin" / "nvcc").is_file():
        return final / "bin" / "nvcc"
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        (staging / "bin").mkdir()
        (staging / "include").mkdir()
        (staging / "lib64").mkdir()
        for relative, source in links.items():
            (staging / relative).symlink_to(source)
        nvcc = staging / "bin" / "nvcc"
        nvcc.write_text(script)
        nvcc.chmod(0o755)
        try:
            staging.rename(final)
        except OSError:
            if not (final / "bin" / "nvcc").is_file():  # not a concurrent twin: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / "bin" / "nvcc"


def preload_libraries(paths: list[Path]) -> None:
    """Dlopen each library globally: later `libcublas.so.13` needs resolve by soname.

    The dynamic loader only searches LD_LIBRARY_PATH as read at process start, so libraries
    from pip wheels must be loaded before Jittor's compiled ops ask for them.
    """
    for path in paths:
        try:
            ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL)
        except OSError as error:
            raise JittorSetupError(f"cannot load {path}: {error}") from error


@dataclass(frozen=True)
class CudaSetup:
    """What `prepare_cuda` decided; `environ` is what it sets."""

    toolkit: CudaToolkit
    nvcc_for_jittor: Path
    use_cudnn: bool
    shim: bool
    patched_header: bool
    environ: dict[str, str]


def prepare_cuda(jittor_home: Path, jittor_dir: Path | None = None) -> CudaSetup:
    """Set the environment for an offline CUDA import of Jittor; raise naming what is missing."""
    jtcuda = jittor_home / ".cache" / "jittor" / "jtcuda"
    if jtcuda.exists():
        raise JittorSetupError(
            f"{jtcuda} exists: Jittor would use (and, if incomplete, download) its own CUDA "
            "12.2 toolkit instead of the system nvcc; remove that folder"
        )
    toolkit = inspect_nvcc(find_nvcc())
    header_dirs, library_dirs = jittor_search_dirs(toolkit.nvcc)
    conv_opt = os.environ.get("conv_opt")  # noqa: SIM112 - Jittor's name
    if conv_opt is None:
        use_cudnn = cudnn8_available(header_dirs, library_dirs)
    elif conv_opt.strip() in ("0", "1"):
        use_cudnn = conv_opt.strip() == "0"
    else:
        raise JittorSetupError(f"env conv_opt must be 0 or 1, got {conv_opt!r}")

    found, missing = locate_cuda_libraries(header_dirs, library_dirs, use_cudnn, False)
    cudart_ok = (library_dirs[1] / "libcudart.so").exists()
    nvcc_for_jittor = toolkit.nvcc
    shim = False
    if missing or not cudart_ok:
        wheel_includes, wheel_libs = wheel_cuda_dirs()
        found, missing = locate_cuda_libraries(
            header_dirs + wheel_includes, library_dirs + wheel_libs, use_cudnn, versioned=True
        )
        if missing:
            raise JittorSetupError(
                f"Jittor on CUDA needs {', '.join(missing)}, not found in "
                f"{', '.join(map(str, header_dirs + library_dirs))} nor in NVIDIA pip wheels "
                f"({', '.join(map(str, wheel_includes + wheel_libs)) or 'none on sys.path'})"
                + ("" if use_cudnn else "; conv_opt=1 already skips cuDNN, cufft, cusparse")
            )
        extra_includes = sorted({path.parent for path in found.headers.values()})
        nvcc_for_jittor = build_toolkit_shim(toolkit, extra_includes, found.libraries, jittor_home)
        shim = True
    # cublasLt before cublas: a library's own needs resolve against what is already loaded.
    names = sorted(found.libraries, key=lambda name: name not in OPTIONAL_LIBRARIES)
    preload_libraries([found.libraries[name] for name in names])

    patched = False
    if toolkit.version >= (13, 0):
        patched = patch_helper_cuda((jittor_dir or jittor_package_dir()) / HELPER_CUDA)
    environ = {"nvcc_path": str(nvcc_for_jittor), "conv_opt": "0" if use_cudnn else "1"}
    environ.update(OFFLINE_CUDA_FLAGS)
    os.environ.update(environ)
    return CudaSetup(toolkit, nvcc_for_jittor, use_cudnn, shim, patched, environ)


def prepare_jittor_env(device: str = "auto") -> str:
    """Set Jittor's environment variables for `device` and return the device to use.

    Must be called before `import jittor`. `device` is auto, cpu or cuda; auto resolves to
    cuda only when the CUDA driver loads. For cuda, every import-time download is switched off
    and a missing piece raises JittorSetupError naming it (see the module docstring).
    """
    if "jittor" in sys.modules:
        raise JittorSetupError("prepare_jittor_env() must run before jittor is imported")
    if device not in ("auto", "cpu", "cuda"):
        raise JittorSetupError(f"device must be auto, cpu or cuda, not {device!r}")
    has_cuda = cuda_driver_available()
    if device == "cuda" and not has_cuda:
        raise JittorSetupError("device 'cuda' requested but no CUDA driver (libcuda) loads here")
    resolved = "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"
    jittor_home = Path(os.environ.setdefault("JITTOR_HOME", str(DEFAULT_JITTOR_HOME)))
    jittor_home.mkdir(parents=True, exist_ok=True)
    if resolved == "cpu":
        os.environ["nvcc_path"] = ""  # noqa: SIM112 - Jittor reads this lower-case name
        link_onednn(jittor_home)
    else:
        prepare_cuda(jittor_home)
    record_jittor_home(jittor_home)
    limit_compile_workers(compile_workers())
    return resolved
