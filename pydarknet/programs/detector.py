"""darknet's detector programs: `detect` / `detector test` over images, and `detector demo` over a video."""
import sys
import time

from ..files.config import DarknetError, note, warn
from ..files.weights import AtomicFile
from ..results.output import detection_lines, fork_json_frame, json_line, write_crops, write_labels
from ..tasks.options import ImageOutputs, Live, NetworkOptions, Preprocessing, Thresholds, Tracking, VideoOutputs
from ..tasks.stops import held
from ..tasks.stream import FirstAhead
from .file_arguments import ArgumentsError
from .images import command_images, for_each_batch, load_names, load_network, on_cluster


def run_detect(data_file, cfg, weights, images, thresholds=Thresholds(), preprocessing=Preprocessing(),
               outputs=ImageOutputs(), darknet=None, batch=1, dask=None, unordered=False,
               network_options=NetworkOptions()):
    """darknet's `detect` and `detector test` of `images` (their paths; none: stdin's), with the options' values
    (tasks.options). A network of the fork's prints as the fork does (milliseconds, detections by left edge);
    pjreddie's as pjreddie does. `batch`: images per forward pass. `dask`: the address of a Dask cluster to detect
    on (this process then only prints, draws and labels; `unordered`: in the order results come)."""
    from ..files.image import save_image, to_bgr8
    from ..results.heatmap import save_heatmaps
    from ..tasks.predict import Detector

    decoder, out, crop, heatmaps = preprocessing.decoder, outputs.out, outputs.crop, outputs.heatmaps
    if heatmaps and dask is not None:
        raise DarknetError("-heatmaps reads the network's layers in this process: run it without --dask")
    given = command_images(images, cluster=dask is not None)
    if outputs.save_labels and given.piped is not None:
        raise ArgumentsError("-save_labels writes the labels beside the image: pipe the image's path, not its bytes")
    load = FirstAhead(given.loader(decoder), given.listed if dask is None else None)
    net = load_network(cfg, weights, darknet, role="detector", network_options=network_options)
    detector = Detector(cfg, weights, network=net, skip_classes=outputs.skip_classes, heatmaps=heatmaps,
                        preprocessing=preprocessing)
    detector.names, _ = load_names(data_file, detector.classes, cfg)
    fork = net.darknet == "ab"
    json_out = outputs.json_file
    image_base = None if json_out else out
    drawing = image_base is not None or not outputs.as_json
    count = [0]

    def prepare(path):
        im = load(path)
        return im, detector.prepare(im)

    def show(path, loaded, result):
        with held():   # a stop signal comes between images: each is in every output, or in none
            result.image = path
            count[0] += 1
            base = image_base or "predictions"
            if given.listed is None or len(given.listed) > 1:
                base = f"{base}_{count[0]}"
            bgr = None
            if drawing or crop is not None:   # a cluster's results come without pixels
                bgr = to_bgr8(loaded[0] if loaded else load(path))
            if crop is not None:
                write_crops(crop, path, bgr, result)
            if heatmaps:
                for written in save_heatmaps(result, detector.names, base, detector.skip_classes):
                    note(f"saved {written}")
            if outputs.as_json:
                print(json_line(result.as_json()))
            else:
                print("\n".join(detection_lines(path, result, fork, outputs.ext_output)))
            if json_file is not None:
                json_file.write(("" if count[0] == 1 else ", \n") + fork_json_frame(count[0], path, result))
            labelled = outputs.save_labels
            if (drawing or labelled) and len(result.finite_boxes()) < len(result.boxes):
                warn(f"{path}: {len(result.boxes) - len(result.finite_boxes())} boxes with an inf or NaN coordinate "
                     f"are not {' or '.join(w for w, on in (('drawn', drawing), ('labelled', labelled)) if on)}")
            if labelled:
                write_labels(path, result)
            if drawing:
                note(f"saved {save_image(detector.draw(bgr, result), base)}")

    def run_batch(loaded):
        return detector.detect_batch([prepared for _, prepared in loaded], thresholds=thresholds)

    json_file = AtomicFile(json_out) if json_out else None   # whole, with the images done, however the run ends
    try:
        if json_file is not None:
            json_file.write("[\n")
        if dask is None:
            for_each_batch(given.names, prepare, run_batch, show, batch)
        else:
            on_cluster(dask, "detect", given.names, show, cfg, weights, names=detector.names, thresholds=thresholds,
                       preprocessing=preprocessing, darknet=darknet, batch=batch, ordered=not unordered,
                       skip_classes=detector.skip_classes, engine=detector.engine)
    finally:
        if json_file is not None:
            json_file.write("\n]")
            json_file.commit()
            note(f"saved {json_out}")


def run_demo(data_file, cfg, weights, source, camera, thresholds=Thresholds(), preprocessing=Preprocessing(),
             outputs=VideoOutputs(), tracking=Tracking(), live=Live(), darknet=None, batch=1,
             network_options=NetworkOptions(), progress_bar=None):
    """The fork's `detector demo`: detection on each frame of `source` (a video, image sequence or stream) or of
    `camera`, with the options' values (tasks.options; `outputs.skip_classes` are never shown, streamed, tracked or
    counted). `progress_bar(label, lines_on_stdout, describe)`, if given, makes the progress callback for a video
    of known length (the CLI's bar on a terminal)."""
    from ..tasks.predict import Detector
    from ..tasks.video import Video, frame_json, objects_lines, run_demo as detect_video

    video = Video(source, camera)
    listeners = []
    if live.wanted:
        from ..tasks.live.output import LiveOutput
        listeners.append(LiveOutput(video.name, live.mjpeg_port, live.json_port, live.post_url, live.host,
                                    live.mjpeg_quality))
    try:
        net = load_network(cfg, weights, darknet, role="detector", network_options=network_options)
        detector = Detector(cfg, weights, network=net, skip_classes=outputs.skip_classes, preprocessing=preprocessing)
        detector.names, _ = load_names(data_file, detector.classes, cfg)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    tracker = tracking.tracker()
    for listener in listeners:
        listener.tracker, listener.names = tracker, detector.names
        for line in listener.addresses(live.host):
            note(line)
    note(f"video: {video.name}, {video.fps:g} fps" + (f", {video.frame_count} frames" if video.frame_count else ""))

    def counting():
        return tracker.counter.as_json(detector.names) if tracker is not None and tracker.counter else None

    def show(frame, result, rate):
        if outputs.as_json:
            print(json_line(frame_json(frame, result, counting())))
        else:
            print("\n".join(["Objects:", "", *objects_lines(result, detector.names, outputs.ext_output), "",
                             f"FPS:{rate.fps:.1f} \t AVG_FPS:{rate.avg_fps:.1f}"]))
        sys.stdout.flush()

    started = time.perf_counter()

    def frames_and_rate(done, total):
        return f"{done}/{total} frames, {done / max(time.perf_counter() - started, 1e-9):.1f} fps"

    # the bar (with click's time left) on a file of known length; the Objects lines tell progress on a terminal
    progress = None
    if progress_bar is not None and video.frame_count:
        progress = progress_bar("demo", lines_on_stdout=True, describe=frames_and_rate)
    detected = detect_video(detector, video, show, thresholds, batch=batch, frame_skip=outputs.frame_skip,
                            out_filename=outputs.out_filename, prefix=outputs.prefix, time_limit=outputs.time_limit,
                            progress=progress, tracker=tracker, listeners=listeners)
    note(f"{detected} frames detected; input video stream closed")
