"""`python -m n2v_repro.references.worker JOB.json`: one reference job, in its environment.

The job (written by `launch`) names the action (train, predict), the reference, its inputs,
outputs and settings. A mistake a user can fix ends with one line in job["error_file"] and
exit status 2; everything else with a traceback, which `launch` leaves in the job's log.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from n2v_repro.errors import UserError
from n2v_repro.io.atomic import save_npz, write_json
from n2v_repro.references.registry import reference


def run(job: dict) -> None:
    adapter = importlib.import_module(reference(job["reference"]).module)
    outputs = job["outputs"]
    if job["action"] == "train":
        write_json(outputs["result"], adapter.train(job))
    elif job["action"] == "predict":
        predictions, inference = adapter.predict(job)
        arrays = {
            f"{weights}/{image_id}": image
            for weights, by_id in predictions.items()
            for image_id, image in by_id.items()
        }
        save_npz(outputs["predictions"], arrays)
        write_json(outputs["inference"], inference)
    else:
        raise ValueError(f"unknown action {job['action']!r}; expected train or predict")


def main(argv: list[str]) -> int:
    with open(argv[0]) as handle:
        job = json.load(handle)
    try:
        run(job)
    except UserError as error:
        Path(job["error_file"]).write_text(str(error).splitlines()[0] + "\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
