"""Choose the CPU recipe on training data only: train candidates, rank by held-out PSNR.

    python tools/cpu_tuning.py config/cpu-tuning.yaml --configfile my-mirror.yaml

The candidates file names a base recipe and, per candidate, the keys that differ from it
(nested, as in recipe_book). Every candidate is a pipeline run of a recipe: the tool writes
them into a config file as recipe_book entries and asks Snakemake for their training outputs
only (`results/<candidate>/<framework>/sigma<S>/seed<seed>/model/train_summary.json`). It
ranks them by the PSNR of the final weights on every held-out training tile (the recipe's
validation set: Train400 images that are not trained on, never a BSD68 image) and writes
`tuning.csv`, each candidate's `history.csv` and a `README.md` table to `--out`.

BSD68 is the test set and chooses nothing: before training, the tool reads Snakemake's plan
(a dry run) and refuses it, naming the file, if any job but the download would read a BSD68
file. The download fetches the whole BSDS500 once; no tuning job reads its BSD68 images.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from n2v_repro.config import load_config, merge_into, recipe_mapping
from n2v_repro.paths import MODEL_DIR, run_path

REPO = Path(__file__).resolve().parents[1]

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# The one job allowed to touch BSD68 files: it downloads every BSDS500 image once.
DOWNLOAD_RULE = "download_bsds500"
CANDIDATE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class TuningError(Exception):
    """A candidates file or a plan that the tool refuses; the message names why."""


def read_candidates(path: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """Return (base recipe, {candidate: keys that differ from it}) of a candidates file."""
    spec = yaml.safe_load(path.read_text()) or {}
    base, candidates = spec.get("base"), spec.get("candidates")
    if not isinstance(base, str) or not isinstance(candidates, dict) or not candidates:
        raise TuningError(f"{path}: expected 'base: <recipe>' and a 'candidates:' mapping")
    for name, keys in candidates.items():
        if not CANDIDATE_NAME.match(str(name)) or not isinstance(keys or {}, dict):
            raise TuningError(
                f"{path}: candidate {name!r}: expected a lower-case name and a mapping of keys"
            )
    return base, {str(name): dict(keys or {}) for name, keys in candidates.items()}


def candidate_config(
    config: Mapping[str, Any], base: str, candidates: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Return config content that defines each candidate as a full recipe_book entry."""
    if base not in config["recipe_book"]:
        raise TuningError(f"base recipe {base!r} is not in recipe_book")
    book = {}
    for name, keys in candidates.items():
        entry = merge_into(copy.deepcopy(dict(config["recipe_book"][base])), keys)
        book[name] = entry
    return {"recipes": list(candidates), "recipe_book": book}


def summary_targets(candidates: Sequence[str], framework: str, sigma: int, seed: int) -> list[str]:
    return [
        f"{run_path(MODEL_DIR, name, framework, sigma, seed)}/train_summary.json"
        for name in candidates
    ]


def _planned_inputs(dry_run: str) -> list[tuple[str, str]]:
    """(rule, input path) of every job in a `snakemake --dry-run` listing."""
    pairs, rule = [], ""
    for line in dry_run.splitlines():
        found = re.match(r"^(?:local)?rule (\w+):", line)
        if found:
            rule = found.group(1)
            continue
        stripped = line.strip()
        if rule and stripped.startswith("input:"):
            for path in stripped.removeprefix("input:").split(","):
                pairs.append((rule, path.strip()))
    return pairs


def bsd68_reads(dry_run: str, bsd68_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(rule, path) of each planned read of a BSD68 file by a job other than the download."""
    ids = set(bsd68_ids)
    return [
        (rule, path)
        for rule, path in _planned_inputs(dry_run)
        if rule != DOWNLOAD_RULE and ("bsd68" in path.lower() or Path(path).stem in ids)
    ]


def check_plan(snakemake_args: Sequence[str], bsd68_ids: Sequence[str]) -> None:
    """Refuse (TuningError) a plan in which any job but the download reads a BSD68 file."""
    result = subprocess.run(
        [str(SNAKEMAKE), "--dry-run", "--forceall", "--nolock", *snakemake_args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise TuningError(f"snakemake --dry-run failed:\n{result.stdout}{result.stderr}")
    reads = bsd68_reads(result.stdout, bsd68_ids)
    if reads:
        rule, path = reads[0]
        raise TuningError(
            f"refused: rule {rule} would read the BSD68 file {path} ({len(reads)} such reads); "
            "BSD68 is the test set, and tuning may use training data only"
        )


def _score(summary_path: Path) -> dict[str, Any]:
    summary = json.loads(summary_path.read_text())
    final = summary["final_validation"]
    return {
        "heldout_psnr_last": final["psnr"],
        "heldout_ssim_last": final["ssim"],
        "heldout_tiles": final["tiles"],
        "best_valid_loss": summary["best_valid_loss"],
        "patches": summary["patches"],
        "train_min": summary["train_time_s"] / 60,
        "patches_per_s": summary["train_patches_per_s"],
        "machine": summary["machine"],
    }


def _settings(recipe: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "arch": recipe["arch"],
        "epochs": recipe["epochs"],
        "steps_per_epoch": recipe["steps_per_epoch"],
        "batch_size": recipe["batch_size"],
        "masking_percent": recipe["masking"]["percentage"],
        "lr": recipe["optimizer"]["lr"],
        "schedule": recipe["schedule"]["kind"],
    }


def write_record(out: Path, rows: list[dict[str, Any]], base: str, framework: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tuning.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ranked = sorted(rows, key=lambda row: -row["heldout_psnr_last"])
    lines = [
        "# CPU recipe candidates, ranked on held-out training images",
        "",
        f"Generated by `python tools/cpu_tuning.py` (do not edit): each candidate is the `{base}`",
        f"recipe with the keys shown, trained once in {framework} through the pipeline on "
        f"**{rows[0]['machine']}**. Score: mean PSNR of the final weights on all "
        f"{rows[0]['heldout_tiles']} tiles of the held-out Train400 images (the recipe's "
        "validation set; no BSD68 image was read). Per-epoch curves: `<candidate>/history.csv`.",
        "",
        "| rank | candidate | epochs x steps x batch | masked % | lr | held-out PSNR (dB) "
        "| SSIM | best valid loss | patches | training min | patches/s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rank, row in enumerate(ranked, 1):
        lines.append(
            f"| {rank} | {row['candidate']} | {row['epochs']} x {row['steps_per_epoch']} x "
            f"{row['batch_size']} | {row['masking_percent']:g} | {row['lr']:g} | "
            f"{row['heldout_psnr_last']:.3f} | {row['heldout_ssim_last']:.4f} | "
            f"{row['best_valid_loss']:.5f} | {row['patches']:,} | {row['train_min']:.1f} | "
            f"{row['patches_per_s']:.1f} |"
        )
    lines += [
        "",
        f"Highest held-out PSNR: **{ranked[0]['candidate']}**. The proxies are short (the "
        "recipe trains the same epochs with more steps each), so the ranking is evidence, not "
        "proof, for the full budget; BSD68 scores the chosen recipe once, in the pipeline.",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", type=Path, help="YAML: base recipe and candidates")
    parser.add_argument("--configfile", nargs="*", default=[], help="more config files")
    parser.add_argument("--framework", default="torch")
    parser.add_argument("--sigma", type=int, default=25)
    parser.add_argument("--cores", default="2")
    parser.add_argument("--out", type=Path, default=REPO / "docs/measured/cpu-tuning")
    parser.add_argument("--dry-run", action="store_true", help="check the plan, train nothing")
    options = parser.parse_args(argv)
    try:
        base, candidates = read_candidates(options.candidates)
        configs = [REPO / "config/config.yaml", *(Path(p).resolve() for p in options.configfile)]
        config = load_config(*configs)
        generated = options.out / "candidates.yaml"
        generated.parent.mkdir(parents=True, exist_ok=True)
        content = candidate_config(config, base, candidates)
        generated.write_text(yaml.safe_dump(content, sort_keys=False))
        config = load_config(*configs, generated)
        seed = (config["seeds"] or [config["seed"]])[0]
        targets = summary_targets(list(candidates), options.framework, options.sigma, seed)
        args = [
            *targets,
            "--cores",
            options.cores,
            "--configfile",
            *map(str, configs[1:]),
            str(generated.resolve()),
        ]
        ids = (REPO / config["data"]["bsd68_ids"]).read_text().split()
        check_plan(args, ids)
    except TuningError as error:
        print(f"cpu_tuning: {error}", file=sys.stderr)
        return 2
    if options.dry_run:
        print(f"cpu_tuning: plan checked, no BSD68 file read: {len(targets)} candidates")
        return 0
    if subprocess.run([str(SNAKEMAKE), *args], cwd=REPO).returncode != 0:
        print("cpu_tuning: snakemake failed; rerun to resume", file=sys.stderr)
        return 1
    rows = []
    for name, target in zip(candidates, targets, strict=True):
        summary = REPO / target
        (options.out / name).mkdir(parents=True, exist_ok=True)
        history = summary.with_name("history.csv")
        (options.out / name / "history.csv").write_text(history.read_text())
        recipe = recipe_mapping(config, name)
        rows.append({"candidate": name, **_settings(recipe), **_score(summary)})
    write_record(options.out, rows, base, options.framework)
    best = max(rows, key=lambda row: row["heldout_psnr_last"])
    print(f"cpu_tuning: best on held-out training tiles: {best['candidate']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
