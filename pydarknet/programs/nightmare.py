"""darknet's `nightmare` (examples/nightmare.c): "deep dream" an image by gradient ascent on a layer's strongest
activations, round after round, saving the image after each round.

Each iteration (darknet's optimize_picture) picks a layer around LAYER (-range) and an octave (the image scaled by
1/1.33333333^octave, -octaves), shifts the image by up to 8 pixels each way and mirrors it at random (C's rand()
after srand(0), as darknet), runs the network up to that layer in inference mode, sets the layer's delta to its
outputs that exceed mean + thresh * std (zero elsewhere), backpropagates to the image, undoes the shift, mirror and
scaling on that gradient, adds 0.1 * (0.5 - image), normalises it (-norm), and adds rate times it to the image,
clamped to [0, 1]. After each round the image is written as <image>_<cfg>_<LAYER>_<round>.jpg (darknet's JPEG
encoder, byte for byte), then rotated (-rotate, radians) and zoomed (-zoom) for the next round.

darknet's -reconstruct mode (and its -momentum, -lambda, -smooth) is not provided.
"""
import math
import sys
from pathlib import Path

import numpy as np

from ..files.config import DarknetError, note
from ..files.image import crop_image, load_image_color, resize_image, save_image_darknet
from ..kernels import backward
from .crand import CRand, parse_draws
from .images import load_network

F32 = np.float32
OCTAVE = 1.33333333


def mean_array(a):
    return F32(backward.sum_array(a.reshape(-1)) / F32(a.size))


def variance_array(a):
    """darknet's variance_array: the 1/n mean of the squared deviations, summed in four float lanes."""
    deviation = (a - mean_array(a)).reshape(-1)
    return F32(backward.sum_array(deviation * deviation) / F32(a.size))


def strongest(output, thresh):
    """darknet's calculate_loss on a layer's output: the outputs above mean + thresh * std, zero elsewhere."""
    flat = output.reshape(-1)
    limit = np.float64(mean_array(flat)) + np.float64(F32(thresh)) * math.sqrt(np.float64(variance_array(flat)))
    return np.where(flat.astype(np.float64) > limit, flat, F32(0)).astype(np.float32)


def normalize_array(a):
    """darknet's normalize_array in place, (a - mean) / std, as gcc -Ofast compiles it: times the float square
    root of n / (sum of squared deviations), the sums in four float lanes."""
    deviation = a - mean_array(a)
    squares = (deviation * deviation).reshape(-1)
    a[...] = deviation * np.sqrt(F32(F32(a.size) / F32(backward.sum_array(squares))))


def flip(im):
    """A left-right mirror (darknet's flip_image), as a new array."""
    return np.ascontiguousarray(im[:, :, ::-1])


def rotate(im, rad):
    """darknet's rotate_image: each pixel sampled bilinearly at its position turned by `rad` about the centre,
    zero outside. `rad` is darknet's float parameter: rounded to float32 before its (double) cos and sin."""
    rad = float(F32(rad))
    c, h, w = im.shape
    cx, cy = F32(w / 2.0), F32(h / 2.0)
    y, x = np.mgrid[0:h, 0:w]
    dx, dy = (x - cx).astype(np.float64), (y - cy).astype(np.float64)
    rx = (math.cos(rad) * dx - math.sin(rad) * dy + cx).astype(np.float32)
    ry = (math.sin(rad) * dx + math.cos(rad) * dy + cy).astype(np.float32)
    ix, iy = np.floor(rx).astype(np.int64), np.floor(ry).astype(np.int64)
    fx, fy = rx - ix.astype(np.float32), ry - iy.astype(np.float32)

    def pixel(px, py):
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        return np.where(inside, im[:, np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)], F32(0))

    one = F32(1)
    return ((one - fy) * (one - fx) * pixel(ix, iy) + fy * (one - fx) * pixel(ix, iy + 1)
            + (one - fy) * fx * pixel(ix + 1, iy) + fy * fx * pixel(ix + 1, iy + 1)).astype(np.float32)


def resize_network_upto(net, layers, count, w, h):
    """darknet's resize_network while net->n = count: the network is the first `count` of its `layers`, and
    they take a w x h input."""
    net.layers = layers[:count]
    net.w, net.h = w, h
    shape = net.input_shape
    for layer in net.layers:
        layer.setup(shape, net)
        shape = layer.out_shape


def optimize_picture(net, layers, im, layer, scale, rate, thresh, norm, rng, out, deltas=None):
    """One darknet optimize_picture step on `im` (c, h, w) in place; `layers`: all the network's layers."""
    if not 0 <= layer < len(layers):
        raise DarknetError(f"nightmare: layer {layer} does not exist (the network has layers 0..{len(layers) - 1})")
    dx, dy = rng.rand() % 16 - 8, rng.rand() % 16 - 8
    mirrored = rng.rand() % 2
    _, h, w = im.shape
    scaled = resize_image(crop_image(im, dx, dy, w, h), int(F32(w) * scale), int(F32(h) * scale))
    if mirrored:
        scaled = flip(scaled)
    resize_network_upto(net, layers, layer + 1, scaled.shape[2], scaled.shape[1])
    print(f"\nnet: {net.w} {net.h} {net.c * net.h * net.w} im: {scaled.shape[2]} {scaled.shape[1]} {scaled.shape[0]}",
          file=out)

    def seed(last):
        last.delta.reshape(-1)[...] = strongest(last.output, thresh)

    delta = net.input_gradient(scaled[None], seed)[0]
    if deltas is not None:
        deltas.append(delta.copy())
    if mirrored:
        delta = flip(delta)
    step = crop_image(resize_image(delta, w, h), -dx, -dy, w, h)
    step += F32(0.1) * (F32(0.5) - im)
    if norm:
        normalize_array(step)
    im += F32(rate) * step
    np.clip(im, 0, 1, out=im)


def nightmare(cfg, weights, image, layer, rounds=1, iters=10, octaves=4, zoom=1.0, rate=0.04, thresh=1.0,
              rotate_by=0.0, layers_range=1, norm=1, prefix=None, out=None, deltas=None, network_options=None):
    """darknet's `nightmare CFG WEIGHTS IMAGE LAYER` with its options (-rounds, -iters, -octaves, -zoom, -rate,
    -thresh, -rotate, -range, -norm, -prefix). Prints darknet's lines to `out` (stdout) and the iteration counter
    to stderr; returns the paths written. `deltas`: a list that receives each iteration's input gradient;
    `network_options`: as load_network's."""
    out = out or sys.stdout
    for name, value in (("octaves", octaves), ("range", layers_range)):
        if value < 1:
            raise DarknetError(f"nightmare: -{name} {value}: must be at least 1 (darknet draws rand() % {name})")
    rng = CRand(0)
    net = load_network(cfg, weights, "pjreddie", network_options=network_options)
    rng.skip(parse_draws(net))
    layers = list(net.layers)
    im = load_image_color(image)
    base = f"{Path(image).stem}_{Path(cfg).stem}_{layer}"
    written = []
    for e in range(rounds):
        print("Iteration: ", end="", file=sys.stderr, flush=True)
        for n in range(iters):
            print(f"{n}, ", end="", file=sys.stderr, flush=True)
            chosen = layer + rng.rand() % layers_range - layers_range // 2
            octave = rng.rand() % octaves
            scale = F32(1 / math.pow(OCTAVE, octave))
            optimize_picture(net, layers, im, chosen, scale, rate, thresh, norm, rng, out, deltas)
        note("done")
        name = f"{base}_{e:06d}"
        if prefix:
            name = f"{prefix}/{name}"
        print(f"{e} {name}", file=out)
        written.append(save_image_darknet(im, name))
        if F32(rotate_by):   # darknet's float -rotate
            im = rotate(im, rotate_by)
        _, h, w = im.shape
        zoom32 = F32(zoom)
        crop = crop_image(im, int(w * (1.0 - np.float64(zoom32)) / 2.0), int(h * (1.0 - np.float64(zoom32)) / 2.0),
                          int(F32(w) * zoom32), int(F32(h) * zoom32))
        im = resize_image(crop, w, h)
    net.layers = layers
    return written
