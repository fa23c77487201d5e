#!/usr/bin/env bash
# Set up the environment in .venv/ (first run, or when requirements.txt changed), run the
# pipeline, then write results/report.html. Without a GPU the run is the CPU reproduction
# (config/cpu.yaml over config/config.yaml: the `cpu` recipe at sigma 25, both frameworks);
# with a GPU, or with --full, the full reproduction. It says which at the start, with the
# training time estimated from a few seconds of training steps on this machine
# (src/n2v_repro/cli/run_plan.py; docs/measured/cpu.md has a measured run). Extra arguments go
# to snakemake, e.g.
#   bash run.sh --full                            # the full reproduction, even on a CPU
#   bash run.sh --configfile my-mirror.yaml       # more settings over the chosen configuration
#   bash run.sh --configfile config/test.yaml     # the small test configuration
#   bash run.sh --cores 8                         # override the default profile's cores
#   bash run.sh --setup-only                      # only build .venv/
#   bash run.sh -n                                # a dry run: what would run, no report
# The report is built even when a job failed (the profile keeps going past failures, e.g. a
# failed parity gate); the exit status is then Snakemake's.
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
case "$version" in
    3.11 | 3.12) ;;
    *)
        echo "run.sh: needs Python 3.11 or 3.12 (found ${version:-none} at $python); set PYTHON=/path/to/python3.12" >&2
        exit 1
        ;;
esac
if [ ! -x .venv/bin/snakemake ] || [ requirements.txt -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    # A CUDA torch that already sees a GPU (a GPU machine's image) is kept: the venv sees the
    # interpreter's packages and gets everything but torch, never the CPU wheel over it.
    cuda_torch="$("$python" -c 'import torch; print(int(bool(torch.version.cuda) and torch.cuda.is_available()))' 2>/dev/null || echo 0)"
    if [ "$cuda_torch" = 1 ]; then
        echo "run.sh: keeping $("$python" -c 'import torch; print("torch", torch.__version__)') with CUDA (venv with --system-site-packages)"
        "$python" -m venv --system-site-packages .venv
        grep -v -i -E '^torch([^a-z0-9_.-]|$)' requirements.txt >.venv/requirements-without-torch.txt
        requirements=.venv/requirements-without-torch.txt
    else
        "$python" -m venv .venv
        requirements=requirements.txt
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$requirements" -e .
    touch .venv/.installed
fi
if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi

# Which configuration, what it trains and for how long; the Snakemake arguments come back
# NUL-separated (config/cpu.yaml added for a CPU run, --full taken out).
plan="$(mktemp)"
if ! .venv/bin/python -m n2v_repro.cli.run_plan -- "$@" >"$plan"; then
    rm -f "$plan"
    exit 2
fi
mapfile -d '' args <"$plan"
rm -f "$plan"

# Jittor keeps its compiled kernels and oneDNN links here (src/n2v_repro/backends/jittor_env.py).
export JITTOR_HOME="${JITTOR_HOME:-$PWD/.cache/jittor}"
status=0
.venv/bin/snakemake --profile profiles/default ${args[@]+"${args[@]}"} || status=$?
# A dry run (-n, -np, --dry-run) wrote nothing to report on.
for arg in ${args[@]+"${args[@]}"}; do
    if [[ "$arg" = --dry-run || "$arg" = --dryrun || "$arg" =~ ^-[A-Za-z]*n[A-Za-z]*$ ]]; then
        exit "$status"
    fi
done
if .venv/bin/snakemake --profile profiles/default ${args[@]+"${args[@]}"} --report results/report.html; then
    echo "run.sh: report written to results/report.html"
else
    echo "run.sh: the report could not be built (see above)" >&2
fi
if [ "$status" -ne 0 ]; then
    echo "run.sh: snakemake failed (exit $status); the report shows what completed" >&2
fi
exit "$status"
