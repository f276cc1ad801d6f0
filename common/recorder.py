"""The one way every framework's training loop reports what it did.

A framework's loop hands over, before each step, what the recipe fixes for it (the examples it
trains on and the optimizer's hyperparameters in force, read from the framework's own optimizer);
every few steps NumPy copies of the step losses; after every epoch the test logits. The Recorder
checks the losses for NaN/inf, drives the progress bar, turns logits into test loss and accuracy
with common.metrics, and keeps the loop record that common.loop compares exactly across
frameworks. The loops themselves stay written out in each framework's own mnist.py.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from common.metrics import accuracy, cross_entropy


class NonFiniteLoss(RuntimeError):
    """A training loss became NaN or infinite; the message names the step."""


class Recorder:
    def __init__(
        self,
        framework: str,
        test_labels: np.ndarray,
        epochs: int,
        steps_per_epoch: int,
        batch_size: int,
        quiet: bool = False,
    ) -> None:
        self.framework = framework
        self.test_labels = test_labels
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.step_losses: list[float] = []
        self.epochs: list[dict[str, float]] = []
        self.test_logits: np.ndarray | None = None  # the last epoch's, for the evaluation stage (common.stages)
        self.bar = progress_bar(framework, epochs * steps_per_epoch, quiet)
        # The loop record (common.loop): each step's examples and hyperparameters, each epoch's step count.
        self.batches: list[np.ndarray] = []
        self.hyperparameters: list[dict[str, Any]] = []  # as the framework hands them, converted in loop()
        self.epoch_steps: list[int] = []

    def batch(self, idx: Any, hyperparameters: dict[str, Any]) -> None:
        """Before a step: the positions of its examples in the training subset, and the optimizer's hyperparameters
        in force, as the framework's own scalars (a device's are copied to the host once, in loop())."""
        self.batches.append(np.asarray(idx).ravel())
        self.hyperparameters.append(hyperparameters)

    def steps(self, losses: np.ndarray) -> None:
        """Record the losses of the steps since the last call (host copies)."""
        losses = np.asarray(losses, dtype=np.float64).ravel()
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            step = len(self.step_losses) + int(bad[0]) + 1
            raise NonFiniteLoss(f"loss became {losses[bad[0]]} at step {step}; lower --lr")
        self.step_losses.extend(losses.tolist())
        if self.bar is not None:
            epoch = (len(self.step_losses) - 1) // self.steps_per_epoch + 1
            self.bar.set_postfix_str(f"epoch {epoch} loss {losses[-1]:.4f}", refresh=False)
            self.bar.update(len(losses))

    def epoch(self, seconds: float, test_logits: np.ndarray) -> None:
        """Close an epoch: its training time and the logits of all 10,000 test images."""
        if len(test_logits) != len(self.test_labels):  # a predict that drops its last, partial batch
            raise ValueError(
                f"predict returned {len(test_logits)} rows of logits for {len(self.test_labels)} test images"
            )
        epoch_losses = self.step_losses[-self.steps_per_epoch :]
        self.epoch_steps.append(len(self.batches) - sum(self.epoch_steps))
        self.test_logits = np.asarray(test_logits)
        self.epochs.append(
            {
                "epoch": len(self.epochs) + 1,
                "train_loss": float(np.mean(epoch_losses)),
                "test_loss": cross_entropy(test_logits, self.test_labels),
                "test_accuracy": accuracy(test_logits, self.test_labels),
                "seconds": seconds,
            }
        )

    def loop(self) -> dict[str, np.ndarray]:
        """The loop record (loops/<framework>.npz): every step's examples (one flat array, cut by batch_sizes, so a
        partial batch fits too), each hyperparameter at every step in float32 (where the three frameworks hold the
        same number exactly), and the steps of each epoch."""
        names = list(self.hyperparameters[0]) if self.hyperparameters else []
        return {
            "examples": np.concatenate([np.zeros(0, np.int64), *self.batches]).astype(np.int32),
            "batch_sizes": np.asarray([len(b) for b in self.batches], dtype=np.int32),
            **{f"hyper/{n}": np.asarray([h[n] for h in self.hyperparameters], dtype=np.float32) for n in names},
            "epoch_steps": np.asarray(self.epoch_steps, dtype=np.int32),
        }

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def result(self) -> dict[str, Any]:
        """The task's numbers for results.json (see common.results)."""
        last = self.epochs[-1]
        train_seconds = float(sum(e["seconds"] for e in self.epochs))
        images = len(self.step_losses) * self.batch_size
        return {
            "test_accuracy": last["test_accuracy"],
            "test_loss": last["test_loss"],
            "final_loss": last["train_loss"],
            "train_seconds": train_seconds,
            "images_per_second": images / train_seconds if train_seconds > 0 else None,
            "epochs": self.epochs,
            "step_losses": self.step_losses,
        }


def progress_bar(framework: str, total: int, quiet: bool) -> Any:
    """A tqdm bar, only when stdout is a terminal (CI logs stay clean).

    The worker's stdout is the terminal itself; its stderr goes through compare.py's filter
    (common.run.launch), which would hold a bar's carriage-return updates back.
    """
    if quiet or not sys.stdout.isatty():
        return None
    from tqdm import tqdm  # only needed for interactive runs

    return tqdm(total=total, desc=f"{framework:>10}", unit="step", leave=False, file=sys.stdout)
