"""What data-parallel training shares across the three engines: the split, the reference batches, the record.

Each engine (DistributedDataParallel, tf.distribute, jax.sharding) communicates and launches
on its own; this module only fixes the numbers they must agree on, so that N replicas see
exactly the examples one device would: replica r of N takes rows [r*b, (r+1)*b) of each
global batch of b*N rows (the contiguous split jax.sharding makes along a data axis).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.data import batch_order

# Set by common.run.cluster on the TensorFlow workers and JAX processes it starts; torchrun gives
# the processes it starts RANK.
PROCESS_ID = "TRIPTYCH_PROCESS_ID"


@dataclass(frozen=True)
class Engine:
    """One framework's data-parallel set-up, as results.json records it, and this process's rank."""

    engine: str  # "DistributedDataParallel", "MirroredStrategy", ...
    collective_backend: str  # what carries the all-reduce: gloo, NCCL, TensorFlow's RING collectives, ...
    launcher: str  # who started the processes
    devices: int
    processes: int  # operating-system processes holding replicas
    per_replica_batch: int
    rank: int = 0  # this process's rank in its engine; rank 0 writes the result
    handle: Any = field(default=None, compare=False, repr=False)  # the strategy or mesh, for the framework's code

    def record(self) -> dict[str, Any]:
        """The fields every data-parallel run adds to its results.json entry."""
        return {
            "devices": self.devices,
            "processes": self.processes,
            "engine": self.engine,
            "collective_backend": self.collective_backend,
            "launcher": self.launcher,
            "per_replica_batch": self.per_replica_batch,
        }


def process_rank() -> int:
    """This process's rank as its launcher gave it (torchrun's RANK, else ours); 0 for a single process."""
    return int(os.environ.get("RANK") or os.environ.get(PROCESS_ID) or 0)


def per_replica(batch_size: int, replicas: int) -> int:
    """Examples per replica; compare.py refuses a global batch that does not split evenly."""
    if batch_size % replicas:
        raise ValueError(f"batch {batch_size} does not split over {replicas} replicas")
    return batch_size // replicas


def replica_rows(batch_size: int, replicas: int, replica: int) -> slice:
    """The rows of a global batch that replica `replica` of `replicas` trains on."""
    b = per_replica(batch_size, replicas)
    return slice(replica * b, (replica + 1) * b)


def first_batches(n: int, batch_size: int, seed: int, steps: int) -> np.ndarray:
    """(steps, batch_size) positions of a run's first `steps` batches: the shared order, epoch after epoch."""
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    return np.concatenate([batch_order(n, batch_size, seed, epoch) for epoch in range(epochs)])[:steps]


def prefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"prefix/name": array}: the keys of probes/<framework>-parallel.npz."""
    return {f"{prefix}/{name}": np.asarray(value) for name, value in arrays.items()}


def probe_grads(probe: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The canonical gradients out of a framework's mnist.probe result."""
    return {k.removeprefix("grad/"): v for k, v in probe.items() if k.startswith("grad/")}
