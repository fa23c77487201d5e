"""The port's claims, checked: each claim of the Noise2Void_jittor README against this run.

The port (PyTorch + Jittor, its U-Net at sigma 25, batch 64, 100 epochs on an RTX 4090)
claims (a) Jittor denoises on par with PyTorch, in some cases clearly better; (b) Jittor's
validation PSNR/SSIM curves fluctuate more; (c) Jittor's epoch time fluctuates more but is
on average clearly shorter; (d) Jittor's peak GPU memory is much higher; (e) PyTorch's GPU
utilisation is intermittent, Jittor's dense and high. Every number here is a statistic of
the run's own files, per recipe and Jittor (stock, and the exact-BN variant when run),
paired with PyTorch by seed (both start from the same weights and see the same batches).

A seed is the unit of replication: each statistic is computed per run, and Jittor's is
compared with PyTorch's of the same seed as log(Jittor / PyTorch); the ratio shown is the
geometric mean over seeds, and a one-sided t-test on the log ratios (seeds - 1 degrees of
freedom) asks whether it is above (or below) 1. A verdict is `confirmed` when the test
favours the claim at SIGNIFICANCE, `refuted` when it favours the opposite, else `not
supported`; with one seed there is no test. Accuracy (a) uses the paired per-image test of
the PSNR table instead, and "on par" means within EQUIVALENT_DB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from n2v_repro.backends.registry import FRAMEWORK_TITLES
from n2v_repro.io.atomic import atomic_open, write_json
from n2v_repro.io.formats import read_history, read_monitor, read_train_summary
from n2v_repro.report.html_pages import (
    Column,
    digits,
    fixed,
    render_markdown_table,
    render_table,
)

SIGNIFICANCE = 0.05
# |Jittor - PyTorch| below this is "on par"; at least this, and significant, "clearly".
EQUIVALENT_DB = 0.1
# A CPU sample below this share of the job's cores counts as idle (claim e).
IDLE_SHARE = 0.5
WEIGHTS = "last"

CONFIRMED, REFUTED, NOT_SUPPORTED = "confirmed", "refuted", "not supported"
NO_GPU = "not measurable on this machine (no GPU): a GPU run fills it (docs/gpu.md)"

# claim -> the port's words (short, in English), what measures it
CLAIMS = {
    "a1": ("Jittor denoises on par with PyTorch", "BSD68 PSNR, Jittor − PyTorch (dB)"),
    "a2": ("... in some cases clearly better", "BSD68 PSNR, Jittor − PyTorch (dB)"),
    "b_psnr": ("Jittor's validation PSNR curve fluctuates more", "fluctuation of valid PSNR"),
    "b_ssim": ("Jittor's validation SSIM curve fluctuates more", "fluctuation of valid SSIM"),
    "c1": (
        "Jittor's epoch time is on average clearly shorter (PyTorch ~4.8 s)",
        "mean epoch time from epoch 2 (s)",
    ),
    "c2": ("Jittor's epoch time fluctuates more", "epoch time sd / mean from epoch 2"),
    "d": ("Jittor's peak GPU memory is much higher (1783 vs 761 MiB)", "peak memory (MiB)"),
    "e1": ("Jittor's utilisation is dense and high", "mean busy share of the device"),
    "e2": ("PyTorch's utilisation is intermittent", "share of idle samples"),
}
# Shares, compared by their difference (0 is a share's natural value); the rest by ratio.
SHARES = ("e1", "e2")
# Whether each claim says Jittor's value is the larger.
LARGER = {
    "b_psnr": True,
    "b_ssim": True,
    "c1": False,
    "c2": True,
    "d": True,
    "e1": True,
    "e2": False,
}


def fluctuation(values: Sequence[float]) -> float:
    """Noise around a locally straight curve, over the second half of the epochs.

    The residual of each epoch from the line through its neighbours, y_t - (y_{t-1} +
    y_{t+1}) / 2, is free of any linear trend; for a curve with independent noise of
    standard deviation s its mean square is 1.5 s^2, so the result estimates s. The second
    half: the early, steep and curved part of training is left out. NaN below 3 epochs.
    """
    y = np.asarray(values, np.float64)
    y = y[y.size // 2 :]
    if y.size < 3:
        return math.nan
    residual = y[1:-1] - (y[:-2] + y[2:]) / 2
    return float(np.sqrt(np.mean(residual**2) / 1.5))


def run_measures(
    history: Mapping[str, np.ndarray], monitor: Mapping[str, np.ndarray], summary: Mapping[str, Any]
) -> dict[str, float]:
    """One run's statistics for claims b-e (epoch times from epoch 2 on: Jittor compiles)."""
    times = (
        history["epoch_time_s"][1:] if history["epoch_time_s"].size > 1 else history["epoch_time_s"]
    )
    if summary.get("device") == "cuda":
        memory = summary.get("peak_framework_mem_mib")
        busy = monitor["gpu_util_percent"] / 100.0
    else:
        memory = summary.get("peak_rss_mib")
        busy = monitor["cpu_percent"] / (100.0 * max(1, int(summary.get("threads") or 1)))
    busy = busy[~np.isnan(busy)]
    return {
        "b_psnr": fluctuation(history["valid_psnr"]),
        "b_ssim": fluctuation(history["valid_ssim"]),
        "c1": float(np.mean(times)),
        "c2": float(np.std(times) / np.mean(times)),
        "d": math.nan if memory is None else float(memory),
        "e1": float(np.mean(busy)) if busy.size else math.nan,
        "e2": float(np.mean(busy < IDLE_SHARE)) if busy.size else math.nan,
    }


def paired_test(jittor: Sequence[float], torch: Sequence[float], ratio: bool) -> dict[str, Any]:
    """Compare Jittor's per-seed values with PyTorch's: log ratios, or differences.

    Returns the geometric-mean ratio (or the mean difference) and one-sided t-test p-values
    over the seeds.
    """
    j, t = np.asarray(jittor, np.float64), np.asarray(torch, np.float64)
    keep = np.isfinite(j) & np.isfinite(t) & ((j > 0) & (t > 0) if ratio else True)
    values = np.log(j[keep] / t[keep]) if ratio else j[keep] - t[keep]
    out: dict[str, Any] = {"seeds": int(values.size), "ratio": None, "difference": None}
    out |= {"p_larger": None, "p_smaller": None}
    if values.size == 0:
        return out
    if ratio:
        out["ratio"] = float(np.exp(values.mean()))
    else:
        out["difference"] = float(values.mean())
    if values.size >= 2:
        if np.ptp(values) <= 1e-12 * max(1.0, abs(float(values.mean()))):  # every seed alike
            out["p_larger"], out["p_smaller"] = float(values[0] <= 0), float(values[0] >= 0)
        else:
            for key, side in (("p_larger", "greater"), ("p_smaller", "less")):
                out[key] = float(scipy_stats.ttest_1samp(values, 0.0, alternative=side).pvalue)
    return out


def directional_verdict(test: Mapping[str, Any], larger: bool) -> str:
    """Judge a claim that Jittor's value is larger (or smaller) than PyTorch's."""
    claimed, opposite = ("p_larger", "p_smaller") if larger else ("p_smaller", "p_larger")
    if test[claimed] is None:
        return f"{NOT_SUPPORTED} (no test: fewer than 2 seeds with a value)"
    if test[claimed] < SIGNIFICANCE:
        return CONFIRMED
    if test[opposite] < SIGNIFICANCE:
        return REFUTED
    return NOT_SUPPORTED


def accuracy_verdicts(difference: float, p_value: float | None) -> tuple[str, str]:
    """(a1 on par, a2 in some cases clearly better) for one recipe and Jittor."""
    significant = p_value is not None and p_value < SIGNIFICANCE
    clearly = abs(difference) >= EQUIVALENT_DB and significant
    on_par = (
        CONFIRMED if abs(difference) < EQUIVALENT_DB else (REFUTED if clearly else NOT_SUPPORTED)
    )
    better = CONFIRMED if clearly and difference > 0 else (REFUTED if clearly else NOT_SUPPORTED)
    return on_par, better


def claim_rows(
    runs: Mapping[tuple[str, str, int, int], Mapping[str, Any]],
    accuracy: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per claim x recipe x sigma x Jittor; `runs` maps each run to its measures.

    `accuracy` holds the PSNR table's rows (tables.psnr_ssim_rows). Each run's measures
    also carry `machine` and `device`. Stock against exact-BN Jittor ("does stock batch
    norm explain it?") adds rows under claim b with PyTorch's place taken by the exact one.
    """
    rows = []
    for recipe, sigma in dict.fromkeys((r, s) for r, _, s, _ in runs):
        mine = {run: m for run, m in runs.items() if run[0] == recipe and run[2] == sigma}
        frameworks = list(dict.fromkeys(run[1] for run in mine))
        if "torch" not in frameworks:
            continue
        machine = next(iter(mine.values()))["machine"]
        device = next(iter(mine.values()))["device"]
        comparisons = [(fw, "torch") for fw in frameworks if fw != "torch"]
        if {"jittor", "jittor-exactbn"} <= set(frameworks):
            comparisons.append(("jittor", "jittor-exactbn"))
        for jittor, other in comparisons:
            base = {
                "recipe": recipe,
                "sigma": sigma,
                "jittor": jittor,
                "against": other,
                "machine": machine,
                "device": device,
            }
            if other == "torch":
                rows += _accuracy_rows(base, accuracy)
            seeds = sorted(
                {run[3] for run in mine if run[1] == jittor}
                & {run[3] for run in mine if run[1] == other}
            )
            claims = [c for c in LARGER if other == "torch" or c.startswith("b_")]
            for claim in claims:
                values = {
                    fw: [mine[(recipe, fw, sigma, s)][claim] for s in seeds]
                    for fw in (jittor, other)
                }
                test = paired_test(values[jittor], values[other], claim not in SHARES)
                device_claim = claim in ("d", "e1", "e2")
                rows.append(
                    {
                        **base,
                        "claim": claim,
                        **test,
                        "jittor_value": _mean(values[jittor]),
                        "other_value": _mean(values[other]),
                        "verdict": directional_verdict(test, LARGER[claim]),
                        "gpu": NO_GPU if device_claim and device != "cuda" else "",
                    }
                )
    for row in rows:
        row["port_says"], row["statistic"] = CLAIMS[row["claim"]]
    return rows


def _accuracy_rows(base: Mapping[str, Any], accuracy: Sequence[Mapping[str, Any]]) -> list[dict]:
    from n2v_repro.report.tables import REPORTED_TEST_SET

    cell = next(
        (
            r
            for r in accuracy
            if r["recipe"] == base["recipe"]
            and r["sigma"] == base["sigma"]
            and r["framework"] == base["jittor"]
            and r["weights"] == WEIGHTS
            and r["test_set"] == REPORTED_TEST_SET.get(r["validation"])
        ),
        None,
    )
    if cell is None or cell["jittor_minus_torch_psnr"] is None:
        return []
    difference = cell["jittor_minus_torch_psnr"]
    torch_psnr = cell["psnr_mean"] - difference
    verdicts = accuracy_verdicts(difference, cell["p_value"])
    return [
        {
            **base,
            "claim": claim,
            "seeds": cell["seeds"],
            "ratio": None,
            "p_larger": None,
            "p_smaller": None,
            "difference": difference,
            "p_value": cell["p_value"],
            "jittor_value": cell["psnr_mean"],
            "other_value": torch_psnr,
            "verdict": verdict,
            "gpu": "",
        }
        for claim, verdict in zip(("a1", "a2"), verdicts, strict=True)
    ]


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


COLUMNS = [
    Column("claim", "claim"),
    Column("port_says", "the port says"),
    Column("recipe", "recipe"),
    Column("sigma", "σ"),
    Column("jittor_title", "Jittor"),
    Column("against_title", "against"),
    Column("statistic", "statistic"),
    Column("jittor_value", "Jittor's", digits(".4g"), True),
    Column("other_value", "against's", digits(".4g"), True),
    Column("ratio", "ratio (geometric mean over seeds)", fixed(3), True),
    Column("difference", "difference (mean over seeds)", fixed(3, signed=True), True),
    Column("p", "p", digits(".4g"), True),
    Column("seeds", "seeds", numeric=True),
    Column("verdict", "verdict"),
    Column("gpu", "GPU"),
    Column("machine", "machine"),
]
NOTE = (
    "Each row: one claim of the Noise2Void_jittor port's README, measured by this run. "
    "Statistics per run (fluctuation: the noise of the per-epoch validation curve around a "
    "locally straight line, second half of the epochs; epoch time and its sd / mean from "
    "epoch 2 on; peak memory: RSS on a CPU, reserved device memory on a GPU; utilisation: "
    "the mean busy share of the job's cores or GPU, and the share of samples below half of "
    "it), Jittor against PyTorch of the same seed; ratio: geometric mean over seeds "
    "(utilisation: the difference of the shares); p: one-sided t-test on the log ratios "
    "(differences) in the claimed direction (accuracy: the PSNR "
    f"table's paired Wilcoxon test, last weights; on par: within {EQUIVALENT_DB:g} dB). "
    f"confirmed / refuted: the test favours the claim / its opposite at {SIGNIFICANCE}; "
    "not supported: neither. Rows 'against Jittor, exact BN' ask whether stock batch norm "
    "explains a difference (stock Jittor against the exact-BN variant)."
)


def display_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Add the names and the p-value of the claimed direction to the rows, for the pages."""
    out = []
    for row in rows:
        larger = LARGER.get(row["claim"])
        p = row.get("p_value") if larger is None else row.get("p_larger" if larger else "p_smaller")
        out.append(
            {
                **row,
                "p": p,
                "jittor_title": FRAMEWORK_TITLES[row["jittor"]],
                "against_title": FRAMEWORK_TITLES[row["against"]],
            }
        )
    return out


def write_claims(
    *,
    runs: Sequence[Sequence[Any]],
    histories: Sequence[str],
    monitors: Sequence[str],
    train_summaries: Sequence[str],
    accuracy: Sequence[Mapping[str, Any]],
    json_path: str,
    html_path: str,
    markdown_path: str,
) -> list[dict[str, Any]]:
    """Write the claims table (JSON with every run's measures, HTML, Markdown)."""
    measures = {}
    for run, history, monitor, summary_path in zip(
        runs, histories, monitors, train_summaries, strict=True
    ):
        summary = read_train_summary(summary_path)
        key = (str(run[0]), str(run[1]), int(run[2]), int(run[3]))
        measures[key] = run_measures(read_history(history), read_monitor(monitor), summary) | {
            "machine": summary.get("machine"),
            "device": summary.get("device"),
            "batch_norm": summary.get("batch_norm"),
        }
    rows = claim_rows(measures, accuracy)
    write_json(
        json_path,
        {
            "definition": __doc__,
            "note": NOTE,
            "claims": rows,
            "runs": [
                {"recipe": k[0], "framework": k[1], "sigma": k[2], "seed": k[3], **v}
                for k, v in measures.items()
            ],
        },
    )
    shown = display_rows(rows)
    title = "The port's claims, checked"
    with atomic_open(html_path) as handle:
        handle.write(render_table(title, COLUMNS, shown, [NOTE]))
    with atomic_open(markdown_path) as handle:
        handle.write(render_markdown_table(COLUMNS, shown) + "\n" + NOTE + "\n")
    return rows
