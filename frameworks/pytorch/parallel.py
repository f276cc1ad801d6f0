"""The MNIST CNN data-parallel in PyTorch: DistributedDataParallel, one process per replica.

torchrun starts the processes and hands each its rank (env://). DDP broadcasts rank 0's
weights when it wraps the model and averages the gradients over the replicas during
backward. The model, loss, optimizer and evaluation are mnist.py's own.
"""

from __future__ import annotations

import atexit
import importlib
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common.config import MnistConfig, RunConfig
from common.data import Mnist, batch_order, chunks
from common.parallel import Engine, per_replica, replica_rows
from common.recorder import Recorder
from frameworks.pytorch import mnist

# The process group's Python handle: its last reference once the DDP models are gone, dropped at exit (close()).
HELD: list[dist.ProcessGroup] = []


def setup(cfg: RunConfig, device: str) -> Engine:
    """Join the process group torchrun prepared: gloo between CPU processes, NCCL between CUDA GPUs."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    # torch.distributed.nn.functional binds group.WORLD as its functions' default argument when it is first
    # imported, which DDP does (through torch.distributed._shard): imported after init_process_group it would hold
    # the group into Python's finalization (close() says why that must not happen). Imported before, it holds None.
    importlib.import_module("torch.distributed.nn.functional")
    dist.init_process_group(backend)  # env://: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from torchrun
    HELD.append(dist.group.WORLD)  # the group's last reference, dropped at exit (close())
    atexit.register(HELD.clear)
    par = cfg.parallel
    launcher = "torchrun --standalone" if par.processes is None else f"torchrun --nnodes {par.processes}"
    return Engine(
        engine="DistributedDataParallel",
        collective_backend=backend,
        launcher=launcher,
        devices=par.devices,
        processes=dist.get_world_size(),
        per_replica_batch=per_replica(cfg.mnist.batch_size, par.devices),
        rank=dist.get_rank(),
    )


def shard(engine: Engine, images: np.ndarray, labels: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's replica's rows of a global batch, on its device."""
    rows = replica_rows(len(labels), engine.devices, engine.rank)
    return mnist.to_device(images[rows], labels[rows], device)


def create_model(
    engine: Engine, cfg: MnistConfig, params: dict[str, np.ndarray] | None, device: str, seed: int = 0
) -> tuple[DistributedDataParallel, torch.optim.Optimizer]:
    """mnist.py's Net and optimizer, the Net wrapped in DDP (which broadcasts rank 0's weights)."""
    net = mnist.create_model(cfg, params, device, seed)
    device_ids = [torch.cuda.current_device()] if device.startswith("cuda") else None  # CPU modules take none
    model = DistributedDataParallel(net, device_ids=device_ids)
    return model, mnist.make_optimizer(cfg, model)


def train_step(
    model: DistributedDataParallel, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One step on the global batch, this replica holding its rows; returns the global batch's loss."""
    # Forward pass
    loss, _ = mnist.loss_fn(model, x, y)  # the mean over this replica's rows
    # Compute gradients
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # DDP all-reduces the gradients bucket by bucket and divides them by the world size
    # Update weights
    optimizer.step()
    loss = loss.detach()
    dist.all_reduce(loss)  # the sum of the replicas' means, for the record
    return loss / dist.get_world_size()


def gradients(model: DistributedDataParallel, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """The averaged gradients DDP hands the optimizer at the current weights (canonical names), no update."""
    loss, _ = mnist.loss_fn(model, x, y)
    model.zero_grad(set_to_none=True)
    loss.backward()  # through DDP's hooks: torch.autograd.grad would bypass its all-reduce
    return {name: p.grad.cpu().numpy() for name, p in model.module.named_parameters()}


def get_params(model: DistributedDataParallel | torch.nn.Module) -> dict[str, np.ndarray]:
    """Canonical weights of this replica (a DDP model) or of a single-device Net."""
    return mnist.get_params(model.module if isinstance(model, DistributedDataParallel) else model)


def train(
    cfg: RunConfig,
    engine: Engine,
    model: DistributedDataParallel,
    optimizer: torch.optim.Optimizer,
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
                recorder.batch(idx, mnist.hyperparameters(optimizer))  # what this step trains on, and with what
                x, y = shard(engine, data.train_images[idx], data.train_labels[idx], device)
                losses.append(train_step(model, optimizer, x, y))
            recorder.steps(torch.stack(losses).cpu().numpy())  # one host read per chunk
        seconds = time.perf_counter() - start
        if chief:
            recorder.epoch(seconds, mnist.predict(model.module, x_test, m.eval_batch_size))


def close(engine: Engine) -> None:
    """Every rank meets once more, after rank 0 has written what it records, then all leave the group.

    Why a replica aborted now and then (issue 29: "terminate called without an active exception",
    SIGABRT, 4 of 36 float64 runs on a 2-core EPYC): after a collective's result is handed back, one
    of gloo's worker threads still holds the finished work, and releasing its tensors (the step's
    loss is a Python tensor) takes the GIL. The group ends when its last reference goes, and that
    was torch.distributed.nn.functional's default arguments (setup()), dropped during Python's
    finalization: a worker thread still waiting for the GIL then is ended by Python mid-destructor,
    and C++ calls std::terminate. Were a DDP Reducer the last reference instead, its destructor,
    run with the GIL held, would wait for that thread forever (seen here once in 8 runs). So the
    last reference is HELD, a Python handle whose destructor releases the GIL, dropped at exit
    while Python is still whole (atexit), after the worker has dropped its DDP models; and the
    ranks leave together, as TensorFlow's and JAX's engines do.
    """
    dist.barrier()
    dist.destroy_process_group()
