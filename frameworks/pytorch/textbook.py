"""PyTorch's textbook MNIST loop (pytorch/examples, mnist/main.py) timed as the benchmark's bar.

As the example trains: a `DataLoader` over the training tensors with shuffle=True, the model
placed with a plain `.to(device)` (NCHW, PyTorch's default memory format), and the eager loop
of its `train()`: move the batch to the device, `zero_grad`, forward, loss, `backward`, `step`,
and a host read of the loss every `log_interval` batches. What is this project's: the Net, its
shared initial weights and the optimizer (mnist.py), the cross-entropy on logits (the example's
log_softmax + nll_loss computes the same) and a `TensorDataset` instead of torchvision's MNIST
class, which would decode and normalise each image from its PIL form on every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from common import timing
from common.config import RunConfig
from common.data import Mnist
from frameworks.pytorch import bench, mnist
from frameworks.pytorch.runtime import torch_device

LOG_INTERVAL = 10  # the example's --log-interval default: it prints loss.item() every 10 batches


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    """The example's loop under common.timing's protocol; the same signature as bench.benchmark."""
    m = cfg.mnist
    where = torch_device(device)
    model = mnist.Net().to(device=where, dtype=getattr(torch, m.dtype))  # the example: Net().to(device)
    mnist.load_params(model, init)
    optimizer = mnist.make_optimizer(m, model)
    dataset = TensorDataset(torch.from_numpy(data.train_images).unsqueeze(1), torch.from_numpy(data.train_labels))
    torch.manual_seed(cfg.seed)  # the loader shuffles with PyTorch's global generator
    batches = epochs(DataLoader(dataset, batch_size=m.batch_size, shuffle=True))
    model.train()

    def run_steps(n: int) -> float:
        for _ in range(n):
            batch_idx, (images, target) = next(batches)
            images, target = images.to(where), target.to(where)
            optimizer.zero_grad()
            output = model(images)
            loss = F.cross_entropy(output, target)
            loss.backward()
            optimizer.step()
            if batch_idx % LOG_INTERVAL == 0:
                loss.item()  # where the example prints the loss: a host read
        return loss.item()

    result = {**timing.time_steps(run_steps, cfg.bench, m.batch_size), "os_threads": timing.os_threads()}
    if cfg.bench.profile:
        result["profile"] = bench.profile_ops(run_steps, cfg.bench.window_steps)
    return result


def epochs(loader: DataLoader) -> Iterator[tuple[int, tuple[torch.Tensor, torch.Tensor]]]:
    """enumerate(train_loader), epoch after epoch, as the example's epoch loop runs it."""
    while True:
        yield from enumerate(loader)
