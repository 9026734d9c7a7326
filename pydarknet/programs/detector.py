"""darknet's detector programs: `detect` / `detector test` over images, and `detector demo` over a video."""
import sys
import time

from ..files.config import DarknetError, check_fractions, note, warn
from ..files.weights import AtomicFile
from ..results.output import detection_lines, fork_json_frame, json_line, write_crops, write_labels
from ..tasks.stops import held
from ..tasks.stream import FirstAhead
from .file_arguments import ArgumentsError
from .images import command_images, for_each_batch, load_names, load_network, on_cluster


def run_detect(data_file, cfg, weights, images, thresh, hier, nms, ext_output, out, save_labels, letterbox,
               as_json, decoder, darknet=None, batch=1, dask=None, unordered=False, tiles=None, crop=None,
               heatmaps=False, skip_classes=None):
    """darknet's `detect` and `detector test`. A network of the fork's prints as the fork does (milliseconds,
    detections by left edge); pjreddie's as pjreddie does. `thresh`, `letterbox`: None for the darknet's
    default. `out`: a name ending in .json gets the fork's JSON file of the whole run; any other names the
    drawn image. `batch`: images per forward pass. `dask`: the address of a Dask cluster to detect on (this
    process then only prints, draws and labels; `unordered`: in the order results come). `tiles` (a
    tiles.Tiles), `skip_classes` (a set, or a string as -skipclasses takes it), `heatmaps`: as Detector's;
    `crop`: a folder to cut each detection out into (output.write_crops)."""
    from ..files.image import save_image, to_bgr8
    from ..results.heatmap import save_heatmaps
    from ..tasks.predict import Detector

    check_fractions(thresh=thresh, hier=hier, nms=nms)
    if heatmaps and dask is not None:
        raise DarknetError("-heatmaps reads the network's layers in this process: run it without --dask")
    given = command_images(images, cluster=dask is not None)
    if save_labels and given.piped is not None:
        raise ArgumentsError("-save_labels writes the labels beside the image: pipe the image's path, not its bytes")
    load = FirstAhead(given.loader(decoder), given.listed if dask is None else None)
    net = load_network(cfg, weights, darknet, role="detector")
    detector = Detector(cfg, weights, letterbox=letterbox, decoder=decoder, network=net, tiles=tiles,
                        skip_classes=skip_classes, heatmaps=heatmaps)
    detector.names, _ = load_names(data_file, detector.classes, cfg)
    fork = net.darknet == "ab"
    json_out = out if out is not None and out.lower().endswith(".json") else None
    image_base = None if json_out else out
    drawing = image_base is not None or not as_json
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
            if as_json:
                print(json_line(result.as_json()))
            else:
                print("\n".join(detection_lines(path, result, fork, ext_output)))
            if json_file is not None:
                json_file.write(("" if count[0] == 1 else ", \n") + fork_json_frame(count[0], path, result))
            if (drawing or save_labels) and len(result.finite_boxes()) < len(result.boxes):
                warn(f"{path}: {len(result.boxes) - len(result.finite_boxes())} boxes with an inf or NaN coordinate "
                     f"are not {' or '.join(w for w, on in (('drawn', drawing), ('labelled', save_labels)) if on)}")
            if save_labels:
                write_labels(path, result)
            if drawing:
                note(f"saved {save_image(detector.draw(bgr, result), base)}")

    def run_batch(loaded):
        return detector.detect_batch([prepared for _, prepared in loaded], thresh, hier, nms)

    json_file = AtomicFile(json_out) if json_out else None   # whole, with the images done, however the run ends
    try:
        if json_file is not None:
            json_file.write("[\n")
        if dask is None:
            for_each_batch(given.names, prepare, run_batch, show, batch)
        else:
            on_cluster(dask, "detect", given.names, show, cfg, weights, names=detector.names, thresh=thresh,
                       hier_thresh=hier, nms=nms, letterbox=letterbox, decoder=decoder, darknet=darknet, batch=batch,
                       ordered=not unordered, tiles=tiles, skip_classes=tuple(sorted(detector.skip_classes)))
    finally:
        if json_file is not None:
            json_file.write("\n]")
            json_file.commit()
            note(f"saved {json_out}")


def run_demo(data_file, cfg, weights, source, camera, thresh, hier, nms, letterbox, ext_output, out_filename, prefix,
             frame_skip, time_limit, batch, as_json, darknet=None, progress_bar=None, track=False, count_line=None,
             count_band=None, mjpeg_port=None, json_port=None, mjpeg_quality=40, post_url=None, host="127.0.0.1",
             skip_classes=None):
    """The fork's `detector demo`: detection on each frame of a video, image sequence, stream or camera.
    `progress_bar(label, lines_on_stdout, describe)`, if given, makes the progress callback for a video of known
    length (the CLI's bar on a terminal). `track`: track ids (track.Tracker); `count_line`: (x1, y1, x2, y2), count
    the tracks crossing it (implies `track`), with `count_band`'s hysteresis (None: the Tracker's default).
    `mjpeg_port`, `json_port`, `post_url`: the live output (live.LiveOutput), served on `host`. `skip_classes`: as
    Detector's (never shown, streamed, tracked or counted)."""
    from ..results.track import Tracker
    from ..tasks.predict import Detector
    from ..tasks.video import Video, frame_json, objects_lines, run_demo as detect_video

    check_fractions(thresh=thresh, hier=hier, nms=nms)
    video = Video(source, camera)
    listeners = []
    if mjpeg_port is not None or json_port is not None or post_url is not None:
        from ..tasks.live.output import LiveOutput
        listeners.append(LiveOutput(video.name, mjpeg_port, json_port, post_url, host, mjpeg_quality))
    try:
        net = load_network(cfg, weights, darknet, role="detector")
        detector = Detector(cfg, weights, letterbox=letterbox, network=net, skip_classes=skip_classes)
        detector.names, _ = load_names(data_file, detector.classes, cfg)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    band = {} if count_band is None else {"count_band": count_band}
    tracker = Tracker(count_line=count_line, **band) if track or count_line is not None else None
    for listener in listeners:
        listener.tracker, listener.names = tracker, detector.names
        for line in listener.addresses(host):
            note(line)
    note(f"video: {video.name}, {video.fps:g} fps" + (f", {video.frame_count} frames" if video.frame_count else ""))

    def counting():
        return tracker.counter.as_json(detector.names) if tracker is not None and tracker.counter else None

    def show(frame, result, rate):
        if as_json:
            print(json_line(frame_json(frame, result, counting())))
        else:
            print("\n".join(["Objects:", "", *objects_lines(result, detector.names, ext_output), "",
                             f"FPS:{rate.fps:.1f} \t AVG_FPS:{rate.avg_fps:.1f}"]))
        sys.stdout.flush()

    started = time.perf_counter()

    def frames_and_rate(done, total):
        return f"{done}/{total} frames, {done / max(time.perf_counter() - started, 1e-9):.1f} fps"

    # the bar (with click's time left) on a file of known length; the Objects lines tell progress on a terminal
    progress = None
    if progress_bar is not None and video.frame_count:
        progress = progress_bar("demo", lines_on_stdout=True, describe=frames_and_rate)
    detected = detect_video(detector, video, show, thresh, hier, nms, batch=batch, frame_skip=frame_skip,
                            out_filename=out_filename, prefix=prefix, time_limit=time_limit, progress=progress,
                            tracker=tracker, listeners=listeners)
    note(f"{detected} frames detected; input video stream closed")
