"""The command-line entry points, each run with `python -m n2v_repro.cli.<name>`.

`denoise` (your own images), `run_plan` (what `bash run.sh` will run), `bench` (throughput).
"""
