"""[yolo]: YOLOv3's output layer. Forward squashes x, y, objectness and class scores with the logistic;
decoding turns each anchor's prediction over the threshold into a box relative to the network input.
In training, forward also computes darknet's YOLOv3 loss: the delta and the cost (see `loss`)."""
import sys

import numpy as np

from ...files.config import DarknetError
from ...kernels import backward, loss
from ...kernels.activations import LOGISTIC, activate_array, logistic_array32, yolo_fast
from ...results.boxes import Detections, correct_boxes
from .base import Layer, delta_cost, fast_inference, full, printf_f, ratio

# The fork's spellings. NMS: greedynms suppresses by DIoU (exponent .6), diounms by DIoU with exponent beta_nms.
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")
IOU_KINDS = ("mse", "iou", "giou", "diou", "ciou")


class Yolo(Layer):
    type = "yolo"
    names = ("yolo",)

    def __init__(self, section, in_shape, net, index):
        s = self.section = section
        self.index = index
        self.classes = s.int("classes", 20)
        self.total = s.int("num", 1)
        self.mask = s.ints("mask") or list(range(self.total))
        self.max_boxes = s.int("max", 200 if net.darknet == "ab" else 90)
        self.jitter = s.float("jitter", 0.2)
        self.ignore_thresh = s.float("ignore_thresh", 0.5)
        self.truth_thresh = s.float("truth_thresh", 1.0)
        self.random = s.float("random", 0) if net.darknet == "ab" else s.int("random", 0)   # the fork: 1.2 = x1.2
        self._parse_fork_options(s)
        if self.total < 1:
            raise self.error(f"num={self.total} must be at least 1", "num")
        self.biases = full(0.5, self.total * 2)
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

    def _parse_fork_options(self, s):
        """The AlexeyAB fork's [yolo] options, with its defaults. Inference uses scale_x_y, new_coords (forward,
        decoding) and nms_kind, beta_nms (the detector's NMS); the rest shape the fork's training loss."""
        self.scale_x_y = np.float32(s.float("scale_x_y", 1))
        self.new_coords = s.int("new_coords", 0)
        kind = s.str("nms_kind", "default")
        if kind not in NMS_KINDS:
            raise self.error(f"nms_kind={kind}: expected one of {', '.join(NMS_KINDS)}", "nms_kind")
        # The fork's [yolo] reads cornersnms as the default kind (only [Gaussian_yolo] keeps it apart); both
        # suppress by plain IoU.
        self.nms_kind = "default" if kind == "cornersnms" else kind
        self.beta_nms = np.float32(s.float("beta_nms", 0.6))
        self.iou_loss = self._iou_kind(s, "iou_loss", "mse")
        self.iou_thresh_kind = self._iou_kind(s, "iou_thresh_kind", "iou")
        self.iou_normalizer = s.float("iou_normalizer", 0.75)
        self.obj_normalizer = s.float("obj_normalizer", 1)
        self.cls_normalizer = s.float("cls_normalizer", 1)
        self.delta_normalizer = s.float("delta_normalizer", 1)
        self.uc_normalizer = s.float("uc_normalizer", 1)   # [Gaussian_yolo]'s; the fork's yolov4-sam cfg sets it
        self.max_delta = s.float("max_delta", float(np.finfo(np.float32).max))
        self.iou_thresh = s.float("iou_thresh", 1)
        self.objectness_smooth = s.int("objectness_smooth", 0)
        self.label_smooth_eps = s.float("label_smooth_eps", 0)
        self.focal_loss = s.int("focal_loss", 0)
        self.resize = s.float("resize", 1)
        self.show_details = s.int("show_details", 1)
        counts = s.ints("counters_per_class")
        if counts is not None and len(counts) != self.classes:
            raise self.error(f"{len(counts)} counters_per_class for {self.classes} classes", "counters_per_class")
        self.counters_per_class = counts
        s.raw("beta1")  # in the fork's yolov4-sam cfg, read by no darknet

    def _iou_kind(self, s, key, default):
        kind = s.str(key, default)
        if kind not in IOU_KINDS:
            raise self.error(f"{key}={kind}: expected one of {', '.join(IOU_KINDS)}", key)
        return kind

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
        """The logistic on x, y, objectness and class scores (none at all with new_coords=1: the convolution
        before already applied it), then x, y stretched by scale_x_y about the cell's centre: s*x - (s-1)/2.
        With the fast products (not training) a vectorised logistic, the copy and the scaling in one parallel
        pass (kernels.activations.yolo_fast). The output is the layer's buffer, rewritten by the next pass (a copy
        of a large head's input in fresh memory cost its pages' first touch every pass)."""
        out = self.output_buffer(x.shape[0])
        shift = np.float32(-0.5 * np.float64(self.scale_x_y - np.float32(1)))
        if fast_inference(net):
            rows = x.shape[0] * self.n
            yolo_fast(x.reshape(rows, -1), out.reshape(rows, -1), x.shape[2] * x.shape[3], not self.new_coords,
                      self.scale_x_y, shift)
            return out
        out[...] = x
        grid = out.reshape(x.shape[0], self.n, self.classes + 5, -1)
        if net.darknet == "ab":
            logistic = logistic_array32
        else:
            def logistic(rows):
                activate_array(rows, LOGISTIC)
        for b in range(x.shape[0]):
            for a in range(self.n):
                xy = grid[b, a, 0:2].reshape(-1)
                if not self.new_coords:
                    logistic(xy)
                    logistic(grid[b, a, 4:].reshape(-1))
                if self.scale_x_y != 1:
                    xy *= self.scale_x_y
                    xy += shift
        if net.train:
            self.loss(out, net)
        return out

    def loss(self, out, net):
        """darknet's forward_yolo_layer in training mode: fills self.delta and self.cost, prints the statistics
        (pjreddie's loss, or the fork's for net.darknet == "ab": see fork_loss).

        pjreddie's: every prediction's objectness is pushed to 0 unless its box overlaps some truth by more than
        ignore_thresh (then left alone) or truth_thresh (then trained as that truth's). Each truth is assigned to
        the anchor (of all `num`, not only this layer's mask) whose shape fits it best; if that anchor is in this
        layer's mask, the prediction at the truth's cell gets box deltas (target - prediction, in the raw
        x, y, log-w, log-h space, times 2 - w*h), objectness 1 and independent logistic class targets.
        The deltas of x, y, objectness and classes are minus the gradient of the logistic cross-entropy with
        respect to the layer's input; those of w, h are minus the gradient of (2 - w*h)/2 * squared error (so
        the "2 - w*h" scale enters squared-error's gradient once, not the loss). cost = sum of delta^2.
        """
        batch = out.shape[0]
        _, h, w = self.out_shape
        shape = (batch, self.n, self.classes + 5, h, w)
        truth = self.truth_rows(net, batch)
        delta = self.delta.reshape(shape)
        if net.darknet == "ab":
            self.fork_loss(out.reshape(shape), truth, delta, net)
            return
        stats = loss.yolo_delta(out.reshape(shape), truth, self.biases, np.asarray(self.mask, np.int64), net.w, net.h,
                                np.float32(self.ignore_thresh), np.float32(self.truth_thresh), delta)
        self.cost = delta_cost(self.delta)
        avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75, count = stats
        self.stats = dict(avg_iou=ratio(avg_iou, count), avg_cat=ratio(avg_cat, count),
                          avg_obj=ratio(avg_obj, count), avg_anyobj=ratio(avg_anyobj, h * w * self.n * batch),
                          recall=ratio(recall, count), recall75=ratio(recall75, count), count=count)
        if not getattr(net, "quiet", False):
            s = self.stats
            print(f"Region {net.index} Avg IOU: {printf_f(s['avg_iou'])}, Class: {printf_f(s['avg_cat'])}, "
                  f"Obj: {printf_f(s['avg_obj'])}, No Obj: {printf_f(s['avg_anyobj'])}, .5R: {printf_f(s['recall'])}, "
                  f".75R: {printf_f(s['recall75'])},  count: {count}", file=sys.stderr)

    def truth_rows(self, net, batch):
        """net.truth as (batch, boxes, 5) rows x y w h class (at most max_boxes), checking the classes."""
        truth = net.truth.reshape(batch, -1)
        boxes = min(self.max_boxes, truth.shape[1] // 5)
        truth = np.ascontiguousarray(truth[:, :boxes * 5].reshape(batch, boxes, 5))
        for b in range(batch):
            rows = truth[b]
            end = np.argmax(rows[:, 0] == 0) if np.any(rows[:, 0] == 0) else boxes
            bad = (rows[:end, 4] < 0) | (rows[:end, 4] >= self.classes)
            if np.any(bad):
                raise DarknetError(f"layer {self.index} ([yolo], {self.classes} classes): truth box of class "
                                   f"{rows[:end, 4][bad][0]:g} in image {b} of the batch")
        return truth

    def fork_loss(self, p, truth, delta, net):
        """The AlexeyAB fork's [yolo] loss (kernels.loss.yolo_delta_fork: iou_loss, the normalizers, max_delta,
        iou_thresh, objectness_smooth, label_smooth_eps, focal_loss, counters_per_class) and its cost: with
        iou_loss=mse the squared delta; otherwise obj_normalizer x the squared deltas of all but the box rows
        plus iou_normalizer x the mean 1 - IoU (1 - GIoU for giou) of the trained boxes. Prints the fork's
        statistics line; the boxes trained count towards the network's total_bbox line."""
        f32 = np.float32
        stats = loss.yolo_delta_fork(
            p, truth, self.biases, np.asarray(self.mask, np.int64), net.w, net.h, f32(self.ignore_thresh),
            f32(self.truth_thresh), IOU_KINDS.index(self.iou_loss), f32(self.iou_normalizer),
            f32(self.obj_normalizer), f32(self.cls_normalizer), f32(self.max_delta), f32(self.iou_thresh),
            IOU_KINDS.index(self.iou_thresh_kind), bool(self.new_coords), bool(self.objectness_smooth),
            f32(self.label_smooth_eps), bool(self.focal_loss), self.class_multipliers(), delta)
        tot_iou, tot_iou_loss, tot_giou_loss, count, bboxes, rewritten = stats
        net.total_bbox = getattr(net, "total_bbox", 0) + bboxes
        net.rewritten_bbox = getattr(net, "rewritten_bbox", 0) + rewritten
        count = max(count, 1)
        total = delta_cost(delta)
        boxless = delta.copy()
        boxless[:, :, :4] = 0
        classification = f32(np.float64(f32(self.obj_normalizer)) * np.float64(delta_cost(boxless)))
        if self.iou_loss == "mse":
            self.cost = total
        else:
            mean_loss = tot_giou_loss if self.iou_loss == "giou" else tot_iou_loss
            self.cost = f32(f32(self.iou_normalizer) * f32(f32(mean_loss) / f32(count)) + classification)
        batch = f32(p.shape[0])
        self.stats = dict(avg_iou=f32(f32(tot_iou) / f32(count)), count=int(stats[3]),
                          class_loss=f32(classification / batch), iou_loss=f32(f32(total - classification) / batch),
                          total_loss=f32(total / batch))
        if not getattr(net, "quiet", False):
            s = self.stats
            kind = self.iou_loss if self.iou_loss in ("mse", "giou") else "iou"
            print(f"v3 ({kind} loss, Normalizer: (iou: {self.iou_normalizer:.2f}, obj: {self.obj_normalizer:.2f}, "
                  f"cls: {self.cls_normalizer:.2f}) Region {net.index} Avg (IOU: {printf_f(s['avg_iou'])}), count: "
                  f"{count}, class_loss = {printf_f(s['class_loss'])}, iou_loss = {printf_f(s['iou_loss'])}, "
                  f"total_loss = {printf_f(s['total_loss'])} ", file=sys.stderr)

    def class_multipliers(self):
        """The fork's counters_per_class weights: the largest count over each class's (counts under 1 taken as
        1), capped at max_delta; empty without counters_per_class."""
        if self.counters_per_class is None:
            return np.zeros(0, np.float32)
        counts = np.maximum(np.asarray(self.counters_per_class, np.float32), 1)
        return np.minimum(counts.max() / counts, np.float32(self.max_delta)).astype(np.float32)

    def backward(self, net):
        """The loss's delta is already with respect to this layer's input: added to the previous delta (the
        fork's GPU backward scales it by delta_normalizer)."""
        if net.darknet == "ab" and self.delta_normalizer != 1:
            prev = self.prev_delta(net)
            if prev is not None:
                backward.axpy(np.float32(self.delta_normalizer), self.delta.reshape(-1), prev.reshape(-1))
            return
        self.add_delta_to_previous(net)

    def detections(self, output, w, h, netw, neth, thresh, hier_thresh=0.5, relative=True, letterbox=True,
                   darknet="pjreddie"):
        """Darknet's get_yolo_detections for one image's output (c, h, w): boxes with objectness > thresh.
        With new_coords=1 (the fork) width and height are (2 t)^2 times the anchor instead of exp(t) times it.
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
        if self.new_coords:
            tw, th = p[anchor, 2, cell], p[anchor, 3, cell]
            bbox[:, 2] = tw * tw * np.float32(4) * self.biases[2 * mask] / np.float32(netw)
            bbox[:, 3] = th * th * np.float32(4) * self.biases[2 * mask + 1] / np.float32(neth)
        else:
            with np.errstate(over="ignore"):  # an untrained net's huge logits give inf boxes, as in darknet
                bbox[:, 2] = np.exp(p[anchor, 2, cell].astype(np.float64)) * self.biases[2 * mask] / netw
                bbox[:, 3] = np.exp(p[anchor, 3, cell].astype(np.float64)) * self.biases[2 * mask + 1] / neth
        objectness = obj[anchor, cell]
        prob = objectness[:, None] * p[anchor, 5:, cell]
        prob[~(prob > thresh)] = 0                         # NaN too, as darknet's (prob > thresh) ? prob : 0
        correct_boxes(bbox, w, h, netw, neth, relative, letterbox, darknet)
        return Detections(bbox, objectness, prob)
