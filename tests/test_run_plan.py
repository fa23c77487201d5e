"""run.sh's plan: the CPU reproduction by default without a GPU, and its training-time estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from n2v_repro.cli import run_plan
from n2v_repro.config import PipelineConfig, load_config
from n2v_repro.io.machine import machine_name

CPU = "config/cpu.yaml"


@pytest.mark.parametrize(
    ("user_args", "expected"),
    [
        ([], ["--configfile", CPU]),
        (["-n"], ["-n", "--configfile", CPU]),
        (
            ["--configfile", "a.yaml", "b.yaml", "-n"],
            ["--configfile", CPU, "a.yaml", "b.yaml", "-n"],
        ),
        (["--cores", "2", "--configfile=a.yaml"], ["--cores", "2", "--configfile", CPU, "a.yaml"]),
        (["--configfiles", "a.yaml"], ["--configfile", CPU, "a.yaml"]),
        # Repeated flags (Snakemake would keep only the last) become one, in order.
        (
            ["--configfile", "a.yaml", "--cores", "2", "--configfile", "b.yaml", "-n"],
            ["--configfile", CPU, "a.yaml", "b.yaml", "--cores", "2", "-n"],
        ),
    ],
)
def test_cpu_run_puts_the_cpu_config_under_the_users_files(
    user_args: list[str], expected: list[str]
) -> None:
    args = run_plan.snakemake_arguments(user_args, cpu_run=True)
    assert args == expected
    # Snakemake merges them left to right: the user's files come after config/cpu.yaml
    files = [str(p) for p in run_plan.config_files(args)]
    assert files[0].endswith("config/config.yaml") and files[1] == CPU


def test_full_run_keeps_the_arguments_and_drops_the_flag() -> None:
    args = run_plan.snakemake_arguments(["--full", "--cores", "8"], cpu_run=False)
    assert args == ["--cores", "8"]


def test_every_config_file_of_repeated_flags_is_merged() -> None:
    args = run_plan.snakemake_arguments(
        ["--configfile=a.yaml", "--configfile", "b.yaml", "c.yaml", "-n"], cpu_run=False
    )
    assert args == ["--configfile", "a.yaml", "b.yaml", "c.yaml", "-n"]
    assert [p.name for p in run_plan.config_files(args)] == [
        "config.yaml", "a.yaml", "b.yaml", "c.yaml"
    ]  # fmt: skip


def write_rates(path: Path, rates: dict[tuple[str, str], float]) -> Path:
    """bench.json: this CPU's rates, and a CUDA record that a CPU estimate must not use."""
    run = {"status": "ok", "device": "cpu", "batch_size": 16}
    records = [
        {"framework": f, "arch": a, "patches_per_s": r, **run, "machine": "Test CPU (2 CPUs)"}
        for (f, a), r in rates.items()
    ]
    cuda = {**run, "device": "cuda"}
    records.append({"framework": "torch", "arch": "n2v_unet32", "patches_per_s": 1e6, **cuda})
    path.write_text(json.dumps(records))
    return path


def test_estimate_is_patches_over_the_measured_rate(tmp_path: Path) -> None:
    config = PipelineConfig.from_mapping(load_config(run_plan.DEFAULT_CONFIG, run_plan.CPU_CONFIG))
    rates, machine = run_plan.read_rates(
        write_rates(
            tmp_path / "bench.json",
            {("torch", "n2v_unet32"): 100.0, ("jittor", "n2v_unet32"): 50.0},
        )
    )
    assert machine == "Test CPU (2 CPUs)" and rates[("torch", "n2v_unet32", 16)] == 100.0
    jobs = run_plan.training_jobs(config, rates)
    train = config.recipe("cpu").train
    patches = train.epochs * train.steps_per_epoch * train.batch_size
    assert [(j.framework, j.sigma, j.patches) for j in jobs] == [
        ("torch", 25, patches),
        ("jittor", 25, patches),
    ]
    assert [j.seconds for j in jobs] == [pytest.approx(patches / 100), pytest.approx(patches / 50)]
    lines = run_plan.describe(config, jobs, machine, cpu_run=True, on_gpu=False)
    text = " ".join(lines)
    assert "no GPU found" in text and "bash run.sh --full" in text
    assert run_plan.format_duration(patches / 100 + patches / 50) in text
    assert "Test CPU (2 CPUs)" in text


def test_no_estimate_without_a_rate_or_on_a_gpu(tmp_path: Path) -> None:
    config = PipelineConfig.from_mapping(load_config(run_plan.DEFAULT_CONFIG))
    jobs = run_plan.training_jobs(config, {})
    assert all(job.seconds is None for job in jobs) and len(jobs) == 8
    text = " ".join(run_plan.describe(config, jobs, "x", cpu_run=False, on_gpu=False))
    assert "No measured CPU rate" in text and "ETA" in text
    gpu = run_plan.describe(config, jobs, "x", cpu_run=False, on_gpu=True)
    assert gpu == [gpu[0]] and gpu[0].startswith("GPU found")


def test_the_claims_config_plans_the_pipelines_runs() -> None:
    """No exact-BN job for the port's U-Net (no batch norm: the stock model), as common.smk."""
    claims = run_plan.REPO_ROOT / "config" / "port-claims-cpu.yaml"
    config = PipelineConfig.from_mapping(
        load_config(run_plan.DEFAULT_CONFIG, run_plan.CPU_CONFIG, claims)
    )
    jobs = run_plan.training_jobs(config, {})
    frameworks = {(j.recipe, j.framework) for j in jobs}
    assert len(jobs) == 15 and ("port_cpu", "jittor-exactbn") not in frameworks
    assert ("cpu_short", "jittor-exactbn") in frameworks


def test_the_plan_counts_the_reference_trainings_it_does_not_estimate() -> None:
    references = run_plan.REPO_ROOT / "config" / "references-cpu.yaml"
    config = PipelineConfig.from_mapping(
        load_config(run_plan.DEFAULT_CONFIG, run_plan.CPU_CONFIG, references)
    )
    jobs = run_plan.training_jobs(config, {})
    text = " ".join(run_plan.describe(config, jobs, "x", cpu_run=True, on_gpu=False))
    assert len(jobs) == 2 and config.reference_recipes == ("cpu",)
    assert "2 reference training job(s) (juglab_n2v, careamics" in text


def test_main_prints_arguments_and_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run_plan, "cuda_driver_available", lambda: False)
    measured = write_rates(tmp_path / "bench.json", {})
    assert run_plan.main(["--measured", str(measured), "--", "-n"]) == 0
    out, err = capsys.readouterr()
    assert out.split("\0")[:-1] == ["-n", "--configfile", CPU]
    assert "no GPU found" in err
    assert run_plan.main(["--measured", str(measured), "--", "--full", "-n"]) == 0
    out, err = capsys.readouterr()
    assert out.split("\0")[:-1] == ["-n"] and "no GPU found" not in err
    assert run_plan.main(["--measured", str(measured), "--", "--config", "sigmas=[50]"]) == 0
    assert "--config values apply on top" in capsys.readouterr().err


def test_bad_config_file_is_named_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sigmas: [abc]\n")
    with pytest.raises(run_plan.UserError, match="sigmas"):
        run_plan.main(["--", "--configfile", str(bad)])


def test_calibration_measures_this_machines_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The estimate's rates come from training steps run here, not from another CPU's file."""
    monkeypatch.setattr(run_plan, "CALIBRATION_SECONDS", 0.5)  # a rate, not a good one
    monkeypatch.setattr(run_plan, "CALIBRATION_WARMUP", 1)
    torch_only = tmp_path / "torch.yaml"  # batches of 2: the bench times at least 20 steps
    torch_only.write_text("frameworks: [torch]\nrecipe_book: {cpu: {batch_size: 2}}\n")
    config = PipelineConfig.from_mapping(
        load_config(run_plan.DEFAULT_CONFIG, run_plan.CPU_CONFIG, torch_only)
    )
    rates, machine = run_plan.read_rates(run_plan.calibrate(config, tmp_path / "calibration.json"))
    train = config.recipe("cpu").train
    assert rates[("torch", train.arch, train.batch_size)] > 0
    assert machine == machine_name()
