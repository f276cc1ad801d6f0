"""The MNIST CNN data-parallel in TensorFlow: tf.distribute, a custom loop with strategy.run.

MirroredStrategy runs one replica per device of this process (logical CPUs, or GPUs);
MultiWorkerMirroredStrategy runs across the worker processes that TF_CONFIG names. Variables
made under the strategy's scope are mirrored; Keras's optimizer sums the replicas' gradients
(an all-reduce) before it applies them. The model, optimizer and evaluation are mnist.py's own.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from common.config import MnistConfig, RunConfig
from common.data import Mnist, batch_order, chunks
from common.errors import UserError
from common.layout import from_nhwc
from common.parallel import Engine, per_replica, replica_rows
from common.recorder import Recorder
from frameworks.tensorflow import mnist


def setup(cfg: RunConfig, device: str) -> Engine:
    """The strategy, created before any other TensorFlow op (the multi-worker one configures collectives then)."""
    par = cfg.parallel
    gpu = device.startswith("gpu")
    if par.processes is None:
        # runtime.configure split the CPU into N logical devices (or kept N GPUs).
        devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpu else "CPU")][: par.devices]
        if len(devices) < par.devices:
            raise UserError(
                f"--devices {par.devices}: TensorFlow sees {len(devices)} {'GPU' if gpu else 'CPU'} devices"
            )
        strategy = tf.distribute.MirroredStrategy(devices)
        rank, launcher = 0, "one process"
    else:
        # One CPU device per worker: on CPUs the multi-worker strategy drives only /device:CPU:0.
        implementation = tf.distribute.experimental.CommunicationImplementation
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=implementation.NCCL if gpu else implementation.RING
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)  # reads TF_CONFIG
        rank, launcher = strategy.cluster_resolver.task_id, f"{par.processes} workers (TF_CONFIG)"
    return Engine(
        engine="MultiWorkerMirroredStrategy" if par.processes else "MirroredStrategy",
        # Both strategies all-reduce with TensorFlow's collective ops: RING on CPUs (MirroredStrategy
        # picks it when every device is a CPU), NCCL between GPUs.
        collective_backend="CollectiveAllReduce (NCCL)" if gpu else "CollectiveAllReduce (RING)",
        launcher=launcher,
        devices=par.devices,
        processes=par.processes or 1,
        per_replica_batch=per_replica(cfg.mnist.batch_size, par.devices),
        rank=rank,
        handle=strategy,
    )


def shard(engine: Engine, images: np.ndarray, labels: np.ndarray, device: str) -> tuple[tf.Tensor, tf.Tensor]:
    """A global batch as per-replica values: each replica's rows, made on its device."""

    def rows(ctx: tf.distribute.experimental.ValueContext) -> tuple[tf.Tensor, tf.Tensor]:
        mine = replica_rows(len(labels), ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group)
        return mnist.to_device(images[mine], labels[mine], device)

    return engine.handle.experimental_distribute_values_from_function(rows)


def create_model(
    engine: Engine, cfg: MnistConfig, params: dict[str, np.ndarray] | None, device: str, seed: int = 0
) -> tuple[mnist.Net, tf.keras.optimizers.Optimizer]:
    """mnist.py's Net and optimizer, their variables mirrored on every replica."""
    with engine.handle.scope():
        model = mnist.create_model(cfg, params, device, seed)
        return model, mnist.make_optimizer(cfg, model)


def loss_fn(model: mnist.Net, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """This replica's summed cross-entropy over the global batch size, not its own mean.

    The optimizer sums the replicas' gradients, so each replica's loss is its share of the
    global mean: tf.nn.compute_average_loss divides by rows here x replicas in sync.
    """
    logits = model(x, training=True)
    losses = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return tf.nn.compute_average_loss(losses), logits


@tf.function  # traced once into a graph; strategy.run places one copy of the step on each replica
def train_step(model: mnist.Net, optimizer: tf.keras.optimizers.Optimizer, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """One step on the global batch, each replica holding its rows; returns the global batch's loss."""
    strategy = model.distribute_strategy  # the strategy the model was built under

    def replica_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            # Forward pass
            loss, _ = loss_fn(model, x, y)
        # Compute gradients
        grads = tape.gradient(loss, model.trainable_variables)
        # Update weights
        mnist.adam_epsilon(optimizer)  # Keras places Adam's epsilon before bias correction (mnist.make_optimizer)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))  # all-reduces (SUM) first
        return loss

    losses = strategy.run(replica_step, args=(x, y))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)  # the shares add up to the mean


def gradients(model: mnist.Net, x: tf.Tensor, y: tf.Tensor) -> dict[str, np.ndarray]:
    """The summed gradients the optimizer would apply at the current weights (canonical names), no update."""
    strategy = model.distribute_strategy
    layers = {name: (getattr(model, name).kernel, getattr(model, name).bias) for name in mnist.LAYERS}

    def replica_grads(x: tf.Tensor, y: tf.Tensor) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        with tf.GradientTape() as tape:
            loss, _ = loss_fn(model, x, y)
        grads = tape.gradient(loss, layers)  # same nested structure as `layers`
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)  # as Keras does

    summed = tf.function(lambda x, y: strategy.run(replica_grads, args=(x, y)))
    grads = strategy.experimental_local_results(summed(x, y))[0]  # the same sum on every replica
    return from_nhwc({name: (k.numpy(), b.numpy()) for name, (k, b) in grads.items()})


def get_params(model: mnist.Net) -> dict[str, np.ndarray]:
    return mnist.get_params(model)  # a mirrored variable reads as this worker's first replica


def train(
    cfg: RunConfig,
    engine: Engine,
    model: mnist.Net,
    optimizer: tf.keras.optimizers.Optimizer,
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
            recorder.steps(tf.stack(losses).numpy())  # one host read per chunk
        seconds = time.perf_counter() - start
        if chief:
            recorder.epoch(seconds, mnist.predict(model, x_test, m.eval_batch_size))


def close(engine: Engine) -> None:
    """Every replica meets once more, after rank 0 has written what it records.

    A worker that exits while the chief still evaluates is reported by TensorFlow's coordination
    service as crashed ("The following tasks are unhealthy"): the workers leave together.
    """
    strategy = engine.handle
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.function(lambda: tf.constant(0.0))), axis=None)
