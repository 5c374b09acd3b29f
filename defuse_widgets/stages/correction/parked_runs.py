"""Paused λ runs of a halving sweep, kept on disk instead of in memory.

Successive halving advances every λ of a rung by one epoch before it knows
which ones train on, so up to ⌈n/ETA⌉ + 1 runs are paused at once. Each
holds a classifier copy, its Adam moments and its best epoch's weights,
four times the classifier's size (26 MB for the shipped MNIST CNN). With
seven paused runs that was about 180 MB of resident memory that a full
sweep, which holds one run, never needed. :class:`ParkedRuns` writes a
paused run's tensors to a file and reads them back, bit for bit, when the
run trains on or finishes; the sweep's records are the same either way.

This module imports no UI code.
"""
from __future__ import annotations

import os
import tempfile

import torch

from defuse_widgets.models.loading import copy_model

__all__ = ["ParkedRuns"]

class ParkedRuns:
    """Write paused runs' tensors to a temporary folder and restore them.

    Parameters
    ----------
    base : nn.Module
        The classifier before fine-tuning; a restored run's model is a copy
        of it with the parked weights loaded.
    memory_format : torch.memory_format
        Of the runs' models (channels-last for bf16 on the CPU).
    device : torch.device
    folder : str or os.PathLike, optional
        Where the temporary folder goes (the sweep's checkpoint folder when
        it has one); the system's temporary folder otherwise.
    """

    def __init__(self, base: torch.nn.Module, memory_format, device, folder=None):
        self.base, self.memory_format, self.device = base, memory_format, device
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
        self._dir = tempfile.TemporaryDirectory(prefix="parked-runs-", dir=folder)

    def park(self, run) -> None:
        """Move ``run``'s (a :class:`~.sweep.Run`) model, optimiser state and best weights to
        a file.
        """
        path = os.path.join(self._dir.name, f"run-{run.i}.pt")
        torch.save({"model": run.model.state_dict(), "opt_state": run.opt_state,
                    "best_state": run.best_state}, path)
        run.model = run.opt_state = run.best_state = None
        run.parked = path

    def restore(self, run):
        """Read a parked ``run``'s tensors back (a live run is returned as is)."""
        path, run.parked = run.parked, None
        if path is None:
            return run
        saved = torch.load(path, map_location="cpu", weights_only=True)   # Adam moves its state
        os.remove(path)
        model = copy_model(self.base).to(self.device).to(memory_format=self.memory_format)
        model.load_state_dict(saved["model"])
        run.model, run.opt_state = model, saved["opt_state"]
        run.best_state = saved["best_state"]
        return run

    def close(self) -> None:
        """Delete the folder and whatever is still parked in it."""
        self._dir.cleanup()
