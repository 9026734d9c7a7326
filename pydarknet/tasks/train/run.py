"""The `train` command's loop (darknet's train_detector and train_classifier): batches from background loader
threads, one train_network call each, the per-iteration line, backups, the chart, -map and the fork's EMA.
"""
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ...files.config import DarknetError, chatter, note
from ...files.errors import Interrupted
from .mpi import Stopped, describe
from .step import check_policy, get_current_batch, get_current_rate, train_network

F32 = np.float32

MAP_COLOUR = (0, 160, 0)   # BGR: chart.png's mAP line


OUTPUT_LAYERS = ("yolo", "region", "detection")


def is_detector(net):
    return any(layer.type in OUTPUT_LAYERS for layer in net.layers)


def backup_names(cfg_path, iteration):
    """Which weights files darknet writes after `iteration`: <cfg>_<N> every 100 up to 1000, then every
    10000; and (ours) <cfg>_last every 100, so a run can always resume from its latest state."""
    base = Path(cfg_path).stem
    names = []
    if iteration % 10000 == 0 or (iteration < 1000 and iteration % 100 == 0):
        names.append(f"{base}_{iteration}.weights")
    if iteration % 100 == 0:
        names.append(f"{base}_last.weights")
    return names


def random_size(net, base_w, base_h, rng):
    """darknet's random=1: a new input size every 10 batches. pjreddie picks (10..19)*32 for its 416 nets, i.e.
    0.77-1.46 of the cfg's size; we keep that range relative to the cfg's size, in multiples of 32."""
    low, high = max(1, round(base_w * 10 / 13 / 32)), max(1, round(base_w * 19 / 13 / 32))
    w = int(rng.integers(low, high + 1)) * 32
    return w, max(32, int(round(w * base_h / base_w / 32)) * 32)


def fork_random_size(init_w, init_h, coef, step, rng, largest=False):
    """The fork's random=1 (AlexeyAB networks): a scale s uniform in [1, coef] (coef: random= itself when it is
    not 1, else 1.4), used as s or 1/s with even odds; each side round(s * side / step + 1) * step (the fork's
    +1: a scale of 1 gives one step more than the cfg), but a shrinking scale that still lands above the cfg's
    size keeps the cfg's size. `largest` (the first batch of a run, to fail early on memory, and the last 100
    iterations, where the fork settles the batch-norm statistics at its largest size): round(coef * side / step
    + 1) * step. Never below one step. `step` is the [net]'s resize_step (32)."""
    def side(scale, size):
        return int(math.floor(scale * size / step + 1 + 0.5)) * step   # C's roundl of a positive value

    if largest:
        w, h = side(coef, init_w), side(coef, init_h)
    else:
        scale = float(rng.uniform(1.0, coef))
        if rng.integers(2) == 0:
            scale = 1.0 / scale
        w, h = side(scale, init_w), side(scale, init_h)
        if scale < 1 and (w > init_w or h > init_h):
            w, h = init_w, init_h
    return max(w, step), max(h, step)


def next_map_iteration(last_map, map_epochs, train_images, images_per_iteration, burn_in):
    """When the fork's -map evaluates next: `map_epochs` passes over the training list after the last
    evaluation (at least 100 iterations), and not before burn_in ends. (Also always at the last iteration.)"""
    every = max(map_epochs * train_images // images_per_iteration, 100)
    return max(last_map + every, burn_in)


class Ema:
    """The fork's ema_alpha= ([net]): an exponential moving average of every convolution's weights, biases and
    batch-norm scales. From iteration max_batches/2 on it is started as a copy of the parameters, then after
    each update  ema = alpha * ema + (1 - alpha) * parameter  (float32) until iteration max_batches - 1000, where
    the averages replace the parameters (training goes on from them; the fork does not redo the batch-norm
    statistics). It is saved as <cfg>_ema.weights beside each _last.weights; -map evaluates the trained
    parameters, as the fork's copy_weights_net does."""

    def __init__(self, net, alpha):
        self.net, self.alpha = net, F32(alpha)
        self.parameters = [(layer, name) for layer in net.layers if layer.type == "convolutional"
                           for name in ("weights", "biases", "scales")
                           if name != "scales" or layer.batch_normalize]
        self.averages = None

    def step(self, iteration, max_batches):
        """What the fork's train_network does after the update of `iteration` (1-based)."""
        start, apply_at = max_batches // 2, max_batches - 1000
        if iteration < start:
            return
        if self.averages is None:
            self.averages = [getattr(layer, name).copy() for layer, name in self.parameters]
            note(" EMA initialization ")
        if iteration == apply_at:
            for (layer, name), average in zip(self.parameters, self.averages):
                getattr(layer, name)[...] = average
            self.net.params_version += 1
            note(" ema_apply() ")
        elif iteration < apply_at:
            keep, take = self.alpha, F32(1) - self.alpha
            for (layer, name), average in zip(self.parameters, self.averages):
                average[...] = keep * average + take * getattr(layer, name)
            note(f" ema_update(), ema_alpha = {float(self.alpha):f} ")

    @contextmanager
    def in_place(self):
        """The averages stand in for the parameters (to save them), the parameters are back afterwards."""
        trained = [getattr(layer, name) for layer, name in self.parameters]
        try:
            for (layer, name), average in zip(self.parameters, self.averages):
                setattr(layer, name, average)
            yield
        finally:
            for (layer, name), array in zip(self.parameters, trained):
                setattr(layer, name, array)


def save_augmented(folder, iteration, x, y, boxes, classes):
    """The fork's -show_imgs, written instead of shown: each image of the batch as `aug_<iteration>_<i>.png`,
    with its truth boxes (the rows `x y w h class` up to the first with x = 0, as the fork reads them) drawn
    one pixel wide in the class's colour when `boxes`."""
    from ...files.image import class_color, draw_box_width, save_image
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i, planes in enumerate(x):
        im = np.repeat(planes, 3, axis=0) if planes.shape[0] == 1 else planes[:3].copy()
        _, h, w = im.shape
        rows = y[i].reshape(-1, 5).tolist() if boxes else ()   # Python floats: the fork's corners are doubles
        for bx, by, bw, bh, cls in rows:
            if not bx:
                break
            left, right = int((bx - bw / 2.0) * w), int((bx + bw / 2.0) * w)
            top, bottom = int((by - bh / 2.0) * h), int((by + bh / 2.0) * h)
            draw_box_width(im, left, top, right, bottom, 1, *class_color(int(cls), max(1, classes)))
        save_image(im, Path(folder) / f"aug_{iteration}_{i}.png")


class Chart:
    """chart.png: the loss (and its running average), the learning rate and the -map results over the
    iterations, drawn with OpenCV."""

    def __init__(self, path, max_batches):
        self.path, self.max_batches = path, max(1, max_batches)
        self.points = []
        self.maps = []

    def add(self, iteration, loss, avg, rate):
        self.points.append((iteration, loss, avg, rate))

    def add_map(self, iteration, mean_ap):
        self.maps.append((iteration, mean_ap))

    def draw(self):
        import cv2
        w, h, margin = 800, 500, 50
        img = np.full((h, w, 3), 255, np.uint8)
        pts = np.array(self.points, np.float64)
        top = max(1e-9, float(np.percentile(pts[:, 1], 98)) * 1.1) if len(pts) else 1.0
        rate_top = max(1e-12, float(pts[:, 3].max())) if len(pts) else 1.0

        def xy(i, v, vmax):
            x = margin + (w - 2 * margin) * i / self.max_batches
            y = h - margin - (h - 2 * margin) * min(v, vmax) / vmax
            return int(x), int(y)
        cv2.rectangle(img, (margin, margin), (w - margin, h - margin), (0, 0, 0), 1)
        for column, colour, vmax in ((1, (200, 200, 255), top), (2, (0, 0, 200), top), (3, (200, 0, 0), rate_top)):
            line = np.array([xy(p[0], p[column], vmax) for p in pts], np.int32)
            if len(line) > 1:
                cv2.polylines(img, [line], False, colour, 1, cv2.LINE_AA)
        if self.maps:   # the fork's mAP curve: a point per evaluation, from 0 to 100 %
            line = np.array([xy(i, v, 1.0) for i, v in self.maps], np.int32)
            cv2.polylines(img, [line], False, MAP_COLOUR, 2, cv2.LINE_AA)
            for point, (_, v) in zip(line, self.maps):
                cv2.circle(img, (int(point[0]), int(point[1])), 3, MAP_COLOUR, -1)
                cv2.putText(img, f"{v * 100:.1f}%", (int(point[0]) + 3, int(point[1]) - 4), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4, MAP_COLOUR, 1, cv2.LINE_AA)
        cv2.putText(img, f"loss (red: avg), max {top:.3g}; blue: rate, max {rate_top:.3g}"
                    + ("; green: mAP@0.5, 0-100 %" if self.maps else ""), (margin, 30),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"iteration {int(pts[-1, 0]) if len(pts) else 0} / {self.max_batches}",
                    (margin, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        ok, buf = cv2.imencode(".png", img)
        if ok:
            from ...files.weights import atomic_write
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, buf.tobytes())


def detection_dataset(net, paths, classes=None):
    """The training data of detector `net` as darknet's train_detector makes it: the AlexeyAB fork's pipeline
    (data_ab.DetectionDatasetAB) for its networks, pjreddie's (DetectionDataset) otherwise, with the last
    layer's max boxes and jitter and the [net] augmentation options."""
    if net.darknet == "ab":
        from .data_ab import DetectionDatasetAB
        return DetectionDatasetAB.for_network(net, paths, classes)
    from .data import DetectionDataset
    out = net.layers[-1]
    return DetectionDataset(paths, net.w, net.h, max_boxes=getattr(out, "max_boxes", 90), classes=classes,
                            jitter=getattr(out, "jitter", 0.2), hue=net.hue, saturation=net.saturation,
                            exposure=net.exposure)


def make_dataset(net, data, data_file):
    from ...files.labels import read_list
    from .data import ClassificationDataset
    train = data.str("train")
    if not train:
        raise DarknetError(f"{data_file}: no train= list")
    paths = read_list(resolve_beside(train, data_file), where=data.where("train"))
    if not paths:
        raise DarknetError(f"{train}: the training list is empty")
    classes = data.int("classes", 0) or None
    if is_detector(net):   # pjreddie's augmentation, or the AlexeyAB fork's (data_ab) for its networks
        from ..datasets.check import refuse_broken
        refuse_broken(paths, classes, data_file)   # darknet's "Wrong annotation", before the run, not hours into it
        return detection_dataset(net, paths, classes)
    labels_file = data.str("labels") or data.str("names")
    if not labels_file:
        raise DarknetError(f"{data_file}: a classifier needs labels= (or names=)")
    from ...files.config import read_names
    labels = read_names(resolve_beside(labels_file, data_file))
    return ClassificationDataset(paths, labels, net.w, min_crop=net.min_crop, max_crop=net.max_crop,
                                 angle=net.angle, aspect=net.aspect, hue=net.hue, saturation=net.saturation,
                                 exposure=net.exposure, center=bool(net.center))


def resolve_beside(name, data_file):
    """A path from a .data file: as given (darknet: the working directory), else beside the .data file."""
    path = Path(name)
    if path.exists() or path.is_absolute():
        return path
    beside = Path(data_file).parent / path
    return beside if beside.exists() else path


def running_statistics(net):
    """The saved arrays a training forward changes before the update: batch-norm's rolling mean and variance."""
    return [array for layer in net.layers for name in ("rolling_mean", "rolling_variance")
            if (array := getattr(layer, name, None)) is not None]


def train(data_file, cfg, weights=None, progress=None, rank_timeout=60.0, debug=False, **options):
    """The `train` command: this process alone, or, started by an MPI launcher, one rank of a job (mpi.py).
    `options`: TrainingRun's (an MPI rank given no `devices` trains on mpi.local_device's)."""
    from .mpi import launched, train_ranks
    if launched():
        devices = options.pop("devices", ())
        return train_ranks(lambda group, chosen: TrainingRun(data_file, cfg, weights, group=group, devices=chosen,
                                                             **options), progress, rank_timeout, debug, devices)
    run = TrainingRun(data_file, cfg, weights, **options)
    if not chatter["quiet"]:
        note("\n".join(run.net.summary()))
    run.net.quiet = chatter["quiet"]
    return run.run(progress=progress)


class TrainingRun:
    """darknet's train_detector / train_classifier loop: batches from background workers, train_network, the
    per-iteration line, backups, the chart; Ctrl-C saves <cfg>_last.weights before stopping.

    `workers` loader threads make the next batches while the step runs (their decode and augmentation
    kernels release the GIL); the printed seconds include any wait for a batch, as darknet's. ``workers=0``
    loads each batch in series before its step: the same batches and losses, only slower.

    The fork's extras: `calc_map` (-map) evaluates the mAP@0.5 on valid_list's images every `map_epochs`
    epochs (see next_map_iteration) and at the last iteration, printing the fork's report and lines, saving
    <cfg>_best.weights whenever it is at least the best so far, and drawing it on chart.png; `show_imgs`
    writes every training image as the network gets it (save_augmented) into the backup folder; the [net]'s
    ema_alpha keeps an Ema. random=1 of AlexeyAB networks follows fork_random_size (pjreddie's: random_size).
    -clear sets `seen` to 0, which is also the fork's iteration count (derived from it here).

    Resuming is exact: Ctrl-C during iteration N saves the parameters of the N-1 iterations done with the `seen`
    of those (an update is never cut in half: stops.held), and a run from that file trains iteration N on
    the batch the first run would have had (batch i is a function of the seed and i). Like darknet's weights
    files, _last.weights holds no momentum (nor Adam's moments): the resumed run starts them at zero, so its
    losses match the first run's at N, and after N where the cfg's momentum is 0. random= sizes follow each
    run's start, as darknet's.

    `devices`: where it trains (("cuda:0",); (): the CPU); `strict`: a cfg option no layer reads is an error.
    Several replicas (-gpus 0,1 or cpu,cpu; with `group`, an mpi.Group, the replicas of every rank of an MPI job)
    each train on their own share of every iteration's images, drawn with the seed plus the replica's number
    (replica 0's are a lone run's); their updates are averaged each step (replicas.py). Only rank 0 of a job
    prints, draws and writes files."""

    def __init__(self, data_file, cfg, weights=None, clear=False, backup=None, workers=2, seed=0, chart=True,
                 out=None, max_batches=None, calc_map=False, map_epochs=4, show_imgs=False, group=None, devices=(),
                 strict=False):
        from ...files.config import read_data_cfg
        from ...files.weights import load_weights
        from ...kernels.products import backend
        from ...kernels.threads import spin_briefly
        from ...network.network import Network
        if backend() != "darknet":   # the backward products are OpenBLAS's: its threads need the cores
            spin_briefly()
        self.data_file, self.cfg = data_file, cfg
        data = read_data_cfg(data_file)
        self.net = Network(cfg, strict=strict, device=devices[0] if devices else None)
        check_policy(self.net)
        if weights:
            load_weights(self.net, weights)
            if clear:
                self.net.seen = 0
        else:
            self.net.initialize(seed)
        # one train_network call per iteration; with -gpus 0,1: a replica of the network per GPU, each its share
        self.group, self.writer = group, group is None or group.rank == 0
        self.nets, self.train_step = [self.net], lambda x, y: train_network(self.net, x, y)
        if len(devices) > 1 or group:
            from .replicas import Replicas
            replicas = Replicas(self.net, list(devices) or [self.net.device], group)
            self.nets, self.train_step = replicas.nets, replicas.train_batch
        self.started_at = get_current_batch(self.net)
        if group and weights:
            group.resume = f"resume from {weights} (iteration {self.started_at})"
        self.backup = Path(backup or data.str("backup", "backup/"))   # made at the first file written into it
        self.dataset = make_dataset(self.net, data, data_file)
        self.workers, self.seed, self.out = workers, seed, out
        self.max_batches = max_batches if max_batches is not None else self.net.max_batches
        if self.max_batches <= 0:
            raise DarknetError(f"{cfg}: max_batches= must be set (darknet trains until it)")
        self.chart = Chart(self.backup / "chart.png", self.max_batches) if chart and self.writer else None
        self.valid_paths = None
        if calc_map:
            if not is_detector(self.net):
                raise DarknetError(f"{cfg}: -map needs a detector ([yolo], [region] or [detection] layer)")
            from ..evaluate import valid_list
            self.valid_paths = valid_list(data_file)
        self.map_epochs, self.show_imgs = map_epochs, show_imgs
        self.ema = Ema(self.net, self.net.ema_alpha) if self.net.ema_alpha else None
        self.best_map = self.last_map = -1.0

    def save(self, name):
        from ...files.weights import save_weights
        path = self.backup / name
        self.backup.mkdir(parents=True, exist_ok=True)
        save_weights(self.net, path)
        return path

    def print(self, text):
        print(text, file=self.out or sys.stdout, flush=True)

    def evaluate(self, iteration):
        """The fork's mAP during training: its report, the mAP line, and <cfg>_best.weights when it is at least
        the best so far (the fork's >=)."""
        from ..evaluate import run_map
        lines, summary = run_map(self.data_file, self.cfg, None, network=self.net, fuse_batchnorm=False,
                                 paths=self.valid_paths)
        self.last_map = summary["map"]
        self.print("\n".join(lines))
        self.print(f"\n mean_average_precision (mAP@0.50) = {self.last_map:f} ")
        if self.last_map >= self.best_map:
            self.best_map = self.last_map
            self.print("New best mAP!")
            note(f"Saving weights to {self.save(f'{Path(self.cfg).stem}_best.weights')}")
        if self.chart:
            self.chart.add_map(iteration, self.last_map)

    def multiscale_size(self, count, base_w, base_h, rng):
        """The input size for the next 10 iterations under random=1 (None: the network has no random=)."""
        net = self.net
        if net.darknet == "ab":
            outputs = [layer for layer in net.layers if layer.type in ("yolo", "region")]
            coef = float(getattr(outputs[-1], "random", 0)) if outputs else 0.0
            if not coef:
                return None
            coef = 1.4 if coef == 1 else coef
            largest = count == 0 or get_current_batch(net) > self.max_batches - 100
            w, h = fork_random_size(base_w, base_h, coef, net.resize_step, rng, largest)
            note(f"Resizing, random_coef = {coef:.2f} \n\n {w} x {h} ")
            return w, h
        if not (is_detector(net) and getattr(net.layers[-1], "random", 0)):
            return None
        if get_current_batch(net) + 200 > self.max_batches:
            return base_w, base_h  # the last batches train at the cfg's own size
        return random_size(net, base_w, base_h, rng)

    def run(self, progress=None):
        from .data import BatchLoader
        net, group = self.net, self.group
        images = net.batch * net.subdivisions * len(self.nets)   # this process's
        replicas = group.total if group else len(self.nets)
        everyone = images // len(self.nets) * replicas             # the iteration's, over every process
        first = group.first if group else 0
        seeds = [self.seed + first + r for r in range(len(self.nets))] if replicas > 1 else self.seed
        rng = np.random.default_rng(self.seed)   # random= sizes: the same on every replica
        base_w, base_h = net.w, net.h
        avg = -1.0
        count = 0
        last_map_at = get_current_batch(net)
        seen_before, version_before, statistics = net.seen, net.params_version, []
        loader = BatchLoader(self.dataset, images, seed=seeds, workers=self.workers, start=get_current_batch(net))
        if self.show_imgs and self.writer:
            note(f"-show_imgs: every training image is written to {self.backup}/aug_<iteration>_<i>.png")
        try:
            while get_current_batch(net) < self.max_batches:
                seen_before, version_before = net.seen, net.params_version
                statistics = [array.copy() for array in running_statistics(net)]
                if group:
                    group.begin(get_current_batch(net) + 1)
                if count % 10 == 0:
                    size = self.multiscale_size(count, base_w, base_h, rng)
                    if size:
                        loader.set_size(*size)
                count += 1
                start = time.time()
                x, y = next(loader)
                if self.show_imgs and self.writer:
                    out = net.layers[-1]
                    save_augmented(self.backup, get_current_batch(net) + 1, x, y, out.type in ("yolo", "region"),
                                   getattr(out, "classes", 1))
                if x.shape[2:] != (net.h, net.w):
                    for replica in self.nets:
                        replica.resize(x.shape[3], x.shape[2])
                loss = float(self.train_step(x, y))
                i = get_current_batch(net)
                if self.ema:
                    self.ema.step(i, self.max_batches)
                avg = loss if avg < 0 else avg * 0.9 + loss * 0.1
                rate = float(get_current_rate(net))
                next_map = next_map_iteration(last_map_at, self.map_epochs, len(self.dataset.paths), everyone,
                                              net.burn_in)
                if self.valid_paths is not None and self.writer:
                    self.print(f"\n (next mAP calculation at {next_map} iterations) ")
                    if self.last_map > 0:
                        self.print(f" Last accuracy mAP@0.50 = {self.last_map * 100:2.2f} %, "
                                   f"best = {self.best_map * 100:2.2f} % ")
                if self.writer:
                    self.print(f"{i}: {loss:f}, {avg:f} avg, {rate:f} rate, {time.time() - start:f} seconds, "
                               f"{i * everyone} images")
                if progress:
                    progress(i, self.max_batches)
                if self.chart:
                    self.chart.add(i, loss, avg, rate)
                if self.valid_paths is not None and (i >= next_map or i == self.max_batches):
                    if (net.w, net.h) != (base_w, base_h):   # the fork evaluates at the cfg's size
                        net.resize(base_w, base_h)
                        loader.set_size(base_w, base_h)
                    last_map_at = i
                    if self.writer:
                        self.evaluate(i)
                if self.chart and (i % 10 == 0 or last_map_at == i):
                    self.chart.draw()
                self.backups(i)
            if not self.writer:
                return None
            final = self.save(f"{Path(self.cfg).stem}_final.weights")
            note(f"Saving weights to {final}")
            return final
        except KeyboardInterrupt as interrupt:   # one process's Ctrl-C (an MPI job's ranks stop together: Stopped)
            path = self.save_last(seen_before, version_before, statistics)
            note(f"\nInterrupted: saved {path} after {get_current_batch(net)} iterations")
            raise Interrupted(f"saved {path}") from interrupt
        except Exception as error:
            if group is None:
                raise
            stop = group.stopped(error)
            if self.writer and (stop.interrupted or get_current_batch(net) > self.started_at):
                try:
                    path = self.save_last(seen_before, version_before, statistics)
                except Exception as failure:   # noqa: BLE001 - a full disk, say: the others wait in the end
                    group.abort(group.stop_line(Stopped(f"{stop.cause}; then rank 0: {describe(failure)}")))
                group.resume = f"resume from {path} (iteration {get_current_batch(net)})"
                if stop.interrupted:
                    note(f"\nInterrupted: saved {path} after {get_current_batch(net)} iterations")
            group.end(stop)
        finally:
            loader.close()
            if self.chart and self.chart.points:
                self.chart.draw()

    def backups(self, iteration):
        """darknet's backups after `iteration` (rank 0 of an MPI job writes, the others wait for _last)."""
        names = backup_names(self.cfg, iteration)
        if self.writer:
            for name in names:
                note(f"Saving weights to {self.save(name)}")
                if name.endswith("_last.weights") and self.ema and self.ema.averages is not None:
                    with self.ema.in_place():
                        note(f" EMA weights are saved to the file: "
                             f"{self.save(f'{Path(self.cfg).stem}_ema.weights')} ")
        if self.group and any(name.endswith("_last.weights") for name in names):
            self.group.saved(self.backup / f"{Path(self.cfg).stem}_last.weights", iteration)

    def save_last(self, seen_before, version_before, statistics):
        """Save <cfg>_last.weights on a stop: the iterations done (the forwards of one under way, which had not
        updated, undone: an iteration is all or nothing). Returns its path."""
        net = self.net
        if net.params_version == version_before:
            net.seen = seen_before
            for array, before in zip(running_statistics(net), statistics):
                array[...] = before
        return self.save(f"{Path(self.cfg).stem}_last.weights")
