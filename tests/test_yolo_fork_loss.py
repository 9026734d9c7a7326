"""The fork's [yolo] box gradients (kernels.loss._dx_box_iou, its dx_box_iou) against finite differences of its
own IoU/GIoU (kernels.loss._fork_iou_kind): for overlapping boxes x, y get the gradient and w, h twice the
gradient (the fork does not halve them: "For dw and dh, we do not divided by 2")."""
import numpy as np
import pytest

from pydarknet.kernels.loss import GIOU, IOU, _dx_box_iou, _fork_iou_kind

F = np.float32


@pytest.mark.parametrize("kind", [IOU, GIOU])
@pytest.mark.parametrize("pred", [(0.50, 0.48, 0.30, 0.22), (0.42, 0.55, 0.18, 0.35), (0.61, 0.40, 0.40, 0.30)])
def test_iou_gradients(kind, pred):
    truth = (F(0.5), F(0.5), F(0.25), F(0.3))
    got = _dx_box_iou(*map(F, pred), *truth, kind)

    def iou(box):
        return float(_fork_iou_kind(*map(F, box), *truth, kind))
    h = 1e-3
    for k, factor in enumerate((1, 1, 2, 2)):
        up, down = list(pred), list(pred)
        up[k] += h
        down[k] -= h
        numeric = (iou(up) - iou(down)) / (float(F(up[k])) - float(F(down[k])))
        assert got[k] == pytest.approx(factor * numeric, rel=2e-2, abs=2e-3), (k, got, numeric)
