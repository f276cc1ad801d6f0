"""The MNIST CNN data-parallel in JAX: a device mesh, the batch sharded along its data axis.

The parameters and optimizer state are replicated on every device and each batch is split
along the mesh's "data" axis (NamedSharding); mnist.py's step, compiled by nnx.jit for these
shardings, is the global-batch program, and XLA inserts the all-reduce of the gradients. In
the multi-process form (jax.distributed) the mesh spans every process's devices.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from common.config import MnistConfig, RunConfig
from common.data import Mnist, batch_order, chunks
from common.errors import UserError
from common.layout import from_nhwc
from common.parallel import Engine, per_replica
from common.recorder import Recorder
from frameworks.jax import mnist


def setup(cfg: RunConfig, device: str) -> Engine:
    """A one-axis mesh over N devices (runtime.configure made them, and joined the processes)."""
    par = cfg.parallel
    devices = jax.devices()[: par.devices]  # every process's devices, in the multi-process form
    if len(devices) < par.devices:
        raise UserError(f"--devices {par.devices}: JAX sees {len(devices)} {jax.default_backend().upper()} devices")
    # Auto axes: the sharding of each intermediate is left to XLA (GSPMD), which inserts the collectives.
    mesh = jax.make_mesh((par.devices,), ("data",), axis_types=(AxisType.Auto,), devices=devices)
    if device.startswith("gpu"):
        backend = "NCCL"
    elif par.processes:
        backend = jax.config.jax_cpu_collectives_implementation  # between processes on CPUs: gloo
    else:
        backend = "XLA CPU (in-process)"
    return Engine(
        engine="jax.sharding (NamedSharding, nnx.jit)",
        collective_backend=backend,
        launcher="one process" if par.processes is None else f"{par.processes} processes (jax.distributed)",
        devices=par.devices,
        processes=par.processes or 1,
        per_replica_batch=per_replica(cfg.mnist.batch_size, par.devices),
        rank=jax.process_index(),
        handle=mesh,
    )


def shard(engine: Engine, images: np.ndarray, labels: np.ndarray, device: str) -> tuple[jax.Array, jax.Array]:
    """A global batch as arrays split along the mesh's data axis: each device holds its replica's rows."""
    rows = NamedSharding(engine.handle, PartitionSpec("data"))
    x = images[..., np.newaxis]  # NHWC: the channel axis comes last
    # Each process fills only the pieces on its own devices (every process holds the whole data).
    return tuple(jax.make_array_from_callback(a.shape, rows, lambda index, a=a: a[index]) for a in (x, labels))


def create_model(
    engine: Engine, cfg: MnistConfig, params: dict[str, np.ndarray] | None, device: str, seed: int = 0
) -> tuple[mnist.Net, nnx.Optimizer]:
    """mnist.py's Net and optimizer, every parameter and optimizer slot whole on every device."""
    model = mnist.create_model(cfg, params, device, seed)
    optimizer = mnist.make_optimizer(cfg, model)
    state = nnx.state((model, optimizer))
    nnx.update((model, optimizer), jax.device_put(state, NamedSharding(engine.handle, PartitionSpec())))
    return model, optimizer


@nnx.jit  # compiled for the shardings of its arguments: replicated weights, a batch split over the mesh
def train_step(model: mnist.Net, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    """One step on the global batch, each device holding its rows; returns the global batch's loss."""
    # Forward pass
    # Compute gradients (of the global mean: XLA all-reduces the replicas' partial sums)
    (loss, _), grads = nnx.value_and_grad(mnist.loss_fn, has_aux=True)(model, x, y)
    # Update weights
    optimizer.update(model, grads)
    return loss


def gradients(model: mnist.Net, x: jax.Array, y: jax.Array) -> dict[str, np.ndarray]:
    """The gradients the optimizer would apply at the current weights (canonical names), no update."""
    (_, _), grads = nnx.jit(nnx.value_and_grad(mnist.loss_fn, has_aux=True))(model, x, y)
    return canonical(grads)


def local(array: jax.Array) -> np.ndarray:
    """This process's copy of a replicated array (the whole array may span other processes' devices)."""
    return np.asarray(array.addressable_data(0))


def canonical(tree: nnx.Module | nnx.State) -> dict[str, np.ndarray]:
    """Canonical arrays from a Net or a gradient state of the same structure (this process's copies)."""
    layers = {name: (tree[name]["kernel"], tree[name]["bias"]) for name in mnist.LAYERS}
    return from_nhwc({name: (local(k.get_value()), local(b.get_value())) for name, (k, b) in layers.items()})


def get_params(model: mnist.Net) -> dict[str, np.ndarray]:
    return canonical(nnx.state(model))


def train(
    cfg: RunConfig,
    engine: Engine,
    model: mnist.Net,
    optimizer: nnx.Optimizer,
    data: Mnist,
    recorder: Recorder,
    device: str,
) -> None:
    """mnist.train's loop over the shared batch order; every replica takes its rows, rank 0 scores the test set."""
    m = cfg.mnist
    chief = engine.rank == 0  # the weights are the same in every replica: one scores the test set
    x_test, _ = mnist.to_device(data.test_images, data.test_labels, device) if chief else (None, None)
    for epoch in range(m.epochs):
        order = batch_order(len(data.train_labels), m.batch_size, cfg.seed, epoch)
        start = time.perf_counter()
        for chunk in chunks(order, m.log_every):
            losses = []
            for idx in chunk:
                settings = jax.tree.map(lambda v: v.addressable_data(0), mnist.hyperparameters(optimizer))
                recorder.batch(idx, settings)  # what this step trains on, and with what (this process's copies)
                x, y = shard(engine, data.train_images[idx], data.train_labels[idx], device)
                losses.append(train_step(model, optimizer, x, y))
            recorder.steps(np.array([local(loss) for loss in losses]))  # one host read per chunk
        seconds = time.perf_counter() - start
        if chief:  # a single-device copy: the mesh may span other processes, which do not evaluate
            single = mnist.create_model(m, get_params(model), device)
            recorder.epoch(seconds, mnist.predict(single, x_test, m.eval_batch_size))


def close(engine: Engine) -> None:
    """Leave the process group (the multi-process form): every process, once rank 0 has written what it records."""
    if engine.processes > 1:
        jax.distributed.shutdown()
