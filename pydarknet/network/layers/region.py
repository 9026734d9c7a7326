"""[region]: YOLOv2's output layer (and YOLO9000's, with a class tree).

The input holds, for each of `num` anchors, `coords` box values (x, y, w, h, then any mask values), an
objectness score and `classes` class scores, each a w x h plane. Forward squashes x, y and objectness with
the logistic and turns class scores into probabilities (softmax over the classes, logistic, or one softmax
per group of a class tree); decoding gives one candidate box per anchor and cell.

pjreddie's CPU code cannot run a class tree: its tree softmax starts at the wrong offset with the wrong
stride and divides by an unset temperature of 0 (all NaN; darknet issues #143 and #144). We run the tree
softmax the way darknet's GPU code does (one softmax per group, per anchor and cell, temperature 1),
which is what YOLO9000's weights expect. Without a tree every step follows the CPU code.
"""
import sys

import numpy as np

from ...files.config import DarknetError
from ...kernels import loss
from ...kernels.region import region_forward, region_tree_probs
from ...results.boxes import Detections, correct_boxes
from ...results.tree import read_map, read_option_file, read_tree
from .base import Layer, delta_cost, full, printf_f, ratio


class Region(Layer):
    type = "region"
    names = ("region",)

    def __init__(self, section, in_shape, net, index):
        s = self.section = section
        self.index = index
        self.coords = s.int("coords", 4)
        self.classes = s.int("classes", 20)
        self.n = s.int("num", 1)
        if self.coords < 4:
            raise self.error(f"coords={self.coords}: a box needs at least 4", "coords")
        if self.classes < 0 or self.n < 1:
            raise self.error("classes must not be negative and num must be at least 1",
                             "num" if self.n < 1 else "classes")
        self.log = s.int("log", 0)
        self.sqrt = s.int("sqrt", 0)
        self.softmax = s.int("softmax", 0)
        self.background = s.int("background", 0)
        self.max_boxes = s.int("max", 30)
        self.jitter = s.float("jitter", 0.2)
        self.rescore = s.int("rescore", 0)
        self.thresh = s.float("thresh", 0.5)
        self.classfix = s.int("classfix", 0)
        self.absolute = s.int("absolute", 0)
        self.random = s.float("random", 0) if net.darknet == "ab" else s.int("random", 0)   # the fork: 1.2 = x1.2
        self.coord_scale = s.float("coord_scale", 1)
        self.object_scale = s.float("object_scale", 1)
        self.noobject_scale = s.float("noobject_scale", 1)
        self.mask_scale = s.float("mask_scale", 1)
        self.class_scale = s.float("class_scale", 1)
        self.bias_match = s.int("bias_match", 0)
        self.background = 1 if self.background else 0
        self.tree = None
        if s.has("tree"):
            self.tree = read_option_file(s, "tree", read_tree, self.error)
            if self.tree.n != self.classes:
                raise self.error(f"the class tree {self.tree.path} has {self.tree.n} classes but "
                                 f"classes={self.classes}", "tree")
        self.map = read_option_file(s, "map", read_map, self.error) if s.has("map") else None
        self.biases = full(0.5, self.n * 2)
        anchors = s.floats("anchors")
        if anchors:
            if len(anchors) > 2 * self.n:
                raise self.error(f"{len(anchors)} anchor values but num={self.n} takes {2 * self.n}", "anchors")
            self.biases[:len(anchors)] = anchors
        super().__init__(section, in_shape, net, index)

    @property
    def entries(self):
        return self.coords + 1 + self.classes

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        need = self.n * self.entries
        if c != need:
            raise self.error(f"input has {c} channels but num={self.n} anchors x ({self.coords} coords + 1 + "
                             f"{self.classes} classes) need {need}: set filters={need} in the layer before it")
        self.out_shape = self.in_shape

    def describe(self):
        return "detection"

    # -- inference ------------------------------------------------------------------------------------------
    def forward(self, x, net):
        batch = x.shape[0]
        out = self.output_buffer(batch)
        out[...] = x
        _, h, w = self.in_shape
        if self.tree is not None:
            offsets, sizes = self.tree.group_offset, self.tree.group_size
        else:
            offsets = sizes = np.zeros(0, np.int64)
        region_forward(x.reshape(-1), out.reshape(-1), batch * self.n, self.entries, h * w, self.coords,
                       self.classes, self.background, bool(self.softmax), offsets, sizes)
        if net.train:
            self.loss(out, net)
        return out

    # -- training ------------------------------------------------------------------------------------------
    def loss(self, out, net):
        """darknet's forward_region_layer in training mode: the YOLOv2 deltas and cost (sum of delta^2).

        Every prediction's objectness is pushed to 0 (noobject_scale) unless it overlaps a truth by more than
        thresh; until 12800 images are seen every box is also pulled (scale .01) to its anchor at the cell
        centre; each truth (at most 30, rows x y w h [mask] class) goes to the anchor of its cell whose shape
        fits best, with box deltas times coord_scale*(2 - w*h), objectness 1 (object_scale; the IoU with
        rescore), and class deltas (a softmax's or the logistics', or along a class tree's path). Deltas of
        x, y and objectness are taken on the logistic's output; backward multiplies them by its gradient, as
        darknet's GPU backward does (pjreddie's CPU backward of this layer is empty: it cannot train it)."""
        batch = out.shape[0]
        _, h, w = self.out_shape
        shape = (batch, self.n, self.entries, h, w)
        truth = np.ascontiguousarray(net.truth.reshape(batch, -1))
        per = self.coords + 1
        for b in range(batch):
            for t in range(min(30, truth.shape[1] // per)):
                row = truth[b, t * per:(t + 1) * per]
                if row[0] == 0:
                    break
                cls = int(row[self.coords])
                limit = len(self.map) if self.map is not None else self.classes
                if not 0 <= cls < limit:
                    raise DarknetError(f"layer {self.index} ([region], {self.classes} classes): truth box of "
                                       f"class {row[self.coords]:g} in image {b} of the batch")
        t = self.tree
        empty = np.zeros(0, np.int64)
        parent, group, offsets, sizes = ((t.parent, t.group, t.group_offset, t.group_size) if t is not None
                                         else (empty, empty, empty, empty))
        class_map = np.asarray(self.map, np.int64) if self.map is not None else empty
        delta = self.delta.reshape(shape)
        f = np.float32
        stats = loss.region_delta(out.reshape(shape), truth, self.biases, self.coords, int(net.seen), f(self.thresh),
                                  bool(self.bias_match), bool(self.rescore), bool(self.background),
                                  f(self.coord_scale), f(self.object_scale), f(self.noobject_scale),
                                  int(self.mask_scale), f(self.class_scale), not self.softmax, parent, group,
                                  offsets, sizes, class_map, delta)
        self.cost = delta_cost(self.delta)
        avg_iou, avg_cat, avg_obj, avg_anyobj, recall, count, class_count = stats
        self.stats = dict(avg_iou=ratio(avg_iou, count), avg_cat=ratio(avg_cat, class_count),
                          avg_obj=ratio(avg_obj, count), avg_anyobj=ratio(avg_anyobj, h * w * self.n * batch),
                          recall=ratio(recall, count), count=count)
        if not getattr(net, "quiet", False):
            s = self.stats
            print(f"Region Avg IOU: {printf_f(s['avg_iou'])}, Class: {printf_f(s['avg_cat'])}, "
                  f"Obj: {printf_f(s['avg_obj'])}, No Obj: {printf_f(s['avg_anyobj'])}, "
                  f"Avg Recall: {printf_f(s['recall'])},  count: {count}", file=sys.stderr)

    def backward(self, net):
        """The logistic's gradient on the x, y and objectness deltas, then the delta added to the previous
        layer's (darknet's GPU backward; mask values and classes pass as they are)."""
        batch = self.delta.shape[0]
        _, h, w = self.out_shape
        shape = (batch, self.n, self.entries, h, w)
        loss.region_logistic_gradient(self.output.reshape(shape), self.delta.reshape(shape), self.coords,
                                      bool(self.background))
        self.add_delta_to_previous(net)

    def detections(self, output, w, h, netw, neth, thresh, hier_thresh=0.5, relative=True, letterbox=True,
                   map=None):
        """Darknet's get_region_detections for one image's output (c, h, w): a candidate for every anchor
        and cell, in darknet's order (anchor by anchor, cells row by row), boxes mapped onto the w x h
        image. Objectness and class probabilities not over `thresh` are 0. With a class tree, each box
        keeps only its deepest class whose path probability exceeds `hier_thresh`, or with `map` (a
        sequence of 200 class indices, darknet's 9k-to-200 map) the mapped classes."""
        _, lh, lw = self.out_shape
        wh = lh * lw
        thresh = np.float32(thresh)
        p = np.array(output, np.float32).reshape(self.n, self.entries, wh)  # a copy: the tree decoding edits it
        cell = np.arange(wh)
        bbox = np.empty((self.n, wh, 4), np.float32)
        bbox[..., 0] = ((cell % lw).astype(np.float32) + p[:, 0]) / np.float32(lw)
        bbox[..., 1] = ((cell // lw).astype(np.float32) + p[:, 1]) / np.float32(lh)
        with np.errstate(over="ignore"):  # an untrained net's huge logits give inf boxes, as in darknet
            bbox[..., 2] = np.exp(p[:, 2].astype(np.float64)) * self.biases[0::2, None] / lw
            bbox[..., 3] = np.exp(p[:, 3].astype(np.float64)) * self.biases[1::2, None] / lh
        if self.background:
            scale = np.ones((self.n, wh), np.float32)
        else:
            scale = p[:, self.coords].copy()
        objectness = np.where(scale > thresh, scale, np.float32(0))
        prob = np.zeros((self.n * wh, self.classes), np.float32)
        if self.tree is not None:
            t = self.tree
            class_map = np.zeros(0, np.int64)
            if map is not None:
                class_map = np.asarray(map, np.int64)
                if len(class_map) < 200 or self.classes < 200:
                    raise DarknetError(f"{self.section.where('tree')}: a class map needs 200 entries and a "
                                       f"layer of at least 200 classes (darknet's 200-class map)")
                class_map = class_map[:200]
                if class_map.min() < 0 or class_map.max() >= self.classes:
                    raise DarknetError(f"{self.section.where('tree')}: the class map refers to classes "
                                       f"outside 0..{self.classes - 1}")
            region_tree_probs(p.reshape(-1), self.n, self.entries, wh, self.coords, self.classes,
                              self.background, t.parent, t.child, t.group_size, t.group_offset, t.leaf,
                              class_map, scale.reshape(-1), thresh, np.float32(hier_thresh), prob)
        else:
            live = (objectness != 0).reshape(-1)
            cls = p[:, self.coords + 1:].transpose(0, 2, 1).reshape(-1, self.classes)   # (anchor*cell, class)
            v = scale.reshape(-1, 1)[live] * cls[live]
            prob[live] = np.where(v > thresh, v, np.float32(0))
        bbox = bbox.reshape(-1, 4)
        correct_boxes(bbox, w, h, netw, neth, relative, letterbox)
        return Detections(bbox, objectness.reshape(-1), prob)
