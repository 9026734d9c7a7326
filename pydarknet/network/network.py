"""A network: the [net] options and a list of layers, walked in order.

`Network(cfg)` builds the layers from a .cfg (build.py, checking every shape as it goes), `load(weights)` fills
their parameters (parameters.py), `forward(x)` runs a batch (n, c, h, w) through them and returns the last output
(passes.py, with training's passes).

A Network serves one thread at a time: its layers keep their outputs and scratch between calls, so a forward and
the reading of its outputs must not overlap another's. Whoever shares one across threads holds `lock` around both
(darknet.py does), or gives each thread a `replica` (Detector and Classifier do); a forward begun while another
thread's runs raises a DarknetError rather than compute garbage. Two Networks share no state but a replica's
parameters.
"""
from __future__ import annotations

import copy
import os
import sys
import threading
from typing import TextIO

import numpy as np

from ..files.config import DarknetError, read_cfg
from ..kernels import shipped
from ..kernels.products import using
from .build import DARKNETS, build_layers, darknet_of, net_options
from .parameters import Parameters
from .passes import Passes


class Network(Passes, Parameters):
    """`darknet`: whose arithmetic and defaults to follow, "ab" (the AlexeyAB fork: batch-norm over
    sqrt(var + .00001), fused into the convolutions for inference; its detect defaults) or "pjreddie";
    None chooses from the cfg (`darknet_of`) and, at load, from the weights (the fork writes revision 5).
    `quiet_unused`: no warning for a cfg option no layer reads; `strict` (--strict): such an option is an error
    (config.UnusedOptionError). `device`: where it runs (see `to`; None: the CPU). These are the network's own:
    building one never changes how another is built or runs."""

    def __init__(self, cfg_path: str | os.PathLike, quiet_unused: bool = False, darknet: str | None = None,
                 strict: bool = False, device: str | None = None):
        self.cfg_path = str(cfg_path)
        shipped.install()   # a wheel's compiled kernels, for a script's first network as for a command's
        sections = read_cfg(self.cfg_path)
        if darknet not in (None,) + DARKNETS:
            raise DarknetError(f"darknet must be one of {', '.join(DARKNETS)}, not {darknet!r}")
        self.darknet_forced = darknet is not None
        self.darknet, self.darknet_reason = (darknet, "forced") if darknet else darknet_of(sections)
        self.fuse_batchnorm = True   # the fork's inference folds batch-norm into the convolution weights
        # [softmax] as gcc 12's -Ofast build of pjreddie's darknet vectorises it (kernels/softmax.py; the build of
        # the recurrent golden cases and of `rnn generate`'s); False: the scalar loop of golden/forward's build
        self.softmax_lanes = False
        self.params_version = 0      # bumped whenever parameters change (load, update): derived caches check it
        self.options = sections[0]
        net_options(self, self.options)
        self.seen = 0
        self.train = False
        self.keep_for_backward = False   # inference arithmetic, but keep what backward needs (see input_gradient)
        self.every_output = False   # True: every layer's output written in the fast modes too (their fused plan
                                    # leaves unwritten an output that only the pool after it reads)
        self.t = 0              # updates done (Adam's step counter, darknet's net->t)
        self.cost = np.float32(0)
        self.truth = None       # the truth of the batch being trained on (darknet's net.truth)
        self.input = None       # during backward: the current layer's input and the delta to add its gradient
        self.delta = None       # to (darknet's net.input / net.delta); delta is None for the first layer
        self.index = 0          # the layer being run (darknet's net.index)
        self.quiet = False      # True: output layers print no training statistics
        self.rng = None         # a numpy Generator for policy=random (Python's `random` when None)
        self.weights_version = (0, 2, 0)
        self.engine = None      # the GPU engine (see `to`), or a runtime's (tasks.engines): what runs its forward
        self.lock = threading.RLock()   # held around a forward and the reading of its outputs (the docstring)
        self.products = None    # its own kernels.products.Products for inference (None: the process's)
        self.plans = {}         # id(layer) -> its plan of the pass (convolutional.Plan; a pool's parts), kept while
                                # it holds, and "outputs" -> the plan_key the outputs' memory was planned for
                                # (share_outputs); a replica starts without (they hold views of these buffers)
        self.pass_key = None    # the plan_key of the pass running (Network.passing), else None
        build_layers(self, sections[1:])
        if not quiet_unused:
            for section in sections:
                section.warn_unused(strict)
        if device is not None:
            self.to(device)

    # -- where it runs, its shape, its table ---------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.c, self.h, self.w)

    def to(self, device: str | None) -> Network:
        """Run on `device` from now on: "cpu", or "cuda:N" (the GPU engine, pydarknet.network.cuda; DarknetError "no
        CUDA GPU found: ..." without one). Returns the network."""
        from .cuda import engine_for, parse_device
        index = parse_device(device)
        self.engine = None if index is None else engine_for(self, index)
        self.plans.pop("outputs", None)   # the CPU pass's memory plan: made again for it (network/outputs.py)
        for layer in self.layers:
            layer.shared_output = layer.in_place = layer.residual_after = None
        return self

    @property
    def device(self) -> str:
        return "cpu" if self.engine is None else self.engine.device

    def prepare(self) -> None:
        """Do now what the first inference pass would do once on the way (the fork's batch-norm folded into each
        convolution's weights, the weights in the form the products take, the layers' outputs for one image
        first touched), so that a timed pass times the pass alone. The operating system's first touch of fresh
        memory took 10-20 ms of yolov3-tiny's first pass (33 MB of outputs) on a Zen 3 EPYC."""
        with using(self.products):
            if self.engine is None:
                self.share_outputs(1)   # the outputs' memory as the pass will have it (network/outputs.py)
            for layer in self.layers:
                layer.prepare(self)
                if self.engine is None and layer.keeps_output and layer.in_place is None:
                    layer.output_buffer(1).fill(0)

    def replica(self) -> Network:
        """A Network of the same layers and parameters (the same arrays, not copies) with buffers of its own, for
        another thread to run inference on beside this one (tasks.predict.NetworkPool). For parameters that no
        longer change (a replica keeps what it derived from them, as the fused batch-norm). Not for a network on
        a GPU."""
        if self.engine is not None:
            raise DarknetError(f"{self.cfg_path}: a network on a GPU has no replica: share it under its lock")
        with self.lock:   # not in the middle of another thread's forward
            shared = {id(array): array for layer in self.layers for array in layer.weight_arrays()}
            shared[id(self.lock)] = threading.RLock()
            shared[id(self.plans)] = {}   # (a plan holds views of this network's buffers)
            return copy.deepcopy(self, shared)

    def resize(self, w: int, h: int) -> None:
        """Change the input size of a fully convolutional network (darknet's resize_network)."""
        if (w, h) == (self.w, self.h):
            return
        self.w, self.h = w, h
        shape = self.input_shape
        for layer in self.layers:
            layer.setup(shape, self)
            shape = layer.out_shape

    def summary(self, totals: bool = False) -> list[str]:
        """Darknet's layer table as lines of text; `totals`: then the BFLOPs, the parameter count and the darknet
        followed (the `summary` command)."""
        lines = ["layer     filters    size              input                output"]
        lines += [f"{layer.index:5d} {layer.describe()}" for layer in self.layers]
        if totals:
            lines += [f"Total BFLOPS {sum(layer.flops() for layer in self.layers) / 1e9:.3f}",
                      f"Parameters {sum(a.size for layer in self.layers for a in layer.weight_arrays())}",
                      self.darknet_line()]
        return lines

    def darknet_line(self) -> str:
        """Which darknet's arithmetic this network follows, and why."""
        name = "AlexeyAB" if self.darknet == "ab" else "pjreddie"
        return f"darknet: {name} ({self.darknet_reason or 'no AlexeyAB-only option in the cfg'})"

    def print_summary(self, file: TextIO = sys.stderr) -> None:
        print("\n".join(self.summary()), file=file)
