"""Write docs/measured/<name>.md from a finished pipeline run, and keep its source files.

    python tools/measured_doc.py /path/to/checkout --recipe cpu --sigma 25 --seed 123 \
        --run-time run_time.json
    python tools/measured_doc.py /path/to/checkout --recipe n2c n2n n2v n2v2 \
        --name paper-table-cpu --config config/paper-table-cpu.yaml --run-time run_time.json
    python tools/measured_doc.py /path/to/checkout --claims --name port-claims-cpu \
        --config config/port-claims-cpu.yaml --run-time run_time.json
    python tools/measured_doc.py /path/to/checkout --references --name references-cpu \
        --config config/references-cpu.yaml --run-time run_time.json
    python tools/measured_doc.py /path/to/checkout --recipe cpu_juglab_schedule \
        --name references-ablation-cpu --run-time run_time.json \
        --ablation-of docs/measured/references-cpu-run/methods.csv

`--run-time` names a JSON file {"command": ..., "start_s": ..., "end_s": ...} written around
the whole run (`date +%s` before and after `bash run.sh`): the page gives its minutes.
Several recipes (the methods of config/paper-table-cpu.yaml) make one page with a row per
recipe x framework, the run's methods table (BM3D beside them) and the sanity checks of the
issue that asked for it: N2C >= N2N >= N2V - SANITY_MARGIN_DB, every method above the noisy
input. `--claims` makes the page of the port's claims (the run's results/tables/port_claims
table, each run's statistics and the parity check's batch-norm finding). `--references` makes
the page of ours beside the reference implementations (config `references`): whether ours
matches each (ours − reference and its interval, from the methods table), the settings each
runs its own way, the cost table and the validation curves. `--ablation-of` adds to a
one-recipe page (config/references-ablation-cpu.yaml's diagnostic) its BSD68 rows beside a
references run's ours and juglab n2v, and the share of that gap the recipe's change explains.

Every number in the page is read from the run's own files (history.csv, train_summary.json,
eval summary.json, the Snakemake benchmark TSVs, the methods table), which are copied beside
it into docs/measured/<name>-run/ so that the page can be regenerated and checked.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from n2v_repro import paths
from n2v_repro.backends.registry import FRAMEWORK_TITLES, FRAMEWORKS
from n2v_repro.io.formats import read_benchmark, read_history
from n2v_repro.parity.finding import COLUMNS as FINDING_COLUMNS
from n2v_repro.parity.finding import finding_rows
from n2v_repro.report.html_pages import Column, fixed, render_markdown_table
from n2v_repro.training.progress import format_duration

REPO = Path(__file__).resolve().parents[1]

# Rows of the curve table: about this many, evenly over the epochs, the last one always in.
CURVE_ROWS = 10
# How far N2V may come out above N2N in a short CPU run before the ordering check fails.
SANITY_MARGIN_DB = 0.3
# Shares of a gap an ablation explains: at least EXPLAINS_MOST is most of it, at most
# EXPLAINS_LITTLE little of it.
EXPLAINS_MOST = 0.75
EXPLAINS_LITTLE = 0.25
# A train summary's batch norm where the summary predates the field (None: an arch without).
UNRECORDED = "unrecorded"


def run_files(root: Path, recipe: str, framework: str, sigma: int, seed: int) -> dict[str, Path]:
    def path(pattern: str) -> Path:
        return root / paths.run_path(pattern, recipe, framework, sigma, seed)

    return {
        "history.csv": path(paths.MODEL_DIR) / "history.csv",
        "train_summary.json": path(paths.MODEL_DIR) / "train_summary.json",
        "eval_summary.json": path(paths.EVAL_DIR) / "summary.json",
        "train_benchmark.tsv": path(paths.TRAIN_BENCHMARK),
        "eval_benchmark.tsv": path(paths.EVAL_BENCHMARK),
    }


def copy_sources(files: dict[str, Path], dest: Path, framework: str) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, path in files.items():
        copies[name] = dest / f"{framework}_{name}"
        shutil.copyfile(path, copies[name])
    return copies


def framework_row(framework: str, files: dict[str, Path], recipe: str = "") -> dict[str, object]:
    summary = json.loads(files["train_summary.json"].read_text())
    evaluation = json.loads(files["eval_summary.json"].read_text())
    history = read_history(files["history.csv"])
    bsd68 = evaluation["test_sets"]["bsd68"]
    train_s = float(history["epoch_time_s"].sum())
    valid_share = 100.0 * history["valid_time_s"] / history["epoch_time_s"]
    return {
        "recipe": recipe,
        "method": summary.get("method", "n2v"),
        "framework": framework,
        "batch_norm": summary.get("batch_norm", UNRECORDED),
        "noisy": bsd68["noisy"],
        "machine": summary.get("machine", "?"),
        "last": bsd68["last"],
        "best": bsd68["best"],
        "train_s": train_s,
        "job_s": float(read_benchmark(files["train_benchmark.tsv"])["s"][0]),
        "eval_s": float(read_benchmark(files["eval_benchmark.tsv"])["s"][0]),
        "patches": summary["patches"],
        "rate": summary["train_patches_per_s"],
        "steady": summary["steady_patches_per_s"],
        "valid_share_max": float(valid_share.max()),
        "history": history,
    }


def how_they_ran(rows: list[dict[str, object]]) -> str:
    """Say how the frameworks ran, from the batch norm each run's train summary records."""
    kinds = {row["batch_norm"] for row in rows} - {None}
    if UNRECORDED in kinds:
        return "The runs' train summaries do not record their batch norm (written before it was)."
    if kinds <= {"stock"} and len(rows) == 1:
        return f"{rows[0]['framework']} ran stock, as its train summary records."
    if kinds <= {"stock"}:
        return (
            "Both frameworks ran stock, as their train summaries record: each one's own ops "
            "and defaults (Jittor's `jittor.nn.BatchNorm` where an arch has batch norm)."
        )
    return (
        "Each run's batch norm is in its train summary: "
        + ", ".join(f"{row['framework']} {row['batch_norm'] or 'none'}" for row in rows)
        + " (exact: the opt-in `jittor-exactbn`, the project's BatchNorm)."
    )


def curve_table(rows: list[dict[str, object]]) -> list[str]:
    histories = [row["history"] for row in rows]
    epochs = len(histories[0]["epoch"])
    step = max(1, round(epochs / CURVE_ROWS))
    picks = sorted({*range(step - 1, epochs, step), epochs - 1})
    header = "| epoch | " + " | ".join(
        f"{row['framework']} minutes | {row['framework']} valid PSNR (dB)" for row in rows
    )
    lines = [header + " |", "|---" * (1 + 2 * len(rows)) + "|"]
    for index in picks:
        cells = [str(int(histories[0]["epoch"][index]))]
        for history in histories:
            cells += [
                f"{history['wall_time_s'][index] / 60:.1f}",
                f"{history['valid_psnr'][index]:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def page(
    recipe: str,
    sigma: int,
    seed: int,
    rows: list[dict[str, object]],
    sources: str,
    run_time: dict[str, object] | None = None,
) -> str:
    machine = rows[0]["machine"]
    trainings = (
        "Jittor's compilation, data, parity, both trainings"
        if len(rows) > 1
        else "data, the training"
    )
    steps = f" (set-up check, calibration, {trainings}, evaluation, report)"
    whole = whole_run(run_time, sources, steps)
    lines = [
        f"# The `{recipe}` recipe, measured",
        "",
        f"Generated by `python tools/measured_doc.py` from one pipeline run (sigma {sigma}, "
        f"seed {seed}) on **{machine}**, one training job after the other; its files are in "
        f"`{sources}/`. Do not edit by hand: rerun the tool on a new run. {how_they_ran(rows)}",
        "",
        *whole,
        "## BSD68 test PSNR",
        "",
        "All 68 images; the recipe validates on held-out training images, so none of them chose "
        "the weights. best = the lowest N2V validation loss (the paper's choice).",
        "",
        "| framework | PSNR last (dB) | PSNR best (dB) | SSIM best | training steps | "
        "training job | patches | patches/s (total / time) | patches/s (from epoch 2) | "
        "evaluation job |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        last, best = row["last"], row["best"]
        lines.append(
            f"| {row['framework']} | {last['psnr_mean']:.2f} | {best['psnr_mean']:.2f} | "
            f"{best['ssim_mean']:.4f} | {format_duration(row['train_s'])} | "
            f"{format_duration(row['job_s'])} | {row['patches']:,} | {row['rate']:.1f} | "
            f"{row['steady']:.1f} | {format_duration(row['eval_s'])} |"
        )
    lines += [
        "",
        "Per-epoch validation took at most "
        + ", ".join(f"{row['valid_share_max']:.2f}% ({row['framework']})" for row in rows)
        + " of an epoch's training time.",
        "",
        "## Validation PSNR against time",
        "",
        "The per-epoch validation PSNR (the held-out training tiles against their clean "
        "images; reported, never used to choose weights) after the given wall minutes of the "
        "training job (training + validation + checkpoints).",
        "",
        *curve_table(rows),
        "",
    ]
    return "\n".join(lines)


def _cell(column: str, text: str) -> str:
    """Round a table cell for reading: dB to 0.01, differences to 0.001, p to 3 digits.

    Other fractional numbers keep 4 significant digits; integers stay as written.
    """
    try:
        value = float(text)
    except ValueError:
        return text
    if column.endswith(("p_value", "_p")):
        return f"{value:.3g}"
    if "minus_" in column or column.endswith(("_ci_low", "_ci_high")):
        return f"{value:+.3f}"
    if column.endswith(("psnr", "sd_seeds")):
        return f"{value:.2f}"
    if "." in text or "e" in text.lower():
        return f"{value:.4g}"
    return text


def csv_as_markdown(path: Path) -> list[str]:
    """Render a CSV table as a Markdown table, numbers rounded for reading (`_cell`)."""
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    header, body = table[0], table[1:]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(c, t) for c, t in zip(header, row, strict=True)) + " |"
          for row in body),
    ]  # fmt: skip


def sanity_checks(rows: list[dict[str, object]], bm3d: dict | None) -> list[str]:
    """List the reader's checks: every method above the noisy input; N2C >= N2N >= N2V - margin."""
    lines = []
    for framework in dict.fromkeys(row["framework"] for row in rows):
        best = {
            row["method"]: row["best"]["psnr_mean"] for row in rows if row["framework"] == framework
        }
        noisy = next(r["noisy"]["psnr_mean"] for r in rows if r["framework"] == framework)
        above = {m: value > noisy for m, value in best.items()}
        if bm3d is not None:
            above["bm3d"] = bm3d["psnr_mean"] > noisy
        failed = [method for method, ok in above.items() if not ok]
        verdict = "yes" if not failed else "NO: " + ", ".join(failed)
        lines.append(
            f"- {framework}: every method above the noisy input ({noisy:.2f} dB): {verdict}."
        )
        if {"n2c", "n2n", "n2v"} <= set(best):
            n2c, n2n, n2v = best["n2c"], best["n2n"], best["n2v"]
            holds = n2c >= n2n >= n2v - SANITY_MARGIN_DB
            lines.append(
                f"- {framework}: N2C {n2c:.2f} >= N2N {n2n:.2f} >= N2V {n2v:.2f} - "
                f"{SANITY_MARGIN_DB} dB: {'holds' if holds else 'does NOT hold'}."
            )
    return lines


def comparison_page(
    name: str,
    config: str,
    sigma: int,
    seed: int,
    rows: list[dict[str, object]],
    sources: str,
    run_time: dict[str, object] | None,
    methods_table: Path | None,
    bm3d: dict | None,
) -> str:
    """Write the page of several recipes (one per method) run together."""
    machine = rows[0]["machine"]
    lines = [
        f"# `{config}`, measured",
        "",
        f"Generated by `python tools/measured_doc.py` from one pipeline run (sigma {sigma}, "
        f"seed {seed}) on **{machine}**, one job after the other; its files are in `{sources}/`. "
        f"Do not edit by hand: rerun the tool on a new run. {how_they_ran(rows)}",
        "",
    ]
    if run_time is not None:
        minutes = (float(run_time["end_s"]) - float(run_time["start_s"])) / 60
        lines += [
            f"The whole run, `{run_time['command']}` in a fresh clone (set-up check, "
            "calibration, Jittor's compilation, data, parity, every training, BM3D, "
            f"evaluation, report), took **{minutes:.1f} minutes** (`{sources}/run_time.json`).",
            "",
        ]
    if methods_table is not None:
        lines += [
            "## The methods table",
            "",
            f"As the report shows it (`{sources}/{methods_table.name}`). The paper's numbers are "
            "Krull et al. 2019, Table 1 (BSD68, sigma 25).",
            "",
            *csv_as_markdown(methods_table),
            "",
        ]
    lines += [
        "## Every run",
        "",
        "All BSD68 images in use; every recipe validates on held-out training images, so none "
        "of them chose the weights. best = the lowest validation loss (the paper's choice).",
        "",
        "| recipe | method | framework | PSNR last (dB) | PSNR best (dB) | SSIM best | "
        "training steps | training job | patches | patches/s | evaluation job |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        last, best = row["last"], row["best"]
        lines.append(
            f"| {row['recipe']} | {row['method']} | {row['framework']} | "
            f"{last['psnr_mean']:.2f} | {best['psnr_mean']:.2f} | {best['ssim_mean']:.4f} | "
            f"{format_duration(row['train_s'])} | {format_duration(row['job_s'])} | "
            f"{row['patches']:,} | {row['rate']:.1f} | {format_duration(row['eval_s'])} |"
        )
    if bm3d is not None:
        lines += [
            "",
            f"BM3D (no framework, no training): PSNR {bm3d['psnr_mean']:.2f} dB, SSIM "
            f"{bm3d['ssim_mean']:.4f} over {bm3d['n']} images; its job took "
            f"{format_duration(bm3d['job_s'])} ({bm3d['job_s'] / bm3d['n']:.1f} s per image).",
        ]
    lines += ["", "## Sanity checks", "", *sanity_checks(rows, bm3d), ""]
    return "\n".join(lines)


def bm3d_result(root: Path, sigma: int, sources: Path) -> dict | None:
    """BM3D's BSD68 result and job time, its files copied to `sources`; None if it did not run."""
    summary = root / paths.BM3D_EVAL_DIR.format(sigma=sigma) / "summary.json"
    benchmark = root / paths.BM3D_BENCHMARK.format(sigma=sigma)
    if not summary.exists():
        return None
    shutil.copyfile(summary, sources / "bm3d_eval_summary.json")
    shutil.copyfile(benchmark, sources / "bm3d_benchmark.tsv")
    result = json.loads(summary.read_text())["test_sets"]["bsd68"]["bm3d"]
    return {**result, "job_s": float(read_benchmark(benchmark)["s"][0])}


RUN_COLUMNS = [
    Column("recipe", "recipe"),
    Column("framework", "framework", lambda f: FRAMEWORK_TITLES[f]),
    Column("seed", "seed", numeric=True),
    Column("batch_norm", "batch norm"),
    Column("b_psnr", "valid PSNR fluctuation (dB)", fixed(3), True),
    Column("b_ssim", "valid SSIM fluctuation", fixed(4), True),
    Column("c1", "epoch time from epoch 2 (s)", fixed(2), True),
    Column("c2", "epoch time sd / mean", fixed(3), True),
    Column("d", "peak memory (MiB)", fixed(0), True),
    Column("e1", "busy share", fixed(2), True),
    Column("e2", "idle samples", fixed(2), True),
]


def whole_run(run_time: dict | None, relative: str, steps: str, status_note: str = "") -> list[str]:
    """Return the page's line on the whole run's minutes (and its exit status when not 0)."""
    if run_time is None:
        return []
    minutes = (float(run_time["end_s"]) - float(run_time["start_s"])) / 60
    status = run_time.get("status", 0)
    return [
        f"The whole run, `{run_time['command']}` in a fresh clone{steps}, took **{minutes:.1f} "
        f"minutes** (`{relative}/run_time.json`)"
        + ("." if not status else f", exit status {status}{status_note}."),
        "",
    ]


def claims_page(root: Path, name: str, config: str, run_time: dict | None, sources: Path) -> str:
    """Write the port's claims page: the run's claims table, its runs, its parity finding."""
    relative = str(sources.relative_to(REPO))
    for source in (f"{paths.CLAIMS_TABLE}.json", f"{paths.CLAIMS_TABLE}.md",
                   f"{paths.PARITY_DIR}/parity.json", "results/tables/psnr_ssim.csv",
                   "results/tables/benchmark.csv"):  # fmt: skip
        shutil.copyfile(root / source, sources / Path(source).name)
    claims = json.loads((sources / "port_claims.json").read_text())
    records = json.loads((sources / "parity.json").read_text())["archs"]
    machine = claims["runs"][0]["machine"]
    lines = [
        f"# The port's claims, checked: `{config}`, measured",
        "",
        f"Generated by `python tools/measured_doc.py --claims` from one pipeline run on "
        f"**{machine}**, one job after the other; its files are in `{relative}/`. Do not edit "
        "by hand: rerun the tool on a new run. Every number is computed by the pipeline "
        "(`src/n2v_repro/report/claims.py`) from the run's own files. PyTorch and Jittor run "
        "stock (each one's own layers and defaults, `jittor.nn.BatchNorm` in Jittor); "
        "`Jittor, exact BN` is the opt-in variant with the project's exact BatchNorm.",
        "",
    ]
    lines += whole_run(run_time, relative, "", " (docs/measured/README.md)")
    verdicts: dict[str, list[str]] = {}
    for row in claims["claims"]:
        against = "" if row["against"] == "torch" else f" vs {FRAMEWORK_TITLES[row['against']]}"
        verdicts.setdefault(row["claim"], []).append(
            f"{row['recipe']}, {FRAMEWORK_TITLES[row['jittor']]}{against}: {row['verdict']}"
        )
    lines += [
        "## Verdicts at a glance",
        "",
        "Claims d and e are about the GPU; here they are judged on the CPU analogue (peak RSS, "
        "the cores' busy share), the GPU column says what would measure them.",
        "",
    ]
    says = {row["claim"]: row["port_says"] for row in claims["claims"]}
    lines += [f"- **{c}** ({says[c]}): " + "; ".join(t) + "." for c, t in verdicts.items()]
    lines.append("")
    for recipe in dict.fromkeys(run["recipe"] for run in claims["runs"]):
        figure = root / paths.RECIPE_FIGURES.format(recipe=recipe) / "valid_psnr_ssim.png"
        if figure.exists():
            shutil.copyfile(figure, sources / f"{recipe}_valid_psnr_ssim.png")
            lines += [f"![{recipe}: validation PSNR and SSIM per epoch, every seed]"
                      f"({sources.name}/{recipe}_valid_psnr_ssim.png)", ""]  # fmt: skip
    passed = ", ".join(f"{r['arch']} ({r['framework']}): {'passed' if r['passed'] else 'FAILED'}"
                       for r in records)  # fmt: skip
    lines += [
        "## The claims",
        "",
        (sources / "port_claims.md").read_text(),
        "## Every run",
        "",
        render_markdown_table(RUN_COLUMNS, claims["runs"]),
        "## Stock Jittor's batch norm against PyTorch (the parity check)",
        "",
        f"Parity gate, each framework against float64 of its own semantics: {passed}.",
        "",
        render_markdown_table(FINDING_COLUMNS, finding_rows(records)),
    ]
    return "\n".join(lines)


# A reference "matches" ours when the 95% interval of ours − reference lies within this margin.
MATCH_MARGIN_DB = 0.1


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def reference_verdicts(methods_csv: Path, frameworks: list[str]) -> list[str]:
    """Say for each reference row and each of our frameworks whether ours matches it."""
    with open(methods_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["reference"]]
    lines = []
    for row in rows:
        for ours in frameworks:
            difference = _float(row[f"{ours}_minus_reference_psnr"])
            if difference is None:
                continue
            low = _float(row[f"{ours}_reference_ci_low"])
            high = _float(row[f"{ours}_reference_ci_high"])
            if low is None or high is None:
                verdict = "no interval (one image)"
            elif low >= -MATCH_MARGIN_DB and high <= MATCH_MARGIN_DB:
                verdict = f"**matches** (the whole interval within ±{MATCH_MARGIN_DB} dB)"
            elif low > 0 or high < 0:
                side = "above" if low > 0 else "below"
                verdict = f"**differs**: ours is {side} the reference"
            else:
                verdict = (
                    f"**inconclusive** (the interval holds 0 but passes ±{MATCH_MARGIN_DB} dB)"
                )
            lines.append(
                f"- {row['label']}, {row['weights']} weights: {FRAMEWORK_TITLES[ours]} "
                f"{_float(row['reference_psnr']) + difference:.2f} dB, reference "
                f"{_float(row['reference_psnr']):.2f} dB; ours − reference {difference:+.3f} dB, "
                f"95% CI {low:+.3f} to {high:+.3f} dB, Wilcoxon p "
                f"{float(row[f'{ours}_reference_p']):.3g}: {verdict}."
            )
    return lines


def settings_differences(settings_csv: Path) -> list[str]:
    """List the settings a reference runs its own way (the table's rows marked 'differs')."""
    with open(settings_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["differs"]]
    return [f"{row['setting']}: ours {row['ours']}; theirs {row['theirs']}" for row in rows]


def references_page(
    root: Path, config: str, recipe: str, run_time: dict | None, sources: Path
) -> str:
    """Write the page of ours beside the reference implementations (config `references`)."""
    relative = str(sources.relative_to(REPO))
    methods = sources / "methods.csv"
    shutil.copyfile(root / f"{paths.METHODS_TABLE}.csv", methods)
    shutil.copyfile(root / "results/tables/benchmark.csv", sources / "benchmark.csv")
    every = {"recipe": recipe, "sigma": "*", "seed": "*"}
    model_dirs = paths.REFERENCE_MODEL_DIR.format(**every, reference="*")
    summaries = root.glob(f"{model_dirs}/train_summary.json")
    names = sorted({json.loads(s.read_text())["reference"] for s in summaries})
    machine = "?"
    frameworks = []
    for framework in FRAMEWORKS:
        found = sorted(
            root.glob(f"{paths.MODEL_DIR.format(**every, framework=framework)}/train_summary.json")
        )
        if found:
            frameworks.append(framework)
            machine = json.loads(found[0].read_text()).get("machine", machine)
    lines = [
        f"# Ours beside the reference implementations: `{config}`, measured",
        "",
        f"Generated by `python tools/measured_doc.py --references` from one pipeline run on "
        f"**{machine}**, one job after the other; its files are in `{relative}/`. Do not edit "
        "by hand: rerun the tool on a new run. Every reference trained on the recipe's own "
        "training patches and validation tiles with its budget, predicted the same 68 noisy "
        "BSD68 images with its own predict, and was scored by the pipeline's metric code; "
        "none of them saw a BSD68 image before its prediction.",
        "",
    ]
    steps = (
        " (set-up, data, building the references' environments, every training, prediction and "
        "scoring, report)"
    )
    lines += whole_run(run_time, relative, steps)
    lines += [
        "## Does our N2V match the reference implementations here?",
        "",
        f"ours − reference: the mean over the 68 images of the per-image PSNR difference; its "
        f"95% t-interval (each image's seeds averaged first); 'matches' when the whole interval "
        f"lies within ±{MATCH_MARGIN_DB} dB, 'differs' when it excludes 0.",
        "",
        *reference_verdicts(methods, frameworks),
        "",
        "What each reference does its own way (the settings tables below, rows marked differs) "
        "is what can explain a difference; the run does not separate their effects.",
        "",
    ]
    for name in names:
        settings = root / f"{paths.REFERENCE_SETTINGS.format(recipe=recipe, reference=name)}.csv"
        shutil.copyfile(settings, sources / f"{name}_settings.csv")
        lines += [f"- {name}: " + "; ".join(settings_differences(settings)) + "."]
    lines += [
        "",
        "## The methods table",
        "",
        f"As the pipeline wrote it (`{relative}/methods.csv`), the reference rows with ours − "
        "reference.",
        "",
        *csv_as_markdown(methods),
        "",
        "## Cost",
        "",
        f"The run's benchmark table (`{relative}/benchmark.csv`): each training on the same "
        "machine, one after the other.",
        "",
        *csv_as_markdown(sources / "benchmark.csv"),
        "",
    ]
    for name in names:
        lines += [
            f"## Settings: ours and {name}",
            "",
            *csv_as_markdown(sources / f"{name}_settings.csv"),
            "",
        ]
    figure = root / paths.REFERENCE_CURVES.format(recipe=recipe)
    if figure.exists():
        shutil.copyfile(figure, sources / figure.name)
        lines += [
            "## Validation loss",
            "",
            f"![validation loss against patches trained, ours and the references]"
            f"({sources.name}/{figure.name})",
            "",
        ]
    return "\n".join(lines)


def _rate_changes(history) -> str:
    """Say when the learning rate of a run was cut, from its history.csv."""
    rates = [float(rate) for rate in history["lr"]]
    cuts = [
        f"epoch {int(history['epoch'][i])} ({rates[i - 1]:.2g} to {rates[i]:.2g})"
        for i in range(1, len(rates))
        if rates[i] < rates[i - 1]
    ]
    if not cuts:
        return f"never cut: {rates[0]:.2g} for all {len(rates)} epochs"
    return "cut at " + ", ".join(cuts)


def _how_much(share: float) -> str:
    """Say how much of a gap a share explains: most, part or little of it."""
    if share >= EXPLAINS_MOST:
        return "most"
    return "little" if share <= EXPLAINS_LITTLE else "part"


def ablation_section(rows: list[dict[str, object]], references_methods: Path) -> list[str]:
    """Set a diagnostic run's BSD68 rows beside ours and juglab n2v in a references run."""
    with open(references_methods, newline="") as handle:
        table = list(csv.DictReader(handle))
    ours = {r["weights"]: float(r["torch_psnr"]) for r in table if not r["reference"]}
    juglab = {
        r["weights"]: float(r["reference_psnr"]) for r in table if r["reference"] == "juglab_n2v"
    }
    (row,) = [r for r in rows if r["framework"] == "torch"]
    recipe = rows[0]["recipe"]
    lines = [
        "## How much of the gap to juglab n2v does its learning-rate schedule explain?",
        "",
        f"Ours with the cosine and juglab n2v are the rows of the references run "
        f"(`{references_methods.relative_to(REPO)}`, another run of the same seed); ours with "
        f"juglab's schedule is this run's `{recipe}`, the same recipe but for the schedule. "
        f"Its learning rate was {_rate_changes(row['history'])}. share = (cosine − juglab's "
        "schedule) / (ours − juglab): the part of the gap that the schedule alone accounts for.",
        "",
        "| weights | ours, cosine (dB) | ours, juglab's schedule (dB) | juglab n2v (dB) | "
        "ours − juglab (dB) | cosine − juglab's schedule (dB) | share |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for weights in ("last", "best"):
        if weights not in ours or weights not in juglab:
            continue
        ablated = float(row[weights]["psnr_mean"])
        gap, explained = ours[weights] - juglab[weights], ours[weights] - ablated
        lines.append(
            f"| {weights} | {ours[weights]:.2f} | {ablated:.2f} | {juglab[weights]:.2f} | "
            f"{gap:+.2f} | {explained:+.2f} | {explained / gap:.0%} |"
        )
        verdicts.append(f"{_how_much(explained / gap)} of the {weights} weights' gap")
    return lines + ["", f"The schedule explains {'; '.join(verdicts)}.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the checkout that ran the pipeline")
    parser.add_argument("--recipe", nargs="+", default=["cpu"])
    parser.add_argument("--name", default=None, help="page name (default: the one recipe)")
    parser.add_argument("--config", default=None, help="the config file the run used")
    parser.add_argument("--sigma", type=int, default=25)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--run-time", type=Path, default=None, help="JSON: command, start_s, end_s")
    parser.add_argument("--claims", action="store_true", help="the page of the port's claims")
    parser.add_argument(
        "--references", action="store_true", help="the page of ours beside the references"
    )
    parser.add_argument(
        "--ablation-of",
        type=Path,
        default=None,
        help="a references run's methods.csv: set this one-recipe run's rows beside its ours "
        "and juglab n2v rows",
    )
    options = parser.parse_args()
    recipes = options.recipe
    name = options.name or recipes[0]
    out_dir = REPO / "docs" / "measured"
    sources = out_dir / f"{name}-run"
    sources.mkdir(parents=True, exist_ok=True)
    run_time = None
    if options.run_time is not None:
        run_time = json.loads(options.run_time.read_text())
        shutil.copyfile(options.run_time, sources / "run_time.json")
    if options.claims or options.references:
        config = options.config or name
        if options.claims:
            text = claims_page(options.root, name, config, run_time, sources)
        else:
            text = references_page(options.root, config, recipes[0], run_time, sources)
        (out_dir / f"{name}.md").write_text(text)
        print(text)
        return
    rows = []
    for recipe in recipes:
        for framework in FRAMEWORKS:
            files = run_files(options.root, recipe, framework, options.sigma, options.seed)
            if not files["history.csv"].exists():  # a framework the run did not train
                continue
            label = framework if len(recipes) == 1 else f"{recipe}_{framework}"
            rows.append(framework_row(framework, copy_sources(files, sources, label), recipe))
    relative = str(sources.relative_to(REPO))
    if len(recipes) == 1:
        text = page(recipes[0], options.sigma, options.seed, rows, relative, run_time)
        if options.ablation_of is not None:
            text += "\n".join(["", *ablation_section(rows, options.ablation_of.resolve())])
        figure = options.root / "results" / "figures" / recipes[0] / "valid_psnr_time.png"
    else:
        table = options.root / f"{paths.METHODS_TABLE}.csv"
        methods_table = None
        if table.exists():
            methods_table = sources / "methods.csv"
            shutil.copyfile(table, methods_table)
        bm3d = bm3d_result(options.root, options.sigma, sources)
        config = options.config or name
        text = comparison_page(
            name, config, options.sigma, options.seed, rows, relative, run_time,
            methods_table, bm3d,
        )  # fmt: skip
        figure = options.root / paths.METHODS_FIGURE.format(sigma=options.sigma)
    if figure.exists():
        shutil.copyfile(figure, sources / figure.name)
        text += f"\n![figure]({sources.name}/{figure.name})\n"
    (out_dir / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
