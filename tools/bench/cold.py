"""`make bench-cold`: the first command of a fresh install, as a new user meets it. The wheel built from this
checkout (with the kernels it carries) is installed in a new virtual environment; `pydarknet detect` of yolov3-tiny
on dog.jpg runs there with an empty HOME and an empty Numba cache, taking turns with OpenCV DNN's script doing the
same job on its first run (it compiles nothing: its timing is its start and its forward), then each again warm.
Whole-process wall times, medians of the runs; the CPU named first.

    python3 -m tools.bench.cold [--wheel dist/pydarknet-...whl] [--runs 5]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydarknet.tasks.about import cpu_line

from ..fresh_install import build_wheel, clean_environment, fresh_environment
from .peers import OPENCV_DETECT, SHARED, weights_file


def timed(command, cwd, env):
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a wheel already built (default: build one from this checkout)")
    parser.add_argument("--runs", type=int, default=5, help="fresh installs' first commands to time (default 5)")
    args = parser.parse_args(argv)
    print(cpu_line(), flush=True)
    weights = weights_file("yolov3-tiny", SHARED)
    with tempfile.TemporaryDirectory(prefix="pydarknet-cold-") as tmp:
        tmp = Path(tmp)
        if args.wheel is None:
            started = time.perf_counter()
            args.wheel = build_wheel(tmp / "wheels")
            print(f"wheel built in {time.perf_counter() - started:.0f} s: {args.wheel.name}", flush=True)
        bin_dir = fresh_environment(args.wheel, tmp / "venv")
        ours = [str(bin_dir / "pydarknet"), "detect", "cfg/yolov3-tiny.cfg", str(weights), "data/dog.jpg"]
        opencv = [str(bin_dir / "python"), "-c", OPENCV_DETECT, *installed_files(bin_dir, weights)]
        times = {"first": [], "warm": [], "opencv first": [], "opencv warm": []}
        for run in range(args.runs):
            fresh = tmp / f"fresh-{run}"
            (fresh / "home").mkdir(parents=True)
            env = clean_environment(HOME=str(fresh / "home"), NUMBA_CACHE_DIR=str(fresh / "numba"))
            seconds, stderr = timed(ours, fresh, env)
            if "Compiling" in stderr:
                print("note: the first command compiled kernels (the wheel carries none for this CPU)", flush=True)
            times["first"].append(seconds)
            times["opencv first"].append(timed(opencv, fresh, env)[0])
            times["warm"].append(timed(ours, fresh, env)[0])
            times["opencv warm"].append(timed(opencv, fresh, env)[0])
    first, theirs = statistics.median(times["first"]), statistics.median(times["opencv first"])
    warm, theirs_warm = statistics.median(times["warm"]), statistics.median(times["opencv warm"])
    print(f"first detect on a fresh install   pydarknet {first:6.2f} s   opencv {theirs:6.2f} s   "
          f"ratio {first / theirs:5.2f}x", flush=True)
    print(f"the same again (warm)             pydarknet {warm:6.2f} s   opencv {theirs_warm:6.2f} s   "
          f"ratio {warm / theirs_warm:5.2f}x", flush=True)
    return 0


def installed_files(bin_dir, weights):
    """The files the command reads, for OpenCV's script: the cfg and image inside the installed package."""
    code = "from pydarknet.files.resources import shipped_root as r; print(r())"
    root = subprocess.run([str(bin_dir / "python"), "-c", code], capture_output=True, text=True, check=True,
                          env=clean_environment()).stdout.strip()
    return [f"{root}/cfg/yolov3-tiny.cfg", str(weights), f"{root}/data/dog.jpg"]


if __name__ == "__main__":
    sys.exit(main())
