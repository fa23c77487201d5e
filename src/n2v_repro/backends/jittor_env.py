"""Prepare the process environment before the first `import jittor`.

Jittor reads its settings from environment variables at import time, so everything here must
run first (protocol.md section 4):

- `JITTOR_HOME` decides where Jittor keeps its cache (compiled kernels, oneDNN); the project
  keeps it in `<repo>/.cache/jittor` unless the user set it.
- On a machine with `nvcc` but no CUDA driver, Jittor's import fails unless `nvcc_path` is
  empty, which puts it in CPU mode.
- On CPU Jittor would download oneDNN from its own server at first import. The same oneDNN
  2.2 comes from PyPI (onednn-cpu-gomp / onednn-devel-cpu-gomp 2021.2.0) into the
  environment prefix; linking it where Jittor looks makes Jittor skip the download.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

from n2v_repro.config import REPO_ROOT
from n2v_repro.errors import UserError

DEFAULT_JITTOR_HOME = REPO_ROOT / ".cache" / "jittor"
ONEDNN_DIR_NAME = "dnnl_lnx_2.2.0_cpu_gomp"


class JittorSetupError(UserError, RuntimeError):
    """Jittor cannot be prepared on this machine as requested."""


def cuda_driver_available() -> bool:
    """True when the CUDA driver library can be loaded (nvcc alone is not enough)."""
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
    lib_dir, include_dir = prefix / "lib", prefix / "include"
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


def prepare_jittor_env(device: str = "auto") -> str:
    """Set Jittor's environment variables for `device` and return the device to use.

    Must be called before `import jittor`. `device` is auto, cpu or cuda; auto resolves to
    cuda only when the CUDA driver loads.
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
    return resolved
