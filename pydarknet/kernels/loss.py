"""Losses of the output layers in training mode: the delta they start the backward pass with, and the cost.

Float semantics follow darknet's C code (float32 where it computes in float, double where C promotes).
"""
import math

import numpy as np
from numba import njit, prange

from .activations import recip_newton
from .backward import sum4

F32 = np.float32


@njit(cache=True, inline="always")
def _intersection_union(ax, ay, aw, ah, bx, by, bw, bh):
    """Intersection and union of two centre-size boxes as darknet computes them, in float32 (w/2 is w*0.5
    exactly)."""
    half = F32(0.5)
    iw = min(ax + aw * half, bx + bw * half) - max(ax - aw * half, bx - bw * half)
    ih = min(ay + ah * half, by + bh * half) - max(ay - ah * half, by - bh * half)
    inter = F32(0.0) if (iw < 0 or ih < 0) else iw * ih
    return inter, aw * ah + bw * bh - inter


@njit(cache=True, inline="always")
def _iou(ax, ay, aw, ah, bx, by, bw, bh):
    """darknet's box_iou on centre-size boxes."""
    inter, union = _intersection_union(ax, ay, aw, ah, bx, by, bw, bh)
    return inter / union


@njit(cache=True, inline="always")
def _mask_slot(mask, anchor):
    """Which of this layer's anchors (its mask) is `anchor` of the whole list, or -1 when it is not one."""
    for slot in range(mask.size):
        if mask[slot] == anchor:
            return slot
    return -1


@njit(cache=True, inline="always")
def _best_anchor(biases, total, netw, neth, tw, th, fork):
    """The anchor (of all `total`) whose shape fits a truth of size tw x th best: the largest IoU of the two
    boxes centred together (the first of equal ones), with the fork's IoU or darknet's."""
    best_iou = F32(0.0)
    best_n = 0
    for k in range(total):
        aw = biases[2 * k] / F32(netw)
        ah = biases[2 * k + 1] / F32(neth)
        if fork:
            iou = _fork_iou(F32(0.0), F32(0.0), aw, ah, F32(0.0), F32(0.0), tw, th)
        else:
            iou = _iou(F32(0.0), F32(0.0), aw, ah, F32(0.0), F32(0.0), tw, th)
        if iou > best_iou:
            best_iou = iou
            best_n = k
    return best_n


@njit(cache=True, inline="always")
def _detection_box(out, bi, fside, sqrt_wh):
    """A [detection] layer's box at bi as the loss compares it: centre in image units, size squared if sqrt."""
    ow = out[bi + 2]
    oh = out[bi + 3]
    if sqrt_wh:
        ow = ow * ow
        oh = oh * oh
    return out[bi] / fside, out[bi + 1] / fside, ow, oh


@njit(cache=True, inline="always")
def _pred_box(p, b, a, i, j, anchor, biases, netw, neth):
    """darknet's get_yolo_box for cell (i, j) of anchor slot a, with the size of anchor `anchor`."""
    lh, lw = p.shape[3], p.shape[4]
    x = (F32(i) + p[b, a, 0, j, i]) / F32(lw)
    y = (F32(j) + p[b, a, 1, j, i]) / F32(lh)
    w = F32(math.exp(np.float64(p[b, a, 2, j, i])) * np.float64(biases[2 * anchor]) / netw)
    h = F32(math.exp(np.float64(p[b, a, 3, j, i])) * np.float64(biases[2 * anchor + 1]) / neth)
    return x, y, w, h


@njit(cache=True, inline="always")
def _delta_box(p, delta, b, a, i, j, anchor, truth, biases, netw, neth):
    """darknet's delta_yolo_box: coordinate deltas (target - prediction) times 2 - w*h; returns the IoU."""
    lh, lw = p.shape[3], p.shape[4]
    tx0, ty0, tw0, th0 = truth[0], truth[1], truth[2], truth[3]
    px, py, pw, ph = _pred_box(p, b, a, i, j, anchor, biases, netw, neth)
    iou = _iou(px, py, pw, ph, tx0, ty0, tw0, th0)
    scale = F32(2.0) - tw0 * th0
    tx = tx0 * F32(lw) - F32(i)
    ty = ty0 * F32(lh) - F32(j)
    tw = F32(math.log(np.float64(tw0 * F32(netw) / biases[2 * anchor])))
    th = F32(math.log(np.float64(th0 * F32(neth) / biases[2 * anchor + 1])))
    delta[b, a, 0, j, i] = scale * (tx - p[b, a, 0, j, i])
    delta[b, a, 1, j, i] = scale * (ty - p[b, a, 1, j, i])
    delta[b, a, 2, j, i] = scale * (tw - p[b, a, 2, j, i])
    delta[b, a, 3, j, i] = scale * (th - p[b, a, 3, j, i])
    return iou


@njit(cache=True, inline="always")
def _delta_class(p, delta, b, a, i, j, cls, classes):
    """darknet's delta_yolo_class: independent logistic targets; when the cell already has a class delta (an
    earlier truth matched the same anchor and cell) only this class's entry is set. Returns the predicted
    probability of `cls`."""
    if delta[b, a, 5, j, i] != 0:
        delta[b, a, 5 + cls, j, i] = F32(1.0) - p[b, a, 5 + cls, j, i]
        return p[b, a, 5 + cls, j, i]
    for k in range(classes):
        delta[b, a, 5 + k, j, i] = (F32(1.0) if k == cls else F32(0.0)) - p[b, a, 5 + k, j, i]
    return p[b, a, 5 + cls, j, i]


@njit(cache=True)
def yolo_delta(p, truth, biases, mask, netw, neth, ignore_thresh, truth_thresh, delta):
    """darknet's forward_yolo_layer in training mode, after the logistic.

    p: the layer's output viewed (batch, anchors, 5 + classes, h, w); truth (batch, boxes, 5) rows x y w h
    class, ending at the first x == 0; delta: like p, zero on entry. Returns the statistics darknet prints:
    (sum IoU, sum class prob, sum obj, sum obj over all predictions, count IoU>.5, count IoU>.75, count).
    """
    batch, n, _, lh, lw = p.shape
    classes = p.shape[2] - 5
    total = biases.size // 2
    avg_iou = F32(0.0)
    recall = F32(0.0)
    recall75 = F32(0.0)
    avg_cat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for a in range(n):
                    px, py, pw, ph = _pred_box(p, b, a, i, j, mask[a], biases, netw, neth)
                    best_iou = F32(0.0)
                    best_t = 0
                    for t in range(truth.shape[1]):
                        if truth[b, t, 0] == 0:
                            break
                        iou = _iou(px, py, pw, ph, truth[b, t, 0], truth[b, t, 1], truth[b, t, 2], truth[b, t, 3])
                        if iou > best_iou:
                            best_iou = iou
                            best_t = t
                    obj = p[b, a, 4, j, i]
                    avg_anyobj += obj
                    delta[b, a, 4, j, i] = F32(0.0) - obj
                    if best_iou > ignore_thresh:
                        delta[b, a, 4, j, i] = 0
                    if best_iou > truth_thresh:
                        delta[b, a, 4, j, i] = F32(1.0) - obj
                        cls = int(truth[b, best_t, 4])
                        _delta_class(p, delta, b, a, i, j, cls, classes)
                        _delta_box(p, delta, b, a, i, j, mask[a], truth[b, best_t], biases, netw, neth)
        for t in range(truth.shape[1]):
            if truth[b, t, 0] == 0:
                break
            tw, th = truth[b, t, 2], truth[b, t, 3]
            i = min(int(truth[b, t, 0] * F32(lw)), lw - 1)
            j = min(int(truth[b, t, 1] * F32(lh)), lh - 1)
            best_n = _best_anchor(biases, total, netw, neth, tw, th, False)
            a = _mask_slot(mask, best_n)
            if a < 0:
                continue
            iou = _delta_box(p, delta, b, a, i, j, best_n, truth[b, t], biases, netw, neth)
            avg_obj += p[b, a, 4, j, i]
            delta[b, a, 4, j, i] = F32(1.0) - p[b, a, 4, j, i]
            avg_cat += _delta_class(p, delta, b, a, i, j, int(truth[b, t, 4]), classes)
            count += 1
            if iou > 0.5:
                recall += 1
            if iou > 0.75:
                recall75 += 1
            avg_iou += iou
    return avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75, count


# -- the AlexeyAB fork's [yolo] ---------------------------------------------------------------------------------
# Its iou_loss kinds, in layers/yolo.py's IOU_KINDS order.
MSE, IOU, GIOU, DIOU, CIOU = range(5)
PI = math.pi   # glibc's M_PI: the fork's box.c takes its own 3.141592 only where math.h has none


@njit(cache=True, inline="always")
def _fork_box(p, b, a, i, j, anchor, biases, netw, neth, new_coords):
    """The fork's get_yolo_box: new_coords=1 sizes are (2 t)^2 times the anchor, in float."""
    if not new_coords:
        return _pred_box(p, b, a, i, j, anchor, biases, netw, neth)
    lh, lw = p.shape[3], p.shape[4]
    tw = p[b, a, 2, j, i]
    th = p[b, a, 3, j, i]
    x = (F32(i) + p[b, a, 0, j, i]) / F32(lw)
    y = (F32(j) + p[b, a, 1, j, i]) / F32(lh)
    return (x, y, tw * tw * F32(4.0) * biases[2 * anchor] / F32(netw),
            th * th * F32(4.0) * biases[2 * anchor + 1] / F32(neth))


@njit(cache=True, inline="always")
def _fork_iou(ax, ay, aw, ah, bx, by, bw, bh):
    """The fork's box_iou: 0 (not NaN) when the intersection or the union is 0."""
    inter, union = _intersection_union(ax, ay, aw, ah, bx, by, bw, bh)
    if inter == 0 or union == 0:
        return F32(0.0)
    return inter / union


@njit(cache=True, inline="always")
def _enclosing(ax, ay, aw, ah, bx, by, bw, bh):
    """Width and height of the smallest box holding both (the fork's box_c)."""
    half = F32(0.5)
    w = max(ax + aw * half, bx + bw * half) - min(ax - aw * half, bx - bw * half)
    h = max(ay + ah * half, by + bh * half) - min(ay - ah * half, by - bh * half)
    return w, h


@njit(cache=True, inline="always")
def _aspect_term(aw, ah, bw, bh):
    """CIoU's aspect-ratio distance 4/pi^2 (atan(b) - atan(a))^2 (in double, stored in float), and the
    difference of the arctangents it squares."""
    diff = math.atan(np.float64(bw / bh)) - math.atan(np.float64(aw / ah))
    return F32(diff * diff * (4.0 / (PI * PI))), diff


@njit(cache=True, inline="always")
def _fork_iou_kind(ax, ay, aw, ah, bx, by, bw, bh, kind):
    """The fork's box_iou_kind: IoU, GIoU, DIoU (distance term to the power .6) or CIoU of a against truth b."""
    iou = _fork_iou(ax, ay, aw, ah, bx, by, bw, bh)
    if kind == GIOU:
        cw, ch = _enclosing(ax, ay, aw, ah, bx, by, bw, bh)
        c = cw * ch
        if c == 0:
            return iou
        inter = _intersection_union(ax, ay, aw, ah, bx, by, bw, bh)[0]
        return iou - ((inter + c) - (aw * ah + bw * bh)) / c    # c - union, as -Ofast regroups it
    if kind == DIOU or kind == CIOU:
        cw, ch = _enclosing(ax, ay, aw, ah, bx, by, bw, bh)
        c = cw * cw + ch * ch
        if c == 0:
            return iou
        d = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
        if kind == DIOU:
            return iou - F32(math.pow(np.float64(d / c), 0.6))
        ar, _ = _aspect_term(aw, ah, bw, bh)
        alpha = F32(np.float64(ar) / (np.float64(F32(1.0) - iou + ar) + 0.000001))
        return (iou - d / c) - alpha * ar
    return iou


@njit(cache=True, inline="always")
def _dx_box_iou(px, py, pw, ph, tx, ty, tw, th, kind):
    """The fork's dx_box_iou: the gradient of IoU (GIoU, DIoU, CIoU) with respect to the predicted box's
    x, y, w, h, in float32 as its box.c computes it (its w, h terms not halved; where the boxes do not
    overlap, only the distance terms), in the order GCC's -Ofast build evaluates it: the truth's area as
    tw * th, each group of four divisions by the same square as products with one reciprocal (for the IoU
    term (1/U)^2, for CIoU's distance term 1/C^2), CIoU's w, h as (IoU term + distance term) + aspect term.
    GIoU's and DIoU's 1/C^2 come from rcpps and a Newton step (a vector division), CIoU's from a division."""
    half = F32(0.5)
    zero = F32(0.0)
    top, bot = py - ph * half, py + ph * half
    left, right = px - pw * half, px + pw * half
    pt, pb = min(top, bot), max(top, bot)
    pl, pr = min(left, right), max(left, right)
    tt, tb = ty - th * half, ty + th * half
    tl, tr = tx - tw * half, tx + tw * half
    area = (pb - pt) * (pr - pl)
    area_truth = tw * th      # -Ofast simplifies (ty + th/2) - (ty - th/2) to th
    ih = min(pb, tb) - max(pt, tt)
    iw = min(pr, tr) - max(pl, tl)
    inter = iw * ih
    union = area + area_truth - inter
    dist = (px - tx) * (px - tx) + (py - ty) * (py - ty)
    gw = max(pr, tr) - min(pl, tl)
    gh = max(pb, tb) - min(pt, tt)
    gc = gw * gh
    # d(area)/d(edge), d(intersection)/d(edge), d(enclosing area)/d(edge) for the edges t, b, l, r
    dx_t, dx_b, dx_l, dx_r = -(pr - pl), pr - pl, -(pb - pt), pb - pt
    di_t = -iw if pt > tt else zero
    di_b = iw if pb < tb else zero
    di_l = -ih if pl > tl else zero
    di_r = ih if pr < tr else zero
    du_t, du_b, du_l, du_r = dx_t - di_t, dx_b - di_b, dx_l - di_l, dx_r - di_r
    dc_t = -gw if pt < tt else zero
    dc_b = gw if pb > tb else zero
    dc_l = -gh if pl < tl else zero
    dc_r = gh if pr > tr else zero
    g_t = g_b = g_l = g_r = zero
    if union > 0:
        r = F32(1.0) / union      # -Ofast: 1/U squared, not 1/U^2
        r = r * r
        g_t = (union * di_t - inter * du_t) * r
        g_b = (union * di_b - inter * du_b) * r
        g_l = (union * di_l - inter * du_l) * r
        g_r = (union * di_r - inter * du_r) * r
    if not top < bot:
        g_t = g_b
    if not left < right:
        g_l = g_r
    if kind == GIOU:
        if gc > 0 or iw <= 0 or ih <= 0:
            r = recip_newton(gc * gc)
            e_t = (gc * du_t - union * dc_t) * r
            e_b = (gc * du_b - union * dc_b) * r
            e_l = (gc * du_l - union * dc_l) * r
            e_r = (gc * du_r - union * dc_r) * r
            if iw <= 0 or ih <= 0:
                g_t, g_b, g_l, g_r = e_t, e_b, e_l, e_r
            else:
                g_t, g_b, g_l, g_r = g_t + e_t, g_b + e_b, g_l + e_l, g_r + e_r
    dx = g_l + g_r
    dy = g_t + g_b
    dw = g_r - g_l
    dh = g_b - g_t
    if kind == DIOU or kind == CIOU:
        # the distance term: the enclosing box's corners from the unsorted edges
        cl = min(left, tl)
        cr = max(right, tr)
        ct = min(top, tt)
        cb = max(bot, tb)
        cw = cr - cl
        ch = cb - ct
        c = cw * cw + ch * ch
        dcw_dx = (F32(1.0) if pr > tr else zero) - (F32(1.0) if pl < tl else zero)
        dcw_dw = (half if pr > tr else zero) - (-half if pl < tl else zero)
        dch_dy = (F32(1.0) if pb > tb else zero) - (F32(1.0) if pt < tt else zero)
        dch_dh = (half if pb > tb else zero) - (-half if pt < tt else zero)
        aw_ = zero
        ah_ = zero
        if kind == CIOU:
            ar, diff = _aspect_term(pw, ph, tw, th)
            alpha = F32(np.float64(ar) / (np.float64(F32(1.0) - inter / union + ar) + 0.000001))
            aw_ = alpha * F32(np.float64(ph) * (8.0 / (PI * PI)) * diff)
            ah_ = alpha * F32(np.float64(pw) * (-8.0 / (PI * PI)) * diff)
        if c > 0 or iw <= 0 or ih <= 0:
            r = recip_newton(c * c) if kind == DIOU else F32(1.0) / (c * c)
            ex = (F32(2.0) * (tx - px) * c - F32(2.0) * cw * dcw_dx * dist) * r
            ey = (F32(2.0) * (ty - py) * c - F32(2.0) * ch * dch_dy * dist) * r
            ew = F32(2.0) * cw * dcw_dw * dist * r
            eh = F32(2.0) * ch * dch_dh * dist * r
            if iw <= 0 or ih <= 0:
                dx, dy, dw, dh = ex, ey, ew + aw_, eh + ah_
            else:   # -Ofast adds the distance term to the IoU term first, then the aspect term
                dx, dy, dw, dh = dx + ex, dy + ey, (dw + ew) + aw_, (dh + eh) + ah_
    return dx, dy, dw, dh


@njit(cache=True, inline="always")
def _clip(v, limit):
    """The fork's fix_nan_inf, then its clip_value to [-limit, limit]."""
    if math.isnan(v) or math.isinf(v):
        return F32(0.0)
    return max(-limit, min(limit, v))


@njit(cache=True)   # called, not inlined: yolo_delta_fork calls each twice (compile time)
def _fork_delta_box(p, delta, b, a, i, j, anchor, truth, biases, netw, neth, normalizer, kind, max_delta,
                    new_coords):
    """The fork's delta_yolo_box (accumulating, as all its callers ask): MSE adds (target - prediction) times
    (2 - w*h) and the normalizer in the raw space; the IoU kinds add the normalised IoU gradient (w, h times
    exp(t) without new_coords), cleared of NaN/inf and clipped to max_delta.
    Returns (IoU, GIoU, whether the cell already had a box delta)."""
    lh, lw = p.shape[3], p.shape[4]
    rewritten = delta[b, a, 0, j, i] != 0 or delta[b, a, 1, j, i] != 0 or delta[b, a, 2, j, i] != 0 or \
        delta[b, a, 3, j, i] != 0
    tx0, ty0, tw0, th0 = truth[0], truth[1], truth[2], truth[3]
    px, py, pw, ph = _fork_box(p, b, a, i, j, anchor, biases, netw, neth, new_coords)
    iou = _fork_iou(px, py, pw, ph, tx0, ty0, tw0, th0)
    giou = _fork_iou_kind(px, py, pw, ph, tx0, ty0, tw0, th0, GIOU)
    if kind == MSE:
        # -Ofast: log() of a float stored to a float is logf, and scale * d * normalizer is d * (scale*normalizer)
        weight = (F32(2.0) - tw0 * th0) * normalizer
        tx = tx0 * F32(lw) - F32(i)
        ty = ty0 * F32(lh) - F32(j)
        if new_coords:
            tw = F32(math.sqrt(np.float64(tw0 * F32(netw) / (F32(4.0) * biases[2 * anchor]))))
            th = F32(math.sqrt(np.float64(th0 * F32(neth) / (F32(4.0) * biases[2 * anchor + 1]))))
        else:
            tw = math.log(tw0 * F32(netw) / biases[2 * anchor])
            th = math.log(th0 * F32(neth) / biases[2 * anchor + 1])
        delta[b, a, 0, j, i] += (tx - p[b, a, 0, j, i]) * weight
        delta[b, a, 1, j, i] += (ty - p[b, a, 1, j, i]) * weight
        delta[b, a, 2, j, i] += (tw - p[b, a, 2, j, i]) * weight
        delta[b, a, 3, j, i] += (th - p[b, a, 3, j, i]) * weight
        return iou, giou, rewritten
    if pw == 0:
        pw = F32(1.0)
    if ph == 0:
        ph = F32(1.0)
    dx, dy, dw, dh = _dx_box_iou(px, py, pw, ph, tx0, ty0, tw0, th0, kind)
    if not new_coords:
        dw = F32(np.float64(dw) * math.exp(np.float64(p[b, a, 2, j, i])))
        dh = F32(np.float64(dh) * math.exp(np.float64(p[b, a, 3, j, i])))
    delta[b, a, 0, j, i] += _clip(dx * normalizer, max_delta)
    delta[b, a, 1, j, i] += _clip(dy * normalizer, max_delta)
    delta[b, a, 2, j, i] += _clip(dw * normalizer, max_delta)
    delta[b, a, 3, j, i] += _clip(dh * normalizer, max_delta)
    return iou, giou, rewritten


@njit(cache=True, inline="always")
def _smoothed(target, eps):
    """A class target with the fork's label_smooth_eps: t (1 - eps) + eps/2 (in double, stored in float)."""
    if eps == 0:
        return target
    return F32(np.float64(target * (F32(1.0) - eps)) + 0.5 * np.float64(eps))


@njit(cache=True)   # called, not inlined: yolo_delta_fork calls each twice (compile time)
def _fork_delta_class(p, delta, b, a, i, j, cls, classes, focal_loss, eps, multipliers, cls_normalizer):
    """The fork's delta_yolo_class: logistic targets (smoothed by eps), the true class's delta times its
    counters_per_class multiplier and cls_normalizer (both only with counters_per_class); when the cell already
    trains this class (another truth) only that entry is set, times the multiplier alone. focal_loss: the
    deltas times .5 * the focal gradient at the true class. Returns the true class's probability."""
    prob = p[b, a, 5 + cls, j, i]
    if delta[b, a, 5 + cls, j, i] != 0:
        d = _smoothed(F32(1.0), eps) - prob
        if not (math.isnan(d) or math.isinf(d)):
            delta[b, a, 5 + cls, j, i] = d
        if multipliers.size > 0:
            delta[b, a, 5 + cls, j, i] *= multipliers[cls]
        return prob
    if focal_loss:
        pt = prob + F32(0.000000000000001)
        grad = -(F32(1.0) - pt) * (F32(2.0) * pt * F32(math.log(pt)) + pt - F32(1.0))
        for k in range(classes):
            target = F32(1.0) if k == cls else F32(0.0)
            delta[b, a, 5 + k, j, i] = (target - p[b, a, 5 + k, j, i]) * (F32(0.5) * grad)
        return prob
    for k in range(classes):
        d = _smoothed(F32(1.0) if k == cls else F32(0.0), eps) - p[b, a, 5 + k, j, i]
        if not (math.isnan(d) or math.isinf(d)):
            delta[b, a, 5 + k, j, i] = d
        if k == cls and multipliers.size > 0:
            delta[b, a, 5 + k, j, i] *= multipliers[cls] * cls_normalizer
    return prob


@njit(cache=True)
def yolo_delta_fork(p, truth, biases, mask, netw, neth, ignore_thresh, truth_thresh, iou_loss, iou_normalizer,
                    obj_normalizer, cls_normalizer, max_delta, iou_thresh, iou_thresh_kind, new_coords,
                    objectness_smooth, label_smooth_eps, focal_loss, multipliers, delta):
    """The AlexeyAB fork's forward_yolo_layer in training mode (its process_batch, image by image), after the
    activations. Arrays as yolo_delta's; multipliers: counters_per_class's per-class weights, empty without.

    As pjreddie's, with: objectness deltas times obj_normalizer (an ignored prediction may instead be pulled to
    its best IoU with objectness_smooth); the truth's anchor chosen by the fork's IoU, and with iou_thresh < 1
    every other anchor of this layer whose shape matches the truth by more than iou_thresh (iou_thresh_kind)
    trained on it too, its box deltas then averaged over the classes it trains; box deltas by iou_loss
    (MSE or the IoU gradients) accumulated, not overwritten.
    Returns (sum IoU, sum 1 - IoU, sum 1 - GIoU, count, boxes trained, boxes whose cell already had a box
    delta); the sums per image first, then over the images, as the fork's
    threads add them."""
    batch, n, _, lh, lw = p.shape
    classes = p.shape[2] - 5
    total = biases.size // 2
    tot_iou = F32(0.0)
    tot_iou_loss = F32(0.0)
    tot_giou_loss = F32(0.0)
    count = 0
    bboxes = 0
    rewritten = 0
    for b in range(batch):
        img_iou = F32(0.0)
        img_iou_loss = F32(0.0)
        img_giou_loss = F32(0.0)
        for j in range(lh):
            for i in range(lw):
                for a in range(n):
                    px, py, pw, ph = _fork_box(p, b, a, i, j, mask[a], biases, netw, neth, new_coords)
                    confident = False      # the fork's compare_yolo_class: any class over .25 here
                    for k in range(classes):
                        if p[b, a, 5 + k, j, i] > F32(0.25):
                            confident = True
                            break
                    best_match_iou = F32(0.0)
                    best_iou = F32(0.0)
                    best_t = 0
                    for t in range(truth.shape[1]):
                        if truth[b, t, 0] == 0:
                            break
                        cls = int(truth[b, t, 4])
                        if cls < 0 or cls >= classes:
                            continue
                        iou = _fork_iou(px, py, pw, ph, truth[b, t, 0], truth[b, t, 1], truth[b, t, 2],
                                        truth[b, t, 3])
                        if iou > best_match_iou and confident:
                            best_match_iou = iou
                        if iou > best_iou:
                            best_iou = iou
                            best_t = t
                    obj = p[b, a, 4, j, i]
                    delta[b, a, 4, j, i] = obj_normalizer * (F32(0.0) - obj)
                    if best_match_iou > ignore_thresh:
                        if objectness_smooth:
                            pulled = obj_normalizer * (best_match_iou - obj)
                            if pulled > delta[b, a, 4, j, i]:
                                delta[b, a, 4, j, i] = pulled
                        else:
                            delta[b, a, 4, j, i] = 0
                    if best_iou > truth_thresh:
                        scale = best_iou * best_iou
                        target = scale if objectness_smooth else F32(1.0)
                        delta[b, a, 4, j, i] = obj_normalizer * (target - obj)
                        cls = int(truth[b, best_t, 4])
                        _fork_delta_class(p, delta, b, a, i, j, cls, classes, focal_loss, label_smooth_eps,
                                          multipliers, cls_normalizer)
                        multiplier = multipliers[cls] if multipliers.size > 0 else F32(1.0)
                        if objectness_smooth:
                            delta[b, a, 5 + cls, j, i] = multiplier * (scale - p[b, a, 5 + cls, j, i])
                        _, _, again = _fork_delta_box(p, delta, b, a, i, j, mask[a], truth[b, best_t], biases,
                                                      netw, neth, iou_normalizer * multiplier, iou_loss,
                                                      max_delta, new_coords)
                        bboxes += 1
                        rewritten += again
        for t in range(truth.shape[1]):
            if truth[b, t, 0] == 0:
                break
            cls = int(truth[b, t, 4])
            if cls < 0 or cls >= classes:
                continue
            tw, th = truth[b, t, 2], truth[b, t, 3]
            i = min(int(truth[b, t, 0] * F32(lw)), lw - 1)
            j = min(int(truth[b, t, 1] * F32(lh)), lh - 1)
            best_n = _best_anchor(biases, total, netw, neth, tw, th, True)
            multiplier = multipliers[cls] if multipliers.size > 0 else F32(1.0)
            # the best anchor, then (iou_thresh < 1) every other anchor of this layer matching well enough
            for k in range(-1, total):
                anchor = best_n if k < 0 else k
                if k >= 0:
                    if iou_thresh >= 1 or k == best_n:
                        continue
                    aw, ah = biases[2 * k] / F32(netw), biases[2 * k + 1] / F32(neth)
                    if not _fork_iou_kind(F32(0.0), F32(0.0), aw, ah, F32(0.0), F32(0.0), tw, th,
                                          iou_thresh_kind) > iou_thresh:
                        continue
                a = _mask_slot(mask, anchor)
                if a < 0:
                    continue
                iou, giou, again = _fork_delta_box(p, delta, b, a, i, j, anchor, truth[b, t], biases, netw, neth,
                                                   iou_normalizer * multiplier, iou_loss, max_delta, new_coords)
                bboxes += 1
                rewritten += again
                img_iou += iou
                img_iou_loss += F32(1.0) - iou
                img_giou_loss += F32(1.0) - giou
                obj = p[b, a, 4, j, i]
                pushed = multiplier * obj_normalizer * (F32(1.0) - obj)
                if not objectness_smooth or delta[b, a, 4, j, i] == 0:
                    delta[b, a, 4, j, i] = pushed
                _fork_delta_class(p, delta, b, a, i, j, cls, classes, focal_loss, label_smooth_eps, multipliers,
                                  cls_normalizer)
                count += 1
        if iou_thresh < 1:
            # a cell trained on several truths: its box deltas averaged over the classes it trains
            for j in range(lh):
                for i in range(lw):
                    for a in range(n):
                        if delta[b, a, 4, j, i] == 0:
                            continue
                        trained = 0
                        for k in range(classes):
                            if delta[b, a, 5 + k, j, i] > 0:
                                trained += 1
                        if trained > 0:
                            for row in range(4):
                                delta[b, a, row, j, i] /= F32(trained)
        tot_iou += img_iou
        tot_iou_loss += img_iou_loss
        tot_giou_loss += img_giou_loss
    return tot_iou, tot_iou_loss, tot_giou_loss, count, bboxes, rewritten


@njit(cache=True)
def softmax_cross_entropy(pred, truth, delta, loss):
    """darknet's softmax_x_ent_cpu on flat arrays: delta = truth - pred, loss = -log(pred) where truth is
    nonzero (not weighted by it), 0 elsewhere. Returns their sum as darknet's sum_array makes it."""
    for i in range(pred.size):
        t = truth[i]
        q = pred[i]
        loss[i] = F32(-math.log(np.float64(q))) if t != 0 else F32(0.0)
        delta[i] = t - q
    return sum4(loss, 0, loss.size, F32(0.0))


@njit(cache=True)
def logistic_cross_entropy(pred, truth, delta, loss):
    """darknet's logistic_x_ent_cpu: loss = -t log p - (1-t) log(1-p), delta = t - p; returns the sum."""
    for i in range(pred.size):
        t = truth[i]
        q = pred[i]
        loss[i] = F32(np.float64(-t) * math.log(np.float64(q))
                      - np.float64(F32(1.0) - t) * math.log(np.float64(F32(1.0) - q)))
        delta[i] = truth[i] - pred[i]
    return sum4(loss, 0, loss.size, F32(0.0))


SECRET_NUM = np.float32(-1234)


@njit(cache=True)
def cost_l2(pred, truth, delta, error):
    """darknet's l2_cpu: delta = truth - pred, error = delta^2; returns the float32 sum of the errors."""
    for i in range(pred.size):
        diff = truth[i] - pred[i]
        error[i] = diff * diff
        delta[i] = diff
    return sum4(error, 0, error.size, F32(0.0))


@njit(cache=True)
def cost_l1(pred, truth, delta, error):
    """darknet's l1_cpu: error = |truth - pred|, delta = its sign (-1 at 0)."""
    for i in range(pred.size):
        diff = truth[i] - pred[i]
        error[i] = abs(diff)
        delta[i] = F32(1.0) if diff > 0 else F32(-1.0)
    return sum4(error, 0, error.size, F32(0.0))


@njit(cache=True)
def cost_smooth_l1(pred, truth, delta, error):
    """darknet's smooth_l1_cpu, as written: inside |diff| < 1 error = diff^2 and delta = diff; outside
    error = 2|diff| - 1 but delta = 1 for diff < 0 and -1 for diff > 0 -- the sign opposite to the inside
    (pjreddie's code pushes large errors the wrong way; reproduced)."""
    for i in range(pred.size):
        diff = truth[i] - pred[i]
        a = abs(diff)
        if a < 1:
            error[i] = diff * diff
            delta[i] = diff
        else:
            error[i] = F32(2.0) * a - F32(1.0)
            delta[i] = F32(1.0) if diff < 0 else F32(-1.0)
    return sum4(error, 0, error.size, F32(0.0))


# -- YOLOv2 ([region]) -----------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _region_box(p, b, a, i, j, anchor_w, anchor_h):
    """darknet's get_region_box: sizes relative to the grid (anchors are in grid cells)."""
    lh, lw = p.shape[3], p.shape[4]
    x = (F32(i) + p[b, a, 0, j, i]) / F32(lw)
    y = (F32(j) + p[b, a, 1, j, i]) / F32(lh)
    w = F32(math.exp(np.float64(p[b, a, 2, j, i])) * np.float64(anchor_w) / lw)
    h = F32(math.exp(np.float64(p[b, a, 3, j, i])) * np.float64(anchor_h) / lh)
    return x, y, w, h


@njit(cache=True, inline="always")
def _region_delta_box(p, delta, b, a, i, j, tx0, ty0, tw0, th0, anchor_w, anchor_h, scale):
    """darknet's delta_region_box; returns the IoU of the prediction with the target box."""
    lh, lw = p.shape[3], p.shape[4]
    px, py, pw, ph = _region_box(p, b, a, i, j, anchor_w, anchor_h)
    iou = _iou(px, py, pw, ph, tx0, ty0, tw0, th0)
    tx = tx0 * F32(lw) - F32(i)
    ty = ty0 * F32(lh) - F32(j)
    tw = F32(math.log(np.float64(tw0 * F32(lw) / anchor_w)))
    th = F32(math.log(np.float64(th0 * F32(lh) / anchor_h)))
    delta[b, a, 0, j, i] = scale * (tx - p[b, a, 0, j, i])
    delta[b, a, 1, j, i] = scale * (ty - p[b, a, 1, j, i])
    delta[b, a, 2, j, i] = scale * (tw - p[b, a, 2, j, i])
    delta[b, a, 3, j, i] = scale * (th - p[b, a, 3, j, i])
    return iou


@njit(cache=True)
def _region_delta_class(p, delta, b, a, i, j, first, cls, classes, scale, tag, parent, group, group_offset,
                        group_size):
    """darknet's delta_region_class (first: the row of class 0); returns what it adds to avg_cat."""
    if parent.size > 0:
        pred = F32(1.0)
        c = cls
        while c >= 0:
            pred *= p[b, a, first + c, j, i]
            g = group[c]
            for k in range(group_size[g]):
                row = first + group_offset[g] + k
                delta[b, a, row, j, i] = scale * (F32(0.0) - p[b, a, row, j, i])
            delta[b, a, first + c, j, i] = scale * (F32(1.0) - p[b, a, first + c, j, i])
            c = parent[c]
        return pred
    if delta[b, a, first, j, i] != 0 and tag:
        delta[b, a, first + cls, j, i] = scale * (F32(1.0) - p[b, a, first + cls, j, i])
        return F32(0.0)
    for k in range(classes):
        delta[b, a, first + k, j, i] = scale * ((F32(1.0) if k == cls else F32(0.0)) - p[b, a, first + k, j, i])
    return p[b, a, first + cls, j, i]


@njit(cache=True)
def region_delta(p, truth, biases, coords, seen, thresh, bias_match, rescore, background, coord_scale,
                 object_scale, noobject_scale, mask_scale, class_scale, tag, parent, group, group_offset,
                 group_size, class_map, delta):
    """darknet's forward_region_layer in training mode (YOLOv2), after the activations.

    p, delta: (batch, anchors, coords + 1 + classes, h, w); truth: (batch, boxes * (coords + 1)) flat rows of
    x y w h [mask values] class, ending at the first x == 0 (at most 30 boxes, as darknet reads). The tree
    arrays are empty without a class tree, class_map empty without a map. Returns (sum IoU, sum class prob,
    sum obj, sum obj over all predictions, recall count, count, class_count)."""
    batch, n, entries, lh, lw = p.shape
    classes = entries - coords - 1
    per = coords + 1
    boxes = min(30, truth.shape[1] // per)
    obj_row = coords
    first = coords + 1
    avg_iou = F32(0.0)
    recall = F32(0.0)
    avg_cat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    class_count = 0
    for b in range(batch):
        if parent.size > 0:
            onlyclass = False
            for t in range(boxes):
                tx = truth[b, t * per]
                if tx == 0:
                    break
                cls = int(truth[b, t * per + coords])
                if tx > 100000 and truth[b, t * per + 1] > 100000:
                    # a classification-only label: train the class at the most confident prediction
                    maxp = F32(0.0)
                    maxa, maxj, maxi = 0, 0, 0
                    for a in range(n):
                        for j in range(lh):
                            for i in range(lw):
                                scale = p[b, a, obj_row, j, i]
                                delta[b, a, obj_row, j, i] = noobject_scale * (F32(0.0) - scale)
                                prob = F32(1.0)
                                c = cls
                                while c >= 0:
                                    prob *= p[b, a, first + c, j, i]
                                    c = parent[c]
                                prob = scale * prob
                                if prob > maxp:
                                    maxp = prob
                                    maxa, maxj, maxi = a, j, i
                    avg_cat += _region_delta_class(p, delta, b, maxa, maxi, maxj, first, cls, classes, class_scale,
                                                   tag, parent, group, group_offset, group_size)
                    delta[b, maxa, obj_row, maxj, maxi] = 0
                    class_count += 1
                    onlyclass = True
                    break
            if onlyclass:
                continue
        for j in range(lh):
            for i in range(lw):
                for a in range(n):
                    px, py, pw, ph = _region_box(p, b, a, i, j, biases[2 * a], biases[2 * a + 1])
                    best_iou = F32(0.0)
                    for t in range(boxes):
                        if truth[b, t * per] == 0:
                            break
                        iou = _iou(px, py, pw, ph, truth[b, t * per], truth[b, t * per + 1], truth[b, t * per + 2],
                                   truth[b, t * per + 3])
                        if iou > best_iou:
                            best_iou = iou
                    obj = p[b, a, obj_row, j, i]
                    avg_anyobj += obj
                    delta[b, a, obj_row, j, i] = noobject_scale * (F32(0.0) - obj)
                    if background:
                        delta[b, a, obj_row, j, i] = noobject_scale * (F32(1.0) - obj)
                    if best_iou > thresh:
                        delta[b, a, obj_row, j, i] = 0
                    if seen < 12800:
                        # early on, pull every box towards its anchor at the cell centre
                        _region_delta_box(p, delta, b, a, i, j, F32((i + 0.5) / lw), F32((j + 0.5) / lh),
                                          biases[2 * a] / F32(lw), biases[2 * a + 1] / F32(lh),
                                          biases[2 * a], biases[2 * a + 1], F32(0.01))
        for t in range(boxes):
            tx, ty = truth[b, t * per], truth[b, t * per + 1]
            if tx == 0:
                break
            tw, th = truth[b, t * per + 2], truth[b, t * per + 3]
            i = min(int(tx * F32(lw)), lw - 1)
            j = min(int(ty * F32(lh)), lh - 1)
            best_iou = F32(0.0)
            best_n = 0
            for a in range(n):
                px, py, pw, ph = _region_box(p, b, a, i, j, biases[2 * a], biases[2 * a + 1])
                if bias_match:
                    pw = biases[2 * a] / F32(lw)
                    ph = biases[2 * a + 1] / F32(lh)
                iou = _iou(F32(0.0), F32(0.0), pw, ph, F32(0.0), F32(0.0), tw, th)
                if iou > best_iou:
                    best_iou = iou
                    best_n = a
            a = best_n
            iou = _region_delta_box(p, delta, b, a, i, j, tx, ty, tw, th, biases[2 * a], biases[2 * a + 1],
                                    coord_scale * (F32(2.0) - tw * th))
            if coords > 4:
                # darknet reads the mask targets from the truth row's 6th value on
                for k in range(coords - 4):
                    src = t * per + 5 + k
                    target = truth[b, src] if src < truth.shape[1] else F32(0.0)
                    delta[b, a, 4 + k, j, i] = F32(mask_scale) * (target - p[b, a, 4 + k, j, i])
            if iou > 0.5:
                recall += 1
            avg_iou += iou
            obj = p[b, a, obj_row, j, i]
            avg_obj += obj
            delta[b, a, obj_row, j, i] = object_scale * (F32(1.0) - obj)
            if rescore:
                delta[b, a, obj_row, j, i] = object_scale * (iou - obj)
            if background:
                delta[b, a, obj_row, j, i] = object_scale * (F32(0.0) - obj)
            cls = int(truth[b, t * per + coords])
            if class_map.size > 0:
                cls = class_map[cls]
            avg_cat += _region_delta_class(p, delta, b, a, i, j, first, cls, classes, class_scale, tag, parent,
                                           group, group_offset, group_size)
            count += 1
            class_count += 1
    return avg_iou, avg_cat, avg_obj, avg_anyobj, recall, count, class_count


@njit(cache=True, parallel=True)
def region_logistic_gradient(out, delta, coords, background):
    """The logistic's gradient on the x, y (and, without background, objectness) rows of a [region] delta
    (darknet's backward_region_layer_gpu). out, delta: (batch, anchors, entries, h, w)."""
    batch, n = out.shape[0], out.shape[1]
    for k in prange(batch * n):
        b = k // n
        a = k % n
        for row in range(coords + 1):
            if row >= 2 and row < coords:
                continue
            if row == coords and background:
                continue
            o = out[b, a, row].reshape(-1)
            d = delta[b, a, row].reshape(-1)
            for i in range(o.size):
                d[i] = d[i] * ((F32(1.0) - o[i]) * o[i])


# -- YOLOv1 ([detection]) ---------------------------------------------------------------------------------------
@njit(cache=True)
def detection_delta(out, truth, side, n, classes, coords, sqrt_wh, forced, rescore, coord_scale, object_scale,
                    noobject_scale, class_scale, random_index, delta):
    """darknet's forward_detection_layer in training mode (YOLOv1) on flat (batch, inputs) arrays.

    The truth is darknet's grid layout, per cell: is-object, `classes` one-hot values, x y w h (x, y within
    the cell, w, h relative to the image). random_index (batch, cells) overrides the responsible box when
    given (darknet's random=1 before 64000 images), else it is empty. Returns (sum IoU, sum class prob of
    the true classes, sum of all class probs, sum obj, sum obj over all boxes, count)."""
    batch = out.shape[0]
    locations = side * side
    per = 1 + classes + coords
    avg_iou = F32(0.0)
    avg_cat = F32(0.0)
    avg_allcat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    fside = F32(side)
    for b in range(batch):
        for i in range(locations):
            t0 = i * per
            is_obj = int(truth[b, t0])
            for j in range(n):
                pi = locations * classes + i * n + j
                delta[b, pi] = noobject_scale * (F32(0.0) - out[b, pi])
                avg_anyobj += out[b, pi]
            if not is_obj:
                continue
            ci = i * classes
            for j in range(classes):
                delta[b, ci + j] = class_scale * (truth[b, t0 + 1 + j] - out[b, ci + j])
                if truth[b, t0 + 1 + j] != 0:
                    avg_cat += out[b, ci + j]
                avg_allcat += out[b, ci + j]
            tb = t0 + 1 + classes
            tx = truth[b, tb] / fside
            ty = truth[b, tb + 1] / fside
            tw = truth[b, tb + 2]
            th = truth[b, tb + 3]
            best_index = -1
            best_iou = F32(0.0)
            best_rmse = F32(20.0)
            for j in range(n):
                bi = locations * (classes + n) + (i * n + j) * coords
                ox, oy, ow, oh = _detection_box(out[b], bi, fside, sqrt_wh)
                iou = _iou(ox, oy, ow, oh, tx, ty, tw, th)
                dx, dy = np.float64(ox - tx), np.float64(oy - ty)
                dw, dh = np.float64(ow - tw), np.float64(oh - th)
                rmse = F32(math.sqrt(dx * dx + dy * dy + dw * dw + dh * dh))
                if best_iou > 0 or iou > 0:
                    if iou > best_iou:
                        best_iou = iou
                        best_index = j
                else:
                    if rmse < best_rmse:
                        best_rmse = rmse
                        best_index = j
            if forced:
                best_index = 1 if tw * th < 0.1 else 0
            if random_index.size > 0:
                best_index = random_index[b, i]
            if best_index < 0:
                best_index = 0   # darknet would index before the array (a NaN prediction); take the first box
            bi = locations * (classes + n) + (i * n + best_index) * coords
            ox, oy, ow, oh = _detection_box(out[b], bi, fside, sqrt_wh)
            iou = _iou(ox, oy, ow, oh, tx, ty, tw, th)
            pi = locations * classes + i * n + best_index
            avg_obj += out[b, pi]
            delta[b, pi] = F32(np.float64(object_scale) * (1.0 - np.float64(out[b, pi])))
            if rescore:
                delta[b, pi] = object_scale * (iou - out[b, pi])
            for k in range(4):
                delta[b, bi + k] = coord_scale * (truth[b, tb + k] - out[b, bi + k])
            if sqrt_wh:
                for k in range(2, 4):
                    delta[b, bi + k] = coord_scale * (F32(math.sqrt(np.float64(truth[b, tb + k]))) - out[b, bi + k])
            avg_iou += iou
            count += 1
    return avg_iou, avg_cat, avg_allcat, avg_obj, avg_anyobj, count
