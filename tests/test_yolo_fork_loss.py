"""The fork's [yolo] box gradients (kernels.loss._dx_box_iou, its dx_box_iou) against finite differences of its
own IoU/GIoU (kernels.loss._fork_iou_kind): for overlapping boxes x, y get the gradient and w, h twice the
gradient (the fork does not halve them: "For dw and dh, we do not divided by 2")."""
import numpy as np
import pytest

from pydarknet.kernels.loss import GIOU, IOU, _dx_box_iou, _fork_delta_box, _fork_iou_kind
from pydarknet.network.layers.yolo import IOU_KINDS

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


# The fork's delta_yolo_box (AlexeyAB 59596d78, gcc 12 -Ofast, SSE2) on a 20x20 layer of a 160x160 network, anchor
# 23x41, iou_normalizer .07, no max_delta: truth (x y w h), the four raw predictions at the truth's cell, and
# the four box deltas it adds, as float32 bit patterns. MSE and CIoU take no approximate reciprocal, so these
# hold on any CPU.
FORK_BOX_DELTAS = [
    ("mse", 0, (0.6000763773918152, 0.8177710175514221, 0.3990585505962372, 0.1513432413339615),
     (0.2202327996492386, 1.0229748487472534, -1.4868367910385132, 0.5530710220336914),
     (0xbcf34109, 0xbdb99f07, 0x3eae55ee, 0xbe161bab)),
    ("mse", 0, (0.737655520439148, 0.47434794902801514, 0.18636459112167358, 0.1752915233373642),
     (0.15681742131710052, 0.4231068193912506, -0.23862935602664948, -0.11625661700963974),
     (0x3da82d39, 0x3c101200, 0x3d8c86f8, 0xbd149a66)),
    ("mse", 0, (0.8964002132415771, 0.7341295480728149, 0.32998064160346985, 0.49503207206726074),
     (0.10143217444419861, 0.024296848103404045, 0.03134901076555252, -1.390144944190979),
     (0x3dd9a36a, 0x3dad547d, 0x3dd289ea, 0x3e86d9de)),
    ("mse", 1, (0.12854422628879547, 0.5119110345840454, 0.2597927153110504, 0.4627254903316498),
     (0.6809167265892029, 0.5197647213935852, 0.5478113889694214, 0.3732604384422302),
     (0xbc6d37ae, 0xbd17bea9, 0x3c860d6e, 0x3d20f459)),
    ("mse", 1, (0.10943522304296494, 0.2539217174053192, 0.36141446232795715, 0.14027301967144012),
     (0.317350834608078, -0.19477206468582153, 0.7810333967208862, 0.30812275409698486),
     (0xbc8fcd4e, 0x3d18b240, 0x3ad29d57, 0x3c0a3020)),
    ("mse", 1, (0.3140794336795807, 0.8042657375335693, 0.2794058620929718, 0.43121761083602905),
     (0.6956040263175964, 0.8384793400764465, 0.26404693722724915, 0.5788006782531738),
     (0xbd5f1c58, 0xbdcaf01c, 0x3d695c39, 0x3c167cf3)),
    ("ciou", 0, (0.5062177777290344, 0.7970715165138245, 0.21256881952285767, 0.3191828429698944),
     (-0.11704769730567932, 0.3426845073699951, -0.6924091577529907, -1.1245006322860718),
     (0x3c3c4264, 0x3ce977a1, 0x3daffe83, 0x3d45776a)),
    ("ciou", 0, (0.7530704736709595, 0.4035569429397583, 0.4904365539550781, 0.3154962658882141),
     (0.6470787525177002, 0.6931952238082886, 0.19112561643123627, -1.1230299472808838),
     (0xbc4584b0, 0xbc51ca41, 0x3dbafb75, 0x3d51cec9)),
    ("ciou", 0, (0.45225077867507935, 0.2916511595249176, 0.23112423717975616, 0.09351684153079987),
     (1.1549593210220337, 0.10100565105676651, 0.17941290140151978, -0.7489498257637024),
     (0xbea0f5c7, 0x3efbabd8, 0x3d59f7fc, 0x3db389bf)),
    ("ciou", 1, (0.7992616295814514, 0.6297717690467834, 0.10922711342573166, 0.43028345704078674),
     (1.1229274272918701, 1.0654834508895874, 0.5988034009933472, 0.3018219769001007),
     (0xbb8abc92, 0xbc6ccdca, 0xbd31ffed, 0x3e6d4f62)),
    ("ciou", 1, (0.25397080183029175, 0.8423245549201965, 0.2985469102859497, 0.1312486231327057),
     (1.037679672241211, 0.6982004046440125, 0.5987859964370728, 0.4634014964103699),
     (0xbe92c437, 0x3bf56596, 0xbc425730, 0xbe6aa1e4)),
    ("ciou", 1, (0.4287642240524292, 0.2915913760662079, 0.06712578237056732, 0.44429847598075867),
     (0.454822301864624, 0.5666892528533936, 0.4255143105983734, 0.725927472114563),
     (0x3b36a09f, 0x3bc8fb6e, 0xbf368fd6, 0xbe0c9441)),
]


@pytest.mark.parametrize("kind, new_coords, truth, pred, expected", FORK_BOX_DELTAS)
def test_box_delta_as_the_fork(kind, new_coords, truth, pred, expected):
    """The box deltas bit for bit as the fork's -Ofast build computes them (MSE: logf and (t - x) * (scale *
    normalizer); CIoU: dx_box_iou in GCC's order)."""
    size, netw = 20, 160
    truth = np.array(truth, F)
    i, j = int(truth[0] * size), int(truth[1] * size)
    p = np.zeros((1, 1, 9, size, size), F)
    p[0, 0, :4, j, i] = pred
    delta = np.zeros_like(p)
    _fork_delta_box(p, delta, 0, 0, i, j, 0, truth, np.array([23, 41], F), netw, netw, F(0.07),
                    IOU_KINDS.index(kind), np.finfo(F).max, bool(new_coords))
    assert [hex(v) for v in delta[0, 0, :4, j, i].view(np.uint32)] == [hex(v) for v in expected]
