#!/usr/bin/env bash
# The GPU check in one device call (docs/gpu.md, "How to run the GPU check"):
#   run(command="bash tools/gpu_check.sh", carry=[".whl", ".gpu_data"], timeout_s=600)
# Prints the machine and the CUDA libraries Jittor needs, installs the carried wheels, then
# runs `python -m n2v_repro.gpu_check` (parity on CUDA, throughput, the paper recipe timed)
# within what is left of ~9.5 minutes, and the CUDA set-up tests if time remains. Results:
# $OUT/gpu_check.json and $OUT/gpu_check.md; everything printed is also in $OUT/gpu_check.log,
# the workers' output in $OUT/gpu_check_workers.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 JITTOR_HOME=/tmp/n2v_jittor_home
SITE=/tmp/n2v_site
# Seconds from this script's start by which the check must be done (the call's limit is 600).
END_BY="${GPU_CHECK_END_BY:-575}"
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
PY

echo "== wheels ($SECONDS s)"
# Snakemake's wheels only when they were carried: the check itself does not need them.
with_snakemake=()
if compgen -G ".whl/snakemake-*.whl" >/dev/null; then with_snakemake=(--snakemake); fi
python3 tools/gpu_wheels.py install --wheels .whl --target "$SITE" "${with_snakemake[@]}" || exit 1
# shellcheck disable=SC1091
. "$SITE/env.sh"
export PYTHONPATH="$N2V_SITE_COMMON:$PWD/src"

echo "== GPU pool and monitor ($SECONDS s)"
python3 -c "
import pynvml
from n2v_repro.backends.gpu_select import gpu_pool, nvml_device_for_cuda
print('pool', gpu_pool())
pynvml.nvmlInit(); print('cuda:0 -> NVML index', nvml_device_for_cuda(pynvml, 0)[1])"

echo "== GPU check ($SECONDS s)"
python3 -m n2v_repro.gpu_check --out "$OUT" --data .gpu_data --work /tmp/n2v_gpu_check \
    --budget-s $((END_BY - 10 - SECONDS))
echo "gpu_check exit $?"

if [ $((END_BY - SECONDS)) -gt 45 ]; then
    echo "== CUDA set-up tests ($SECONDS s)"
    PYTHONPATH="$N2V_SITE_JITTOR:$PYTHONPATH" timeout $((END_BY - SECONDS)) python3 -m pytest -q \
        -p no:cacheprovider tests/test_jittor_env.py tests/test_gpu_select.py
fi
echo "== done in $SECONDS s"
