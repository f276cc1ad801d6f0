"""The processes that run one framework, started the way each engine's own launcher starts them.

One process per framework on one device. With --devices N (data-parallel):

- PyTorch: torchrun (`python -m torch.distributed.run`) starts one process per replica and
  hands each its rank through the env:// variables (RANK, WORLD_SIZE, MASTER_ADDR, ...);
  `--standalone` on one machine, or P torchrun "nodes" with a static rendezvous.
- TensorFlow: one process (MirroredStrategy) or P workers, each told the cluster and its own
  index by TF_CONFIG (MultiWorkerMirroredStrategy).
- JAX: one process, or P processes that meet at JAX_COORDINATOR_ADDRESS (jax.distributed).

Every address is 127.0.0.1 with a port picked free for this run; across real machines the same
commands take the machines' addresses instead (docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field

from common.config import RunConfig
from common.environment import gpu_info
from common.parallel import PROCESS_ID

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Member:
    """One process to start: its command, what it adds to the environment, and its rank (None: the only one)."""

    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    rank: int | None = None


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on the loopback, all held until all are picked so they differ.

    Small race, as with every such pick: another program may take a port between its release
    here and the engine binding it; the run then fails to connect and says so.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def members(framework: str, cfg: RunConfig, worker: list[str], gpus: list[str] | None = None) -> list[Member]:
    """The processes of one framework's run; `worker` is the worker module and its arguments.

    `gpus`: the GPU ids a data-parallel run may use (None on a CPU); P processes on one machine
    get one slice each, as P machines would each have their own.
    """
    par = cfg.parallel
    python = [sys.executable, "-m"]
    if not par.enabled:
        return [Member([*python, *worker])]
    if framework == "pytorch":
        return torchrun(cfg, worker, gpus)
    if par.processes is None:
        return [Member([*python, *worker])]  # MirroredStrategy / one JAX process drive every device
    group = []
    if framework == "tensorflow":
        cluster = {"worker": [f"{LOOPBACK}:{port}" for port in free_ports(par.processes)]}
        for i in range(par.processes):
            tf_config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
            group.append(Member([*python, *worker], {"TF_CONFIG": json.dumps(tf_config), PROCESS_ID: str(i)}, i))
    else:
        [port] = free_ports(1)
        for i in range(par.processes):
            env = {"JAX_COORDINATOR_ADDRESS": f"{LOOPBACK}:{port}", PROCESS_ID: str(i)}
            group.append(Member([*python, *worker], env, i))
    return [with_gpus(m, gpus, par.local_devices) for m in group]


def ranked(framework: str, cfg: RunConfig) -> bool:
    """Whether the run has several processes holding replicas, so that a failure names a rank."""
    return cfg.parallel.enabled and (framework == "pytorch" or cfg.parallel.processes is not None)


def torchrun(cfg: RunConfig, worker: list[str], gpus: list[str] | None) -> list[Member]:
    """torchrun, one process per replica: --standalone, or P nodes meeting at a static rendezvous."""
    par = cfg.parallel
    # torchrun's per-rank log directories go with the run (by default it leaves one in /tmp per run).
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--log-dir={cfg.out_dir / 'logs' / 'torchrun'}"]
    # torchrun would set OMP_NUM_THREADS=1 itself (with a banner): one thread per replica.
    env = {"OMP_NUM_THREADS": str(cfg.threads or 1)}
    if par.processes is None:
        return [Member([*launcher, "--standalone", f"--nproc-per-node={par.devices}", "-m", *worker], env)]
    [port] = free_ports(1)
    nodes = []
    for i in range(par.processes):
        node = [f"--nnodes={par.processes}", f"--node-rank={i}", f"--nproc-per-node={par.local_devices}"]
        rendezvous = [f"--master-addr={LOOPBACK}", f"--master-port={port}"]
        nodes.append(Member([*launcher, *node, *rendezvous, "-m", *worker], env, i))  # ranks get RANK
    return [with_gpus(m, gpus, par.local_devices) for m in nodes]


def with_gpus(member: Member, gpus: list[str] | None, per_process: int) -> Member:
    """Process i sees GPUs [i*k, (i+1)*k) only, like a machine with k GPUs of its own."""
    if not gpus or member.rank is None:
        return member
    mine = gpus[member.rank * per_process : (member.rank + 1) * per_process]
    return Member(member.cmd, {**member.env, "CUDA_VISIBLE_DEVICES": ",".join(mine)}, member.rank)


# torchrun's failure summary (torch.distributed.elastic ChildFailedError), one block per failed rank:
#   rank      : 1 (local_rank: 1)
#   exitcode  : -9 (pid: 2467)
TORCHRUN_FAILURE = re.compile(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")


def torchrun_failures(text: str) -> list[tuple[int, int]]:
    """(rank, exit code) of each rank torchrun reports failed, its root cause first."""
    head, _, root = text.rpartition("Root Cause")
    if not head:
        head, root = text, ""
    found = [(int(r), int(c)) for r, c in TORCHRUN_FAILURE.findall(root)]
    return found + [f for f in ((int(r), int(c)) for r, c in TORCHRUN_FAILURE.findall(head)) if f not in found]


def visible_gpus() -> list[str]:
    """GPU ids a process started from here may use: CUDA_VISIBLE_DEVICES, else each one nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(len(gpu_info()))]
