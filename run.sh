#!/usr/bin/env bash
# Set up the environment in .venv/ (first run, or when requirements.txt changed), run the
# pipeline, then write results/report.html. Extra arguments go to snakemake, e.g.
#   bash run.sh --configfile config/test.yaml     # the small test configuration
#   bash run.sh --cores 8                         # override the default profile's cores
#   bash run.sh --setup-only                      # only build .venv/
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "run.sh: needs Python 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/snakemake ] || [ requirements.txt -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements.txt -e .
    touch .venv/.installed
fi
if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi

# Jittor keeps its compiled kernels and oneDNN links here (src/n2v_repro/backends/jittor_env.py).
export JITTOR_HOME="${JITTOR_HOME:-$PWD/.cache/jittor}"
.venv/bin/snakemake --profile profiles/default "$@"
.venv/bin/snakemake --profile profiles/default "$@" --report results/report.html
echo "run.sh: report written to results/report.html"
