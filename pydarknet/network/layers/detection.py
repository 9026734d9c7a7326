"""[detection]: YOLOv1's output layer, reading the flat output of a [connected] layer.

For a side x side grid the input holds, in this order: every cell's `classes` class scores, every cell's
`num` box confidences, every cell's `num` boxes (x, y, w, h). Forward only applies a per-cell softmax to the
class scores when `softmax=1`; decoding gives num boxes per cell.
"""
import sys

import numpy as np

from ...files.config import DarknetError
from ...kernels import loss
from ...kernels.region import softmax_groups
from ...results.boxes import Detections
from .base import Layer, delta_cost, printf_f, ratio


class Detection(Layer):
    type = "detection"
    names = ("detection",)

    def __init__(self, section, in_shape, net, index):
        s = self.section = section
        self.index = index
        self.coords = s.int("coords", 1)
        self.classes = s.int("classes", 1)
        self.rescore = s.int("rescore", 0)
        self.n = s.int("num", 1)
        self.side = s.int("side", 7)
        if self.side < 1 or self.n < 1 or self.classes < 0 or self.coords < 0:
            raise self.error("side and num must be at least 1, classes and coords not negative")
        if self.coords != 4:
            # decoding reads 4 values per box whatever coords says; darknet's own cfgs all use 4
            raise self.error(f"coords={self.coords}: darknet's detection layer decodes 4 box values, "
                             "set coords=4", "coords")
        self.softmax = s.int("softmax", 0)
        self.sqrt = s.int("sqrt", 0)
        self.max_boxes = s.int("max", 90)
        self.coord_scale = s.float("coord_scale", 1)
        self.forced = s.int("forced", 0)
        self.object_scale = s.float("object_scale", 1)
        self.noobject_scale = s.float("noobject_scale", 1)
        self.class_scale = s.float("class_scale", 1)
        self.jitter = s.float("jitter", 0.2)
        self.random = s.int("random", 0)
        self.reorg = s.int("reorg", 0)
        self.built_inputs = None
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        inputs = int(np.prod(self.in_shape))
        if self.built_inputs is not None and inputs != self.built_inputs:
            raise self.error("a [detection] layer cannot be resized (darknet: 'Cannot resize this type of "
                             "layer'): keep the network's input size")
        per_cell = (1 + self.coords) * self.n + self.classes
        need = self.side * self.side * per_cell
        if inputs != need:
            raise self.error(f"input has {inputs} values but side={self.side}: {self.side}x{self.side} cells x "
                             f"({self.classes} classes + {self.n} boxes x (1 + {self.coords} coords)) need {need}: "
                             f"set output={need} in the [connected] layer before it")
        self.built_inputs = self.inputs = self.outputs = inputs
        self.w = self.h = self.side
        self.out_shape = (inputs, 1, 1)

    def describe(self):
        return "Detection Layer"

    def forward(self, x, net):
        batch = x.shape[0]
        out = self.output_buffer(batch)
        out.reshape(batch, -1)[:] = x.reshape(batch, -1)
        if self.softmax:
            flat = out.reshape(-1)
            cells = self.side * self.side
            for b in range(batch):
                softmax_groups(flat[b * self.inputs:], self.classes, 1, 0, cells, self.classes, 1,
                               np.float32(1.0), flat[b * self.inputs:])
        if net.train:
            self.loss(out, net)
        return out

    # -- training ------------------------------------------------------------------------------------------
    def loss(self, out, net):
        """darknet's forward_detection_layer in training mode (YOLOv1): squared-error deltas on the raw
        outputs. Truth: darknet's grid layout, per cell (is-object, classes one-hot, x, y in the cell, w, h),
        i.e. (batch, side*side*(1 + classes + 4)). Each object cell trains its classes, and the box with the
        best IoU (or, while no box overlaps, the smallest RMSE; forced=1: by size; random=1 before 64000
        images: a random one, from numpy's global RNG) towards the truth and objectness 1; every other box's
        objectness towards 0. cost = sum of delta^2."""
        batch = out.shape[0]
        cells = self.side * self.side
        need = cells * (1 + self.classes + self.coords)
        truth = np.ascontiguousarray(net.truth.reshape(batch, -1))
        if truth.shape[1] < need:
            raise DarknetError(f"layer {self.index} ([detection]): the truth has {truth.shape[1]} values per "
                               f"image, the {self.side}x{self.side} grid needs {need} (is-object, {self.classes} "
                               f"classes, x y w h per cell)")
        random_index = (np.random.randint(self.n, size=(batch, cells)).astype(np.int64)
                        if self.random and net.seen < 64000 else np.zeros((0, 0), np.int64))
        f = np.float32
        stats = loss.detection_delta(out.reshape(batch, -1), truth[:, :need], self.side, self.n, self.classes,
                                     self.coords, bool(self.sqrt), bool(self.forced), bool(self.rescore),
                                     f(self.coord_scale), f(self.object_scale), f(self.noobject_scale),
                                     f(self.class_scale), random_index, self.delta.reshape(batch, -1))
        self.cost = delta_cost(self.delta)
        avg_iou, avg_cat, avg_allcat, avg_obj, avg_anyobj, count = stats
        self.stats = dict(avg_iou=ratio(avg_iou, count), avg_cat=ratio(avg_cat, count),
                          avg_allcat=ratio(avg_allcat, count * self.classes), avg_obj=ratio(avg_obj, count),
                          avg_anyobj=ratio(avg_anyobj, batch * cells * self.n), count=count)
        if not getattr(net, "quiet", False):
            s = self.stats
            print(f"Detection Avg IOU: {printf_f(s['avg_iou'])}, Pos Cat: {printf_f(s['avg_cat'])}, "
                  f"All Cat: {printf_f(s['avg_allcat'])}, Pos Obj: {printf_f(s['avg_obj'])}, "
                  f"Any Obj: {printf_f(s['avg_anyobj'])}, count: {count}", file=sys.stderr)

    def backward(self, net):
        """The delta added to the previous layer's as it is (darknet's)."""
        self.add_delta_to_previous(net)

    def detections(self, output, w, h, netw, neth, thresh, hier_thresh=0.5, relative=True, letterbox=True):
        """Darknet's get_detection_detections for one image's output: num boxes per cell (cell by cell),
        in PIXELS of the w x h image whatever `relative` says (darknet ignores it here, and the network
        size: YOLOv1 stretches the image, no letterbox). Objectness is the raw box confidence; a class
        probability is confidence x class score, 0 unless over thresh."""
        cells = self.side * self.side
        p = np.asarray(output, np.float32).reshape(-1)
        cls = p[:cells * self.classes].reshape(cells, self.classes)
        conf = p[cells * self.classes:cells * (self.classes + self.n)].reshape(cells, self.n)
        box = p[cells * (self.classes + self.n):cells * (self.classes + self.n * 5)].reshape(cells, self.n, 4)
        cell = np.arange(cells)
        col = (cell % self.side).astype(np.float32)[:, None]
        row = (cell // self.side).astype(np.float32)[:, None]
        side = np.float32(self.side)
        bbox = np.empty((cells, self.n, 4), np.float32)
        bbox[..., 0] = (box[..., 0] + col) / side * np.float32(w)
        bbox[..., 1] = (box[..., 1] + row) / side * np.float32(h)
        power = 2.0 if self.sqrt else 1.0
        bbox[..., 2] = np.power(box[..., 2].astype(np.float64), power) * w
        bbox[..., 3] = np.power(box[..., 3].astype(np.float64), power) * h
        prob = conf[:, :, None] * cls[:, None, :]                              # (cell, box, class)
        prob = np.where(prob > np.float32(thresh), prob, np.float32(0))
        return Detections(bbox.reshape(-1, 4), conf.reshape(-1), prob.reshape(-1, self.classes))
