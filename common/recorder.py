"""The one way every framework's training loop reports what it did.

A framework's loop hands over NumPy copies of its step losses every few steps and its test
logits after every epoch; the Recorder checks the losses for NaN/inf, drives the progress
bar and turns logits into test loss and accuracy with common.metrics. The loops themselves
stay written out in each framework's own mnist.py.
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
