"""The SLURM profile run for real, on a one-node cluster started on this machine.

The fixture starts munged, slurmctld and slurmd (Debian's munge and slurm-wlm, which .ci/run
installs) as root, with all their state in a temporary folder, no accounting database
(`accounting_storage/none`, as on a cluster without slurmdbd), and the node's CPUs and memory
as `slurmd -C` reads them from this machine. The test edits a copy of profiles/slurm-cpu the
way its comments tell a user to (the partition, nothing else), then runs the data stage, one
torch training and one evaluation through `--workflow-profile`: every job but the download
must go through sbatch and complete under SLURM, the download must run on the submit host,
and nothing may hang. profiles/slurm differs only in asking GPUs for the framework rules
(this machine has none); tests/test_profiles.py plans every job of both.

Skipped, with the reason, when not root or when the SLURM and munge programs are missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_bsds import make_fake_bsds
from http_mirror import serve_directory
from pipeline_runner import REPO_ROOT, run_snakemake, write_config

from n2v_repro.backends import jittor_env

CPU_PROFILE = REPO_ROOT / "profiles" / "slurm-cpu"
PARTITION = "n2vtest"
SIGMA = 25
TARGET = f"results/port/torch/sigma{SIGMA}/seed1/eval/summary.json"
# Every job the target needs except download_bsds500, a localrule: rule -> number of jobs.
SUBMITTED_RULES = {
    "to_gray_bsd400": 1,
    "to_gray_bsd68": 1,
    "split_bsd68": 1,
    "add_noise": 2,  # one per image set: bsd400 and bsd68
    "patchify": 1,
    "make_init_weights": 1,
    "train_torch": 1,
    "evaluate_torch": 1,
}
# The run takes ~3 min on 2 cores; a job Snakemake never sees finish would keep it going.
RUN_TIMEOUT_S = 420
# Programs the cluster needs; Debian puts the daemons in /usr/sbin.
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def program(name: str) -> str:
    found = shutil.which(name, path=SEARCH_PATH)
    if found is None:
        raise FileNotFoundError(name)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    """A running one-node cluster: its config, partition, and the client PATH to use."""

    root: Path
    conf: Path
    partition: str
    cpus: int
    memory_mb: int
    client_bin: Path

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.client_bin}{os.pathsep}{env['PATH']}"
        return env

    def command(self, *args: str) -> str:
        result = subprocess.run(
            [program(args[0]), *args[1:]],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows (finished ones stay listed MinJobAge, 1 h here)."""
        out = self.command("squeue", "--states=all", "--noheader", "--format=%i|%T|%C|%k")
        fields = ("id", "state", "cpus", "comment")
        return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]

    def logs(self) -> str:
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def node_line(slurmd: str) -> tuple[str, int, int]:
    """`slurmd -C`'s NodeName line (this machine's CPUs, sockets, memory), CPUs, memory MB."""
    out = subprocess.run(
        [slurmd, "-C"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    line = next(row for row in out.splitlines() if row.startswith("NodeName="))
    values = dict(item.split("=", 1) for item in line.split())
    return line, int(values["CPUs"]), int(values["RealMemory"])


def write_slurm_conf(root: Path, node: str, node_name: str) -> Path:
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=n2vtest",
                # slurmd -C names the node by the short host name, which slurmctld expects.
                f"SlurmctldHost={node_name}(127.0.0.1)",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                # No cgroups in a container: track processes by parent, bind nothing.
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                # No slurmdbd: sacct cannot answer, as on clusters without accounting.
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "SchedulerType=sched/builtin",
                "MpiDefault=none",
                "ReturnToService=2",
                # Finished jobs stay in squeue for the checks after the run.
                "MinJobAge=3600",
                f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
                f"PartitionName={PARTITION} Nodes={node_name} Default=YES State=UP",
                "",
            ]
        )
    )
    return conf


def write_client_wrappers(root: Path, conf: Path) -> Path:
    """srun that finds this cluster's config.

    The jobstep plugin drops every SLURM_* variable, SLURM_CONF included, before it calls srun
    inside a job; on a real cluster srun then reads /etc/slurm/slurm.conf (or DNS), which a
    test must not write.
    """
    client_bin = root / "bin"
    client_bin.mkdir()
    wrapper = client_bin / "srun"
    wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{conf}" exec "{program("srun")}" "$@"\n')
    wrapper.chmod(0o755)
    return client_bin


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def cancel_jobs(cluster: Cluster) -> None:
    """Cancel this cluster's jobs and wait for them: their slurmstepd would outlive slurmd."""
    try:
        cluster.command("scancel", f"--partition={cluster.partition}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not any(job["state"] in ("RUNNING", "COMPLETING") for job in cluster.jobs()):
                return
            time.sleep(0.5)
    except (subprocess.SubprocessError, FileNotFoundError):
        pass  # the controller is down already: nothing more to ask it


def wait_until(condition, timeout_s: float, what: str, cluster_logs) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"SLURM test cluster: timed out waiting for {what}\n{cluster_logs()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Cluster]:
    """munged, slurmctld and slurmd on this machine, stopped (jobs cancelled) at teardown."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster runs slurmd, which must run as root")
    try:
        paths = {name: program(name) for name in DAEMONS + CLIENTS}
    except FileNotFoundError as missing:
        pytest.skip(
            f"{missing.args[0]} not found: install Debian's slurm-wlm and munge "
            "(`apt-get install slurm-wlm munge`; .ci/run does)"
        )
    # A short path: munge's socket path must fit a unix socket address.
    root = Path(tempfile.mkdtemp(prefix="n2v-slurm-"))
    for folder in ("munge", "state", "spool", "log"):
        (root / folder).mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node, cpus, memory_mb = node_line(paths["slurmd"])
    node_name = node.split()[0].split("=", 1)[1]
    conf = write_slurm_conf(root, node, node_name)
    cluster = Cluster(root, conf, PARTITION, cpus, memory_mb, write_client_wrappers(root, conf))
    env = cluster.environment()
    processes: list[subprocess.Popen[bytes]] = []

    def start(*command: str, log: str) -> None:
        with open(root / "log" / log, "wb") as output:
            processes.append(
                subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
            )

    try:
        socket_path = root / "munge" / "munge.socket"
        start(
            paths["munged"],
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={socket_path}",
            f"--pid-file={root / 'munge' / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={root / 'munge' / 'munged.seed'}",
            log="munged.out.log",
        )
        wait_until(socket_path.exists, 30, "munged's socket", cluster.logs)
        start(paths["slurmctld"], "-D", "-i", log="slurmctld.out.log")
        start(paths["slurmd"], "-D", "-N", node_name, log="slurmd.out.log")

        def node_idle() -> bool:
            for process in processes:
                if process.poll() is not None:
                    pytest.fail(
                        f"{process.args[0]} exited ({process.returncode})\n{cluster.logs()}"
                    )
            try:
                state = cluster.command("sinfo", "--noheader", "--format=%t")
            except subprocess.CalledProcessError:
                return False
            return state.strip() == "idle"

        wait_until(node_idle, 60, "the node to be idle", cluster.logs)
        yield cluster
    finally:
        try:
            cancel_jobs(cluster)
        finally:
            for process in reversed(processes):
                stop(process)
            shutil.rmtree(root, ignore_errors=True)


def user_profile(folder: Path, partition: str) -> Path:
    """profiles/slurm-cpu with its partition placeholder replaced, as its comments instruct."""
    text = (CPU_PROFILE / "config.yaml").read_text()
    assert text.count('"<cpu-partition>"') == 1
    edited = text.replace('"<cpu-partition>"', f'"{partition}"')
    uncommented = [line for line in edited.splitlines() if not line.lstrip().startswith("#")]
    assert not any("<" in line for line in uncommented), "a placeholder is left to edit"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(edited)
    return folder


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_cpu_profile_runs_jobs_through_sbatch(
    slurm_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_fake_bsds(tmp_path / "fake")
    profile = user_profile(tmp_path / "profile", slurm_cluster.partition)
    largest_request = 8000  # train_torch / evaluate_torch mem_mb in profiles/slurm-cpu
    if slurm_cluster.memory_mb < largest_request:
        pytest.skip(
            f"this machine has {slurm_cluster.memory_mb} MB; profiles/slurm-cpu asks "
            f"{largest_request} MB for training, which SLURM would refuse here"
        )
    for name, value in slurm_cluster.environment().items():
        monkeypatch.setenv(name, value)
    workdir = tmp_path / "work"
    workdir.mkdir()
    extra = [
        "--workflow-profile",
        str(profile),
        # The profile's 8 threads per training need a bigger node than this machine.
        "--max-threads",
        str(slurm_cluster.cpus),
        # The plugin first looks after 40 s and backs off by 10 s: minutes per job level here.
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]
    with serve_directory(fake.images) as mirror:
        config = {
            "frameworks": ["torch"],
            "sigmas": [SIGMA],
            # One run: the port's recipe (the BSD68 split), one seed.
            "recipes": ["port"],
            "seeds": [1],
            "data": fake.data_config(
                [mirror], train_images=None, bsd68_images=None, n_valid=2, patch_size=64
            ),
            "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "valid_tiles": 4},
        }
        configfile = write_config(tmp_path / "config.yaml", config)
        started = time.monotonic()
        try:
            # No --cores: the SLURM executor has no total, and the profile needs none.
            result = run_snakemake(
                workdir, configfile, [TARGET], extra=extra, timeout_s=RUN_TIMEOUT_S, cores=None
            )
        except subprocess.TimeoutExpired as timeout:
            output = timeout.output or ""
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            pytest.fail(
                f"Snakemake still running after {RUN_TIMEOUT_S} s (a hang?); jobs: "
                f"{slurm_cluster.jobs()}\n{output[-6000:]}"
            )
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + slurm_cluster.logs()
    print(f"SLURM run: {elapsed:.0f} s")

    jobs = slurm_cluster.jobs()
    rules = [job["comment"].split("_wildcards_")[0].removeprefix("rule_") for job in jobs]
    counts = {rule: rules.count(rule) for rule in rules}
    assert counts == SUBMITTED_RULES, f"submitted through sbatch: {counts}"
    by_rule = dict(zip(rules, jobs, strict=True))
    assert all(job["state"] == "COMPLETED" for job in jobs), jobs
    # set-threads 8, capped by --max-threads at the node's CPUs: --cpus-per-task follows it.
    assert by_rule["train_torch"]["cpus"] == str(slurm_cluster.cpus), by_rule["train_torch"]
    # The download is a localrule: Snakemake ran it itself, on the submit host.
    assert "localrule download_bsds500:" in result.stdout
    assert (workdir / "resources" / "bsds500" / "val" / f"{fake.bsd68[0]}.jpg").exists()
    assert (workdir / TARGET).exists()


def test_compile_workers_follow_the_slurm_allocation() -> None:
    def workers(cpus: str, **memory: str) -> int:
        return jittor_env.compile_workers({"SLURM_CPUS_PER_TASK": cpus, **memory})

    assert workers("4", SLURM_MEM_PER_NODE="64000") == 4
    # 8 CPUs but 8000 MB: Jittor's 3 GB per compile process leaves room for two.
    assert workers("8", SLURM_MEM_PER_NODE="8000") == 2
    assert workers("4", SLURM_MEM_PER_CPU="4000") == 4
    assert workers("64", SLURM_MEM_PER_NODE="1000000") == 16
    assert 1 <= jittor_env.compile_workers({}) <= len(os.sched_getaffinity(0))


@pytest.mark.jittor
def test_jittor_compiles_with_the_jobs_cpus(tmp_path: Path) -> None:
    """In a 1-CPU job Jittor's compile pool and kernel compiler threads are both 1."""
    if importlib.util.find_spec("jittor") is None:
        pytest.skip("jittor is not installed")
    # Importing Jittor compiles or checks its core through the pool, which sets pool_size.
    code = (
        "import jittor_utils, jittor as jt\n"
        "print(jittor_utils.pool_size, jt.flags.use_parallel_op_compiler)\n"
    )
    prepare = (
        "from n2v_repro.backends.jittor_env import prepare_jittor_env\nprepare_jittor_env('cpu')\n"
    )
    env = dict(os.environ, SLURM_CPUS_PER_TASK="1", SLURM_MEM_PER_NODE="64000")
    env.pop("use_parallel_op_compiler", None)
    result = subprocess.run(
        [sys.executable, "-c", prepare + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["1", "1"], result.stdout
