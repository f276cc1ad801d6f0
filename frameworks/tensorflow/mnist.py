"""The MNIST CNN in TensorFlow: Keras layers, NHWC tensors, a GradientTape step in tf.function."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from common.config import MnistConfig, RunConfig
from common.data import Mnist, batch_order, chunks
from common.layout import activations_from_nhwc, from_nhwc, to_nhwc
from common.recorder import Recorder

LAYERS = ("conv1", "conv2", "fc")
ONLY_FIRST_REPLICA = tf.VariableAggregation.ONLY_FIRST_REPLICA


class Net(tf.keras.Model):
    """conv 1->24 5x5, ReLU, pool 2 -> conv 24->32 5x5, ReLU, pool 2 -> dense 1568->10."""

    def __init__(self, dtype: str, precision: str = "float32") -> None:
        super().__init__(dtype=dtype)
        # --precision bfloat16: Keras's mixed_bfloat16 policy, per layer (bfloat16 compute, float32 variables)
        policy = "mixed_bfloat16" if precision == "bfloat16" else dtype
        # Keras's Conv2D defaults to padding="valid": "same" pads 2 on each side for 5x5.
        self.conv1 = tf.keras.layers.Conv2D(24, 5, padding="same", dtype=policy)
        self.pool1 = tf.keras.layers.MaxPooling2D(2, dtype=policy)
        self.conv2 = tf.keras.layers.Conv2D(32, 5, padding="same", dtype=policy)
        self.pool2 = tf.keras.layers.MaxPooling2D(2, dtype=policy)
        self.flatten = tf.keras.layers.Flatten(dtype=policy)  # NHWC flattens as H, W, C
        # Keras: the output layer in the weights' dtype, as its mixed-precision guide says, so the loss is float32
        self.fc = tf.keras.layers.Dense(10, dtype=dtype)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.layer_outputs(x)["fc"]

    def layer_outputs(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """Every layer's output, in order: call returns the last, the float64 stages compare them all."""
        # The ReLU apart from Conv2D (not activation="relu") so that the stages see the convolution's
        # own output; grappler fuses Conv2D + BiasAdd + Relu into one oneDNN kernel all the same.
        out = {"conv1": self.conv1(x)}
        out["relu1"] = tf.nn.relu(out["conv1"])
        out["pool1"] = self.pool1(out["relu1"])
        out["conv2"] = self.conv2(out["pool1"])
        out["relu2"] = tf.nn.relu(out["conv2"])
        out["pool2"] = self.pool2(out["relu2"])
        out["flatten"] = self.flatten(out["pool2"])
        out["fc"] = self.fc(out["flatten"])
        return out


def create_model(cfg: MnistConfig, params: dict[str, np.ndarray] | None, device: str, seed: int = 0) -> Net:
    """A Net in cfg.dtype, from canonical weights or Keras's own initialisers (drawn from `seed`)."""
    tf.keras.utils.set_random_seed(seed)  # Keras initialisers draw from the global seed
    model = Net(cfg.dtype, cfg.precision)
    model(np.zeros((1, 28, 28, 1), dtype=cfg.dtype))  # Keras creates weights on the first call
    if params is not None:
        load_params(model, params)
    return model


def load_params(model: Net, params: dict[str, np.ndarray]) -> None:
    """Canonical (OIHW, C*H*W fc columns) -> Keras (HWIO, H*W*C fc rows)."""
    for name, (kernel, bias) in to_nhwc(params).items():
        getattr(model, name).set_weights([kernel, bias])


def get_params(model: Net) -> dict[str, np.ndarray]:
    return from_nhwc({name: getattr(model, name).get_weights() for name in LAYERS})


def make_optimizer(cfg: MnistConfig, model: Net) -> tf.keras.optimizers.Optimizer:
    """Every constant spelled out, so the three frameworks visibly use the same ones."""
    if cfg.optimizer == "sgd":
        # Keras keeps v = m*v - lr*g and steps +v; PyTorch and Optax keep v = m*v + g and
        # step -lr*v: the same updates for a constant learning rate.
        # Constants as np.float64: Keras casts a Python float to the weights' dtype through
        # float32 (0.9 -> 0.8999999761581421 in a float64 run; docs/differences.md, row 10).
        optimizer = tf.keras.optimizers.SGD(learning_rate=cfg.lr, momentum=np.float64(cfg.momentum), nesterov=False)
    else:
        # Keras adds epsilon to sqrt(v) before bias correction ("epsilon hat"), PyTorch and Optax
        # after it: Keras's epsilon is PyTorch's times sqrt(1 - beta2^t), which changes every step.
        # So it is a variable that each step sets (adam_epsilon), and the three make the same
        # update (docs/differences.md, row 9). ONLY_FIRST_REPLICA: set inside a replica's step.
        epsilon = tf.Variable(cfg.eps, dtype=model.dtype, trainable=False, aggregation=ONLY_FIRST_REPLICA)
        optimizer = tf.keras.optimizers.Adam(
            learning_rate=cfg.lr,
            beta_1=np.float64(cfg.beta1),
            beta_2=np.float64(cfg.beta2),
            epsilon=epsilon,
            amsgrad=False,
        )
        optimizer.shared_epsilon = np.float64(cfg.eps)  # PyTorch's and Optax's, which adam_epsilon converts
    optimizer.build(model.trainable_variables)  # slot variables must exist before tf.function
    return optimizer


def hyperparameters(optimizer: tf.keras.optimizers.Optimizer) -> dict[str, float]:
    """The recipe's hyperparameters in force, as Keras's users log them: from the optimizer's attributes
    (learning_rate is a variable, or a schedule's value at this step)."""
    lr = optimizer.learning_rate.numpy()  # a copy now: the variable itself would be read later
    if isinstance(optimizer, tf.keras.optimizers.SGD):
        return {"lr": lr, "momentum": optimizer.momentum}
    return {"lr": lr, "beta1": optimizer.beta_1, "beta2": optimizer.beta_2}


def adam_epsilon(optimizer: tf.keras.optimizers.Optimizer) -> None:
    """Before each Adam step: Keras's epsilon at step t that makes its update PyTorch's (make_optimizer)."""
    if isinstance(optimizer, tf.keras.optimizers.Adam):
        t = tf.cast(optimizer.iterations + 1, optimizer.epsilon.dtype)
        optimizer.epsilon.assign(optimizer.shared_epsilon * tf.sqrt(1 - optimizer.beta_2**t))


def loss_fn(model: Net, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean cross-entropy of the logits; Keras losses take (target, prediction)."""
    logits = model(x, training=True)
    losses = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return tf.reduce_mean(losses), logits


# A plain graph, not jit_compile=True: XLA made the step 3-4.6x slower on this CPU (112 vs
# 24 ms at batch 100, interleaved), since XLA's CPU convolutions lose to TensorFlow's oneDNN kernels.
@tf.function  # traced once into a graph; later calls run it without Python
def train_step(
    model: Net, optimizer: tf.keras.optimizers.Optimizer, x: tf.Tensor, y: tf.Tensor, idx: tf.Tensor
) -> tf.Tensor:
    """One optimizer step on the batch x[idx], y[idx]; returns the loss, still on the device."""
    x, y = tf.gather(x, idx), tf.gather(y, idx)  # inside the graph: 24 vs 33 ms with eager gathers
    with tf.GradientTape() as tape:
        # Forward pass
        loss, _ = loss_fn(model, x, y)
    # Compute gradients
    grads = tape.gradient(loss, model.trainable_variables)
    # Update weights
    adam_epsilon(optimizer)  # Keras places Adam's epsilon before bias correction: see make_optimizer
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss


def to_device(images: np.ndarray, labels: np.ndarray, device: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Copy a whole split to the device once; steps then gather batches there."""
    x = tf.constant(images[..., np.newaxis])  # NHWC: the channel axis comes last
    return x, tf.constant(labels)


@tf.function  # one graph per batch shape instead of eager op-by-op dispatch
def forward(model: Net, x: tf.Tensor) -> tf.Tensor:
    return model(x, training=False)


def predict(model: Net, x: tf.Tensor, batch_size: int) -> np.ndarray:
    """Logits for every row of x (the last batch may be smaller: nothing is dropped)."""
    return np.concatenate([forward(model, x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)])


def probe(model: Net, images: np.ndarray, labels: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """Every layer's output, the loss and the gradients of the model on one batch, without an update."""
    x, y = to_device(images, labels, device)
    layers = {name: (getattr(model, name).kernel, getattr(model, name).bias) for name in LAYERS}
    with tf.GradientTape() as tape:
        loss, logits = loss_fn(model, x, y)
    grads = tape.gradient(loss, layers)  # same nested structure as `layers`
    numpy_grads = {name: (k.numpy(), b.numpy()) for name, (k, b) in grads.items()}
    dtype = model.fc.kernel.dtype  # mixed precision's bfloat16 outputs are read in the weights' dtype
    outputs = model.layer_outputs(x)
    layers = activations_from_nhwc({name: tf.cast(v, dtype).numpy() for name, v in outputs.items()})
    return {
        "logits": logits.numpy(),
        "loss": loss.numpy(),
        **{f"grad/{n}": g for n, g in from_nhwc(numpy_grads).items()},
        **{f"layer/{n}": v for n, v in layers.items()},
    }


def train(cfg: RunConfig, model: Net, data: Mnist, recorder: Recorder, device: str) -> None:
    """Train for cfg.mnist.epochs on the shared batch order, scoring the test set each epoch."""
    m = cfg.mnist
    optimizer = make_optimizer(m, model)
    x_train, y_train = to_device(data.train_images, data.train_labels, device)
    x_test, _ = to_device(data.test_images, data.test_labels, device)
    for epoch in range(m.epochs):
        order = batch_order(len(y_train), m.batch_size, cfg.seed, epoch)
        start = time.perf_counter()
        for chunk in chunks(order, m.log_every):
            losses = []
            for idx in chunk:
                recorder.batch(idx, hyperparameters(optimizer))  # what this step trains on, and with what
                losses.append(train_step(model, optimizer, x_train, y_train, tf.constant(idx)))
            recorder.steps(tf.stack(losses).numpy())  # one host read per chunk
        seconds = time.perf_counter() - start
        recorder.epoch(seconds, predict(model, x_test, m.eval_batch_size))
