"""[yolo]: YOLOv3's output layer. Forward squashes x, y, objectness and class scores with the logistic;
decoding turns each anchor's prediction over the threshold into a box relative to the network input."""
import numpy as np

from ..boxes import Detections, correct_boxes
from ..kernels.activations import LOGISTIC, activate_array
from .base import Layer, zeros


class Yolo(Layer):
    type = "yolo"
    names = ("yolo",)

    def __init__(self, section, in_shape, net, index):
        s = self.section = section
        self.index = index
        self.classes = s.int("classes", 20)
        self.total = s.int("num", 1)
        self.mask = s.ints("mask") or list(range(self.total))
        self.max_boxes = s.int("max", 90)
        self.jitter = s.float("jitter", 0.2)
        self.ignore_thresh = s.float("ignore_thresh", 0.5)
        self.truth_thresh = s.float("truth_thresh", 1.0)
        self.random = s.int("random", 0)
        self.biases = np.full(self.total * 2, 0.5, np.float32)
        anchors = s.floats("anchors")
        if anchors:
            if len(anchors) > 2 * self.total:
                raise self.error(f"{len(anchors)} anchor values but num={self.total} needs {2 * self.total}",
                                 "anchors")
            self.biases[:len(anchors)] = anchors
        if any(not 0 <= m < self.total for m in self.mask):
            raise self.error(f"mask={s.raw('mask')} must index anchors 0..{self.total - 1}", "mask")
        self.n = len(self.mask)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        need = self.n * (self.classes + 5)
        if c != need:
            raise self.error(f"input has {c} channels but {self.n} anchors x ({self.classes} classes + 5) "
                             f"need {need}: set filters={need} in the [convolutional] before it")
        self.out_shape = self.in_shape

    def describe(self):
        return "yolo"

    def forward(self, x, net):
        out = x.copy()
        grid = out.reshape(x.shape[0], self.n, self.classes + 5, -1)
        for b in range(x.shape[0]):
            for a in range(self.n):
                xy = grid[b, a, 0:2].reshape(-1)
                scores = grid[b, a, 4:].reshape(-1)
                activate_array(xy, LOGISTIC)
                activate_array(scores, LOGISTIC)
        return out

    def detections(self, output, w, h, netw, neth, thresh, hier_thresh=0.5, relative=True, letterbox=True):
        """Darknet's get_yolo_detections for one image's output (c, h, w): boxes with objectness > thresh.
        (hier_thresh is for [region] layers with a class tree; a [yolo] layer has none.)"""
        _, lh, lw = self.out_shape
        p = output.reshape(self.n, self.classes + 5, lh * lw)
        obj = p[:, 4, :]                                   # (anchor, cell)
        cell, anchor = np.nonzero(obj.T > thresh)          # darknet's loop order: cells, then anchors
        col = (cell % lw).astype(np.float32)
        row = (cell // lw).astype(np.float32)
        mask = np.array(self.mask)[anchor]
        bbox = np.empty((len(cell), 4), np.float32)
        bbox[:, 0] = (col + p[anchor, 0, cell]) / np.float32(lw)
        bbox[:, 1] = (row + p[anchor, 1, cell]) / np.float32(lh)
        bbox[:, 2] = np.exp(p[anchor, 2, cell].astype(np.float64)) * self.biases[2 * mask] / netw
        bbox[:, 3] = np.exp(p[anchor, 3, cell].astype(np.float64)) * self.biases[2 * mask + 1] / neth
        objectness = obj[anchor, cell]
        prob = objectness[:, None] * p[anchor, 5:, cell]
        prob[prob <= thresh] = 0
        correct_boxes(bbox, w, h, netw, neth, relative, letterbox)
        return Detections(bbox, objectness, prob)
