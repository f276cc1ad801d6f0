"""The MNIST CNN in PyTorch: torch.nn layers, NCHW tensors, an eager training loop."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common.config import MnistConfig, RunConfig
from common.data import Mnist, batch_order, chunks
from common.recorder import Recorder
from frameworks.pytorch.runtime import torch_device


class Net(nn.Module):
    """conv 1->24 5x5, ReLU, pool 2 -> conv 24->32 5x5, ReLU, pool 2 -> dense 1568->10."""

    def __init__(self, precision: str = "float32") -> None:
        super().__init__()
        # PyTorch: mixed precision is not part of the layers but a context around the forward pass (loss_fn)
        self.precision = precision
        self.conv1 = nn.Conv2d(1, 24, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(24, 32, kernel_size=5, padding=2)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_outputs(x)["fc"]

    def layer_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output, in order: forward returns the last, the float64 stages compare them all."""
        out = {"conv1": self.conv1(x)}
        out["relu1"] = F.relu(out["conv1"])
        out["pool1"] = F.max_pool2d(out["relu1"], kernel_size=2)
        out["conv2"] = self.conv2(out["pool1"])
        out["relu2"] = F.relu(out["conv2"])
        out["pool2"] = F.max_pool2d(out["relu2"], kernel_size=2)
        out["flatten"] = torch.flatten(out["pool2"], start_dim=1)  # NCHW flattens as C, H, W: the canonical order
        out["fc"] = self.fc(out["flatten"])
        return out


def create_model(cfg: MnistConfig, params: dict[str, np.ndarray] | None, device: str, seed: int = 0) -> Net:
    """A Net in cfg.dtype on `device`, from canonical weights or PyTorch's own initialisers (drawn from `seed`)."""
    torch.manual_seed(seed)  # nn.Module initialisers draw from the global generator
    model = Net(cfg.precision).to(device=torch_device(device), dtype=getattr(torch, cfg.dtype))
    # channels_last (NHWC in memory, NCHW in shape) lets oneDNN run the convolutions without
    # reordering: 35 vs 45 ms per step at batch 100 on 2 CPU cores (median of 15 interleaved windows).
    model = model.to(memory_format=torch.channels_last)
    if params is not None:
        load_params(model, params)
    return model


def load_params(model: Net, params: dict[str, np.ndarray]) -> None:
    """The canonical layout is PyTorch's own state_dict: no conversion needed."""
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()})


def get_params(model: Net) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def make_optimizer(cfg: MnistConfig, model: Net) -> torch.optim.Optimizer:
    """Every constant spelled out, so the three frameworks visibly use the same ones."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=0.0, nesterov=False)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The recipe's hyperparameters in force, as PyTorch's users log them: from the optimizer's param_groups
    (where an LR scheduler writes the learning rate)."""
    group = optimizer.param_groups[0]
    if "momentum" in group:  # SGD
        return {"lr": group["lr"], "momentum": group["momentum"]}
    return {"lr": group["lr"], "beta1": group["betas"][0], "beta2": group["betas"][1]}


def loss_fn(model: Net, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of the logits; PyTorch losses take (prediction, target)."""
    with autocast(model, x):
        logits = model(x)
        return F.cross_entropy(logits, y), logits


def autocast(model: Net | DistributedDataParallel, x: torch.Tensor) -> torch.autocast:
    """--precision bfloat16: autocast runs each op in its list's dtype (convolutions and linear in bfloat16,
    cross_entropy in float32); the weights, gradients and optimizer state stay float32."""
    net = model.module if isinstance(model, DistributedDataParallel) else model  # parallel.py wraps the Net in DDP
    return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=net.precision == "bfloat16")


def train_step(
    model: Net, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """One optimizer step on the batch x[idx], y[idx]; returns the loss, still on the device."""
    x, y = x[idx], y[idx]  # eager: each line runs as it is reached
    # Forward pass
    loss, _ = loss_fn(model, x, y)
    # Compute gradients
    optimizer.zero_grad(set_to_none=True)  # PyTorch accumulates into .grad otherwise
    loss.backward()
    # Update weights
    optimizer.step()
    return loss.detach()


def to_device(images: np.ndarray, labels: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a whole split to the device once; steps then index batches there."""
    x = torch.from_numpy(images).unsqueeze(1)  # NCHW: the channel axis comes before H, W
    x = x.to(torch_device(device)).contiguous(memory_format=torch.channels_last)  # as the model's weights
    return x, torch.from_numpy(labels).to(torch_device(device))


@torch.no_grad()  # evaluation builds no autograd graph
def predict(model: Net, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """Logits for every row of x (the last batch may be smaller: nothing is dropped)."""
    with autocast(model, x):
        logits = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    return logits.to(model.fc.weight.dtype).cpu().numpy()  # autocast's logits are bfloat16: NumPy has no such type


def probe(model: Net, images: np.ndarray, labels: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """Every layer's output, the loss and the gradients of the model on one batch, without an update."""
    x, y = to_device(images, labels, device)
    loss, logits = loss_fn(model, x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    names = [name for name, _ in model.named_parameters()]
    with torch.no_grad(), autocast(model, x):
        layers = model.layer_outputs(x)  # NCHW: already the canonical layout
    dtype = model.fc.weight.dtype  # NumPy has no bfloat16: mixed precision's outputs are read in the weights' dtype
    return {
        "logits": logits.detach().to(dtype).cpu().numpy(),
        "loss": loss.detach().cpu().numpy(),
        **{f"grad/{n}": g.cpu().numpy() for n, g in zip(names, grads, strict=True)},
        **{f"layer/{n}": v.to(dtype).cpu().numpy() for n, v in layers.items()},
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
                losses.append(
                    train_step(model, optimizer, x_train, y_train, torch.as_tensor(idx, device=x_train.device))
                )
            recorder.steps(torch.stack(losses).cpu().numpy())  # one host read per chunk
        seconds = time.perf_counter() - start
        recorder.epoch(seconds, predict(model, x_test, m.eval_batch_size))
