"""The examples of README.md and docs/ (the Quick start, training on the shapes set, pipelines, tiles, shell
completion, the AlexeyAB networks' lines), run as written (made short: fewer images, two training iterations) by a
shell in an empty directory, `pydarknet` being the command of the wheel built from this checkout and installed in
a fresh environment (conftest.installed): what a user who installed it has. tests/test_docs.py checks that every
other example is either run by another test or names why not."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, shared_path

README = (ROOT / "README.md").read_text()
# The sections whose ```sh blocks run here, as (page, heading); tests/test_docs.py reads this list.
SECTIONS = (("README.md", "Quick start"), ("docs/training.md", "Train on the shapes set"),
            ("docs/pipelines.md", "Images from stdin, results as JSON"), ("docs/pipelines.md", "On a cluster (Dask)"),
            ("docs/commands.md", "No .data file, tiles, crops, skipped classes, heatmaps"),
            ("docs/commands.md", "Shell completion"), ("docs/alexeyab-networks.md", ""))
# Made short to run in seconds: the same commands on a smaller set, and two iterations of training.
DATASET = "pydarknet datasets shapes shapes"


def section(title, page="README.md"):
    """A page's text from the heading `title` to the next heading (## or deeper: a single # starts the comment
    lines of the examples); title "": from the top to the first ## heading."""
    text = (ROOT / page).read_text()
    start = re.search(rf"^##+ {re.escape(title)}$", text, re.M) if title else re.search(r"\A", text)
    end = re.compile(r"^##+ ", re.M).search(text, start.end())
    return text[start.end():end.start() if end else len(text)]


def examples(title, page="README.md"):
    """The commands of a section's ```sh blocks, with the lines of their comments that show output."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section(title, page), re.S):
        for line in block.splitlines():
            if line.startswith("# ") and commands:
                commands[-1][1].append(line[2:])
            elif line.strip():
                commands.append([line, []])
    return commands


def runnable(line):
    """The shell line to run: `make demo` as its comment says, comments cut, made short."""
    if line.startswith("make demo"):
        line = line.split("# ", 1)[1]
    line = line.split("  #")[0].strip()
    line = line.replace(DATASET, f"{DATASET} --train 24 --valid 6")
    if line.startswith("pydarknet train "):
        line += " --max-batches 2"
    return line


@pytest.fixture
def shell(tmp_path, installed):
    """run(line) -> CompletedProcess of `bash -c line` in an empty folder, the installed wheel's `pydarknet` first
    on the PATH."""
    bin_dir, _, installed_env = installed
    work = tmp_path / "work"
    work.mkdir()
    env = {**installed_env, "PATH": f"{bin_dir}{os.pathsep}{installed_env['PATH']}",
           "PYDARKNET_HOME": str(tmp_path / "cache")}

    def run(line):
        return subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    run.work, run.cache, run.command = work, tmp_path / "cache", bin_dir / "pydarknet"
    return run


def succeeds(shell, line):
    proc = shell(runnable(line))
    assert proc.returncode == 0, f"{runnable(line)}\n{proc.stderr[-2000:]}"
    return proc


def prints_what_is_shown(proc, shown):
    """The output in a page's comments, the timing line's figure aside."""
    printed = proc.stdout.splitlines()
    assert len(printed) == len(shown), (printed, shown)
    for got, want in zip(printed, shown):
        assert got == want or "Predicted in" in want and got.split(" in ")[0] == want.split(" in ")[0]


def cached(shell, *names):
    """The official weights `names` in the download cache, from ../shared/models."""
    models = shared_path("models")
    shell.cache.mkdir(exist_ok=True)
    for name in names:
        os.symlink(models / name, shell.cache / name)


def test_quick_start_runs_as_written(shell):
    """`make demo` and, with the official weights of ../shared in the download cache, the examples that use them;
    the lines printed are the README's."""
    assert shell("command -v pydarknet").stdout.strip() == str(shell.command)   # the wheel's, not this checkout
    cached(shell, "tiny.weights", "yolov3-tiny.weights")
    lines = examples("Quick start")
    assert [line for line, _ in lines][:2] == ["make demo      # pydarknet detector test cfg/shapes.data "
                                               "cfg/shapes-v4tiny.cfg data/shapes-v4tiny.weights data/shapes.jpg",
                                               "pydarknet download tiny yolov3-tiny"]
    for line, shown in lines:
        proc = succeeds(shell, line)
        if shown:
            prints_what_is_shown(proc, shown)
    assert (shell.work / "predictions.jpg").stat().st_size > 10000
    assert (shell.work / "shapes/backup/shapes-tiny_final.weights").exists()
    # the README's first detection, above the Quick start: make demo's command, printing its lines
    first = [line for line, _ in examples("")]
    assert first[2] == lines[0][0].split("# ", 1)[1]
    prints_what_is_shown(succeeds(shell, first[2]), lines[0][1])


def test_training_runs_as_written(shell):
    lines = [line for line, _ in examples("Train on the shapes set", "docs/training.md")]
    assert lines[0].startswith("pydarknet datasets shapes shapes") and lines[2].startswith("pydarknet train ")
    for line in lines:
        succeeds(shell, line)
    assert (shell.work / "shapes/backup/shapes-tiny_final.weights").stat().st_size == 1860756
    assert (shell.work / "shapes-tiny-anchors.cfg").exists()


def test_pipelines_run_as_written(shell):
    """find | detect --json, and the map of the Dask example on a local cluster (the example naming a running
    scheduler is left out)."""
    (shell.work / "photos").mkdir()
    for name in ("dog.jpg", "eagle.jpg"):
        shutil.copy(ROOT / "data" / name, shell.work / "photos" / name)
    cached(shell, "yolov3-tiny.weights")
    lines = [line for line, _ in examples("Images from stdin, results as JSON", "docs/pipelines.md")
             + examples("On a cluster (Dask)", "docs/pipelines.md") if "tcp://scheduler" not in line]
    assert len(lines) == 3 and lines[1].startswith("cat photos/dog.jpg |") and "--dask local:2" in lines[2]
    succeeds(shell, lines[0])
    jsonl = [json.loads(line) for line in (shell.work / "dets.jsonl").read_text().splitlines()]
    assert sorted(result["image"] for result in jsonl) == ["photos/dog.jpg", "photos/eagle.jpg"]
    piped = json.loads(succeeds(shell, lines[1]).stdout)   # the image's bytes on stdin: the file's detections
    dog = next(result for result in jsonl if result["image"] == "photos/dog.jpg")
    assert piped["image"] == "stdin" and piped["detections"] == dog["detections"] and len(dog["detections"]) >= 3
    assert "mean average precision (mAP@0.50)" in succeeds(shell, lines[2]).stdout


def test_tiles_crops_heatmaps_and_completion_run_as_written(shell):
    """docs/commands.md: the files in any order with -tiles -crop -heatmaps, and click's completion script."""
    (line, _), = examples("No .data file, tiles, crops, skipped classes, heatmaps", "docs/commands.md")
    succeeds(shell, line)
    assert (shell.work / "predictions.jpg").exists() and (shell.work / "predictions_heatmap.jpg").exists()
    assert list((shell.work / "crops").glob("*.jpg"))
    (line, _), = examples("Shell completion", "docs/commands.md")
    succeeds(shell, line)
    script = (shell.work / "pydarknet-complete.bash").read_text()
    assert "_PYDARKNET_COMPLETE" in script and "complete " in script


def test_alexeyab_networks_print_the_forks_lines(shell):
    """docs/alexeyab-networks.md: yolov4-tiny's and Yolo-Fastest's lines on dog.jpg, as the page shows them."""
    cached(shell, "yolov4-tiny.weights", "yolo-fastest-1.1.weights")
    lines = examples("", "docs/alexeyab-networks.md")
    assert len(lines) == 2 and all(shown for _, shown in lines)
    for line, shown in lines:
        prints_what_is_shown(succeeds(shell, line), shown)


def test_the_table_of_options_is_what_each_command_takes():
    """Each row of docs/commands.md's table of shared options against the options the commands really have."""
    import click

    from pydarknet.cli import cli
    header = ("| command | `-q` `--debug` | `--json` | `--decoder` | `--darknet` | `--fast` | `--dask` | `-batch` | "
              "`-gpus` |")
    rows = (ROOT / "docs/commands.md").read_text().split(header)[1].split("\n\n")[0].strip().splitlines()[1:]
    flags = ["-q", "--json", "--decoder", "--darknet", "--fast", "--dask", "-batch", "-gpus"]
    checked = set()
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for name in re.findall(r"`([a-z_ -]+)`", cells[0]):
            if name.startswith("-"):
                continue
            command = cli
            for word in name.split():
                command = command.commands[word]
            taken = {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
            assert [flag in taken for flag in flags] == [cell == "yes" for cell in cells[1:]], name
            checked.add(name)
    every = {f"{group} {name}" if group else name for group, commands in
             [("", cli.commands)] + [(g, c.commands) for g, c in cli.commands.items() if isinstance(c, click.Group)]
             for name, c in commands.items() if not isinstance(c, click.Group)}
    assert checked == every
