"""A network's parameters: random starting weights, darknet's .weights file loaded and saved (the format is
pydarknet.files.weights'), and the GPU's copy brought back."""
from __future__ import annotations

import os
from typing import TypeVar

import numpy as np

P = TypeVar("P", bound="Parameters")   # the Network whose method it is


class Parameters:
    """The parameters of Network (network.py)."""

    def initialize(self: P, seed: int = 0) -> P:
        """Random starting weights, as darknet's make_*_layer sets them, for training from scratch."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.initialize(rng)
        return self

    def save(self, weights_path: str | os.PathLike, upto: int | None = None) -> None:
        """darknet's save_weights (the first `upto` layers' when given), written atomically."""
        from ..files.weights import save_weights
        save_weights(self, weights_path, upto)

    def load(self: P, weights_path: str | os.PathLike, upto: int | None = None) -> P:
        from ..files.weights import load_weights
        load_weights(self, weights_path, upto)
        self.params_version += 1
        if not self.darknet_forced and self.weights_version[2] == 5 and self.darknet != "ab":
            self.darknet, self.darknet_reason = "ab", "weights revision 5"
        return self

    def sync_parameters(self):
        """Bring the parameters the GPU changed (training) back into the layers' arrays (nothing on the CPU)."""
        if self.engine is not None:
            self.engine.sync_to_host()
