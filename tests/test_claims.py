"""The port's claims page: the fluctuation statistic on curves with a known answer, the paired
test and its verdicts, and the table written from a results tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_results import write_results_tree

from n2v_repro.report import claims


def test_fluctuation_recovers_the_noise_around_any_straight_or_smooth_curve() -> None:
    rng = np.random.default_rng(0)
    epochs = np.arange(4000, dtype=np.float64)
    sd = 0.3
    line = 20.0 + 0.01 * epochs
    assert claims.fluctuation(line) == pytest.approx(0.0, abs=1e-9)  # a trend is not noise
    assert claims.fluctuation(line + rng.normal(0, sd, epochs.size)) == pytest.approx(sd, rel=0.05)
    # A saturating learning curve: its second half is smooth, so only the noise counts.
    curve = 27.0 - 5.0 * np.exp(-epochs / 300.0)
    assert claims.fluctuation(curve) < 1e-4
    assert claims.fluctuation(curve + rng.normal(0, sd, epochs.size)) == pytest.approx(sd, rel=0.05)
    # Epochs alternating +-d around a plateau: each residual is 2d, so 2d / sqrt(1.5).
    alternating = 25.0 + 0.1 * (-1.0) ** epochs[:40]
    assert claims.fluctuation(alternating) == pytest.approx(0.2 / np.sqrt(1.5))
    # Only the second half counts: a wild start changes nothing.
    start = np.concatenate([rng.normal(0, 5, 20), alternating[20:]])
    assert claims.fluctuation(start) == pytest.approx(claims.fluctuation(alternating))
    assert np.isnan(claims.fluctuation([1.0, 2.0, 3.0, 4.0]))  # 2 epochs in the second half


def test_the_paired_test_and_its_verdicts() -> None:
    torch = [1.0, 1.1, 0.9, 1.05]
    larger = claims.paired_test([2.1, 2.2, 1.9, 2.0], torch, ratio=True)
    assert larger["ratio"] == pytest.approx(2.0, rel=0.05) and larger["seeds"] == 4
    assert larger["p_larger"] < 0.01 and larger["p_smaller"] > 0.99
    assert claims.directional_verdict(larger, larger=True) == claims.CONFIRMED
    assert claims.directional_verdict(larger, larger=False) == claims.REFUTED
    mixed = claims.paired_test([1.2, 0.9, 1.0, 1.0], torch, ratio=True)
    assert claims.directional_verdict(mixed, larger=True) == claims.NOT_SUPPORTED
    one = claims.paired_test([2.0], [1.0], ratio=True)
    assert one["ratio"] == 2.0 and "no test" in claims.directional_verdict(one, larger=True)
    # Shares are compared by their difference: a zero share is a value, not a gap.
    shares = claims.paired_test([0.2, 0.3, 0.25], [0.0, 0.0, 0.0], ratio=False)
    assert shares["difference"] == pytest.approx(0.25) and shares["p_larger"] < 0.05
    assert claims.accuracy_verdicts(0.02, 0.01) == (claims.CONFIRMED, claims.NOT_SUPPORTED)
    assert claims.accuracy_verdicts(0.3, 0.001) == (claims.REFUTED, claims.CONFIRMED)
    assert claims.accuracy_verdicts(-0.3, 0.001) == (claims.REFUTED, claims.REFUTED)
    assert claims.accuracy_verdicts(0.3, 0.2) == (claims.NOT_SUPPORTED, claims.NOT_SUPPORTED)


def run_measures(fluctuation: float, epoch_s: float, seed: int) -> dict[str, float | str]:
    jitter = 1 + 0.01 * seed
    return {"b_psnr": fluctuation * jitter, "b_ssim": fluctuation * jitter / 100,
            "c1": epoch_s * jitter, "c2": 0.05 * jitter, "d": 400.0 * jitter, "e1": 0.9,
            "e2": 0.01 * seed, "machine": "test CPU", "device": "cpu"}  # fmt: skip


def test_each_claim_gets_a_row_per_jittor_and_stock_meets_exact_on_the_curves() -> None:
    runs = {}
    for seed in (1, 2, 3):
        runs[("cpu", "torch", 25, seed)] = run_measures(0.1, 10.0, seed)
        runs[("cpu", "jittor", 25, seed)] = run_measures(0.3, 8.0, seed)
        runs[("cpu", "jittor-exactbn", 25, seed)] = run_measures(0.1, 12.0, seed)
    accuracy = [
        {"recipe": "cpu", "sigma": 25, "framework": fw, "weights": "last", "test_set": "bsd68",
         "validation": "heldout_train", "psnr_mean": 27.0 + d, "jittor_minus_torch_psnr": d,
         "p_value": 0.5, "seeds": 3}
        for fw, d in (("jittor", 0.01), ("jittor-exactbn", 0.02))
    ]  # fmt: skip
    rows = claims.claim_rows(runs, accuracy)
    verdicts = {(r["jittor"], r["against"], r["claim"]): r["verdict"] for r in rows}
    assert verdicts[("jittor", "torch", "b_psnr")] == claims.CONFIRMED
    assert verdicts[("jittor-exactbn", "torch", "b_psnr")] == claims.NOT_SUPPORTED
    # Stock against exact BN: the fluctuation comes with stock batch norm here.
    assert verdicts[("jittor", "jittor-exactbn", "b_psnr")] == claims.CONFIRMED
    assert verdicts[("jittor", "torch", "c1")] == claims.CONFIRMED  # shorter epochs
    assert verdicts[("jittor-exactbn", "torch", "c1")] == claims.REFUTED
    assert verdicts[("jittor", "torch", "a1")] == claims.CONFIRMED
    # Every claim for each Jittor against PyTorch; only the curves for stock against exact.
    assert {c for j, a, c in verdicts if a == "torch"} == set(claims.CLAIMS)
    assert {c for j, a, c in verdicts if a == "jittor-exactbn"} == {"b_psnr", "b_ssim"}
    gpu = {r["claim"]: r["gpu"] for r in rows if r["against"] == "torch"}
    assert gpu["d"] == gpu["e1"] == claims.NO_GPU and gpu["b_psnr"] == ""


def test_the_table_is_written_from_a_results_tree(tmp_path) -> None:
    """The rule's function on the fake pipeline's files: every claim, each page."""
    from n2v_repro.io.formats import read_history
    from n2v_repro.paths import EVAL_DIR, MODEL_DIR, run_path
    from n2v_repro.report.tables import pair_runs, psnr_ssim_rows, read_per_images

    runs = write_results_tree(tmp_path, ["1", "2", "3", "4"], 2, seeds=(1, 2))
    model = [tmp_path / run_path(MODEL_DIR, *run) for run in runs]
    for folder in model:  # the fake tree has no training summaries
        (folder / "train_summary.json").write_text(
            json.dumps(
                {
                    "framework": "x",
                    "machine": "test CPU",
                    "device": "cpu",
                    "threads": 2,
                    "peak_rss_mib": 300.0,
                    "batch_norm": None,
                }
            )  # fmt: skip
        )
    evals = [tmp_path / run_path(EVAL_DIR, *run) for run in runs]
    accuracy = psnr_ssim_rows(
        {
            run: json.loads((e / "summary.json").read_text())
            for run, e in zip(runs, evals, strict=True)
        },
        read_per_images(pair_runs(runs, [e / "per_image.csv" for e in evals])),
    )
    out = {ext: tmp_path / f"port_claims.{ext}" for ext in ("json", "html", "md")}
    rows = claims.write_claims(
        runs=runs, histories=[str(f / "history.csv") for f in model],
        monitors=[str(f / "monitor.csv") for f in model],
        train_summaries=[str(f / "train_summary.json") for f in model], accuracy=accuracy,
        json_path=out["json"], html_path=out["html"], markdown_path=out["md"],
    )  # fmt: skip
    assert {r["claim"] for r in rows} == set(claims.CLAIMS)
    assert read_history(model[0] / "history.csv")["valid_psnr"].size >= 3
    written = json.loads(out["json"].read_text())
    assert len(written["runs"]) == len(runs) and written["claims"] == json.loads(json.dumps(rows))
    for ext in ("html", "md"):
        text = out[ext].read_text()
        assert "Jittor denoises on par with PyTorch" in text and "test CPU" in text
        assert claims.NO_GPU in text
