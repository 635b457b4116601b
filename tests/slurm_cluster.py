"""A one-node Slurm cluster on localhost for the sweep test: munged, slurmctld and slurmd as child processes
with a minimal slurm.conf in a temporary folder (free ports, no cgroups, no accounting), all stopped at
the end, job steps they left behind included."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun", "scancel")


def cannot_run_here() -> str | None:
    """Why no single-node Slurm can start on this machine, or None."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        return f"Slurm is not installed (no {', '.join(missing)}): apt-get install -y slurm-wlm munge"
    if os.geteuid() != 0:
        return "a single-node Slurm needs root here (slurmd runs each job as its user)"
    return None


def wait_for(condition, seconds: float, what: str, logs: list[Path]):
    """Poll `condition` until it returns something true; fail with the daemons' log tails if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"{log}: {log.read_text()[-800:]}" for log in logs if log.is_file())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _slurm_conf(root: Path) -> str:
    """A one-node cluster on this host: root runs everything, no cgroups, no accounting."""
    host = socket.gethostname()
    lines = {
        "ClusterName": "etbench",
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": _free_port(),
        "SlurmdPort": _free_port(),
        "SlurmUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={root}/munge.socket",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "slurmctld.log",
        "SlurmdLogFile": root / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "MpiDefault": "none",
        "ReturnToService": 2,
        "NodeName": f"{host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName": f"debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


@dataclass(frozen=True)
class Cluster:
    conf: Path
    logs: list[Path]


@contextlib.contextmanager
def single_node_cluster(root: Path) -> Iterator[Cluster]:
    """Start the daemons, wait for the node to be idle; at the end wait for the queue to empty, stop them."""
    for folder in ("state", "spool"):
        (root / folder).mkdir(parents=True)
    (root / "munge.key").write_bytes(os.urandom(1024))
    (root / "munge.key").chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = [f"--socket={root}/munge.socket", f"--key-file={root}/munge.key", f"--pid-file={root}/munged.pid"]
    munge += [f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"]
    commands = [["munged", "-F", "-f", *munge], ["slurmctld", "-D", "-c", "-i"], ["slurmd", "-D"]]
    logs = [root / name for name in ("munged.log", "slurmctld.log", "slurmd.log")]
    ask = lambda *command: subprocess.run(command, capture_output=True, text=True, env=env).stdout  # noqa: E731
    daemons = []
    try:
        for command in commands:
            daemons.append(
                subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            )
            time.sleep(1)
        wait_for(lambda: "idle" in ask("sinfo", "-h", "-o", "%t"), 60, "the node to come up idle", logs)
        yield Cluster(conf, logs)
        wait_for(lambda: not ask("squeue", "-h").strip(), 60, "the finished jobs to leave the queue", logs)
    finally:
        ask("scancel", "--full", "--partition=debug")
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        _kill_leftovers(f"SLURM_CONF={conf}")


def _kill_leftovers(marker: str) -> None:
    """Kill what the daemons started and left behind (job steps): processes whose environment holds
    `marker` (the test's own SLURM_CONF, which they inherited), except this test process."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environment = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environment and int(proc.name) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), 9)
