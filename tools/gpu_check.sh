#!/usr/bin/env bash
# The GPU check in one device call (docs/gpu.md, "How to run the GPU check"):
#   run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=590)
# Installs the carried wheels, shows what the machine offers Jittor, then runs
# tools/gpu_smoke.py for torch and for Jittor, and the CUDA set-up tests. Everything printed is
# also in $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 JITTOR_HOME=/tmp/n2v_jittor_home
SITE=/tmp/n2v_site
SECONDS=0

echo "== machine"
nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,memory.total --format=csv,noheader
nvcc --version | tail -2
python3 --version
echo "== CUDA libraries Jittor needs, as the torch environment holds them"
python3 - <<'PY'
import glob, os, sys
for entry in sys.path:
    for lib in sorted(glob.glob(os.path.join(entry, "nvidia", "*", "lib", "lib*.so*"))):
        if any(k in lib for k in ("cublas", "curand", "cudnn.so", "cudart")):
            print(lib)
    for header in sorted(glob.glob(os.path.join(entry, "nvidia", "*", "include", "c*.h"))):
        if os.path.basename(header) in ("cublas.h", "curand.h", "cudnn.h", "cuda_runtime.h"):
            print(header)
PY
ls -l /usr/local/cuda/lib64/libcudart.so* /usr/local/cuda/include/cublas.h 2>&1 | head

echo "== wheels ($SECONDS s)"
python3 tools/gpu_wheels.py install --wheels .whl --target "$SITE" --snakemake || exit 1
# shellcheck disable=SC1091
. "$SITE/env.sh"
COMMON="$N2V_SITE_COMMON:$PWD/src"
JITTOR="$N2V_SITE_JITTOR:$COMMON"

echo "== GPU pool and monitor ($SECONDS s)"
PYTHONPATH="$COMMON" python3 -c "
import pynvml
from n2v_repro.backends.gpu_select import gpu_pool, nvml_device_for_cuda
print('pool', gpu_pool())
pynvml.nvmlInit(); print('cuda:0 -> NVML index', nvml_device_for_cuda(pynvml, 0)[1])"

echo "== torch ($SECONDS s)"
PYTHONPATH="$COMMON" timeout 180 python3 tools/gpu_smoke.py torch
echo "torch exit $?"

echo "== jittor ($SECONDS s)"
PYTHONPATH="$JITTOR" timeout 360 python3 tools/gpu_smoke.py jittor
echo "jittor exit $?"

echo "== CUDA set-up tests ($SECONDS s)"
PYTHONPATH="$JITTOR" timeout 60 python3 -m pytest -q -p no:cacheprovider \
    tests/test_jittor_env.py tests/test_gpu_select.py
echo "== done in $SECONDS s"
