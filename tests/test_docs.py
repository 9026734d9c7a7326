"""README.md, CHANGELOG.md and the guide in docs/: every relative link resolves, every example is run by a test or
says why not, the stated defaults are the code's, the command reference is what the code generates, and the pages
speak of what is (no issue numbers)."""
import re
import subprocess
import sys

import click
import pytest

from conftest import ROOT
from test_readme import SECTIONS, section

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md"] + sorted((ROOT / "docs").glob("*.md"))
# The examples that tests/test_readme.py does not run as a section, by (page, the block's first line): the test
# that runs them, or why none does.
ELSEWHERE = {
    ("README.md", "python3 -m pip install -e '.[test]'"): ".ci/run runs these two lines (test_the_readme_opens_"
                                                          "with_the_two_commands_ci_runs)",
    ("README.md", "pydarknet detector test cfg/shapes.data cfg/shapes-v4tiny.cfg data/shapes-v4tiny.weights "
                  "data/shapes.jpg"): "test_readme.py::test_quick_start_runs_as_written",
    ("README.md", "python3 -m pip wheel --no-deps . -w dist/        # a few minutes: it compiles the kernels the "
                  "wheel carries"):
        "conftest's `installed` builds the wheel and installs it in a fresh environment (test_install.py, "
        "test_shipped.py)",
    ("README.md", "import cv2"): "test_darknet_module.py::test_the_readme_python_examples_print_what_they_say",
    ("docs/python.md", "import cv2"): "test_darknet_module.py::test_the_readme_python_examples_print_what_they_say",
    ("docs/python.md", "import random"): "test_darknet_module.py::test_the_readme_python_examples_print_what_they_"
                                         "say",
    ("docs/development.md", "python3 -m pip install -e '.[test]'"): "the suite itself",
    ("docs/engines.md", "pip install -e '.[openvino]'      # or '.[onnx]' for ONNX Runtime"):
        "installs packages; test_engines.py runs --engine openvino and onnxruntime on the golden cases",
    ("docs/export.md", "pip install -e '.[onnx]'      # from a checkout; from a wheel: pip install "
                       "'dist/pydarknet-0.1.0-<tags>.whl[onnx]'"):
        "installs packages; test_onnx.py exports and runs the graphs in ONNX Runtime",
    ("docs/export.md", "import json, numpy as np, onnxruntime"): "test_onnx.py runs postprocess on exported graphs",
    ("docs/serving.md", "pip install -e '.[serve]'     # Starlette, uvicorn, prometheus_client; from a wheel: "
                        "'...whl[serve]'"): "a server and its client: test_serve.py starts `pydarknet serve`",
    ("docs/serving.md", "import numpy as np, tritonclient.http as http    # pip install 'tritonclient[http]'"):
        "needs a running server: test_serve.py drives one with tritonclient.http",
    ("docs/training.md", "pydarknet datasets convert voc  VOCdevkit/VOC2012 pets                # Annotations/, "
                         "JPEGImages/"): "needs a labelling tool's export: test_datasets_convert.py, "
                                         "test_datasets_check.py and test_datasets_coco.py run these commands",
    ("docs/training.md", "pydarknet train shapes/shapes.data cfg/shapes-tiny.cfg -gpus cpu,cpu            # one "
                         "process, two replicas"): "needs MPI hosts or Slurm: test_mpi.py runs mpiexec -n 2 and "
                                                   "-gpus cpu,cpu",
    ("docs/training.md", "#!/bin/bash"): "a Slurm batch script: test_stops.py sends SIGTERM to train and resumes",
    ("docs/video-and-live.md", "pydarknet demo cfg/yolov4-tiny.cfg yolov4-tiny.weights street.mp4 -out_filename "
                               "boxes.mp4 -dont_show"): "needs a video and a camera: test_video.py runs demo on "
                                                        "made clips",
    ("docs/video-and-live.md", "pydarknet detector demo cfg/coco.data cfg/yolov4-tiny.cfg yolov4-tiny.weights "
                               "rtsp://camera/stream \\"): "needs a camera's stream: test_live.py serves the ports",
    ("docs/video-and-live.md", "from pydarknet import Tracker"): "a fragment (detector, frames): test_track.py",
}


def blocks(path):
    """(heading, language, code) of each fenced block of a page with a language; heading: the ## or ### above it,
    "" at the top."""
    heading, found = "", []
    for match in re.finditer(r"^(#{2,6}) ([^\n]*)$|^```(\w+)\n(.*?)^```", path.read_text(), re.M | re.S):
        if match[1]:
            heading = match[2]
        else:
            found.append((heading, match[3], match[4]))
    return found


def slug(heading):
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_resolves():
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", linked.read_text(), flags=re.M | re.S),
                                      re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.name}: {target}"


def test_the_pages_say_what_is_not_how_it_came_to_be():
    for page in PAGES:
        if page.name == "CHANGELOG.md":
            continue
        text = page.read_text()
        assert not re.search(r"\bissues? #?\d+|#\d{2,}\b|\bfixed since\b", text, re.I), page.name


def test_every_example_runs_in_a_test_or_says_why_not():
    """Each ```sh block of a section that test_readme.py runs is run there; every other ```sh or ```python block
    is listed in ELSEWHERE with the test that runs it or the reason none can."""
    listed = set()
    for page in PAGES:
        name = str(page.relative_to(ROOT))
        for heading, language, code in blocks(page):
            if language not in ("sh", "python"):
                continue
            if language == "sh" and (name, heading) in SECTIONS:
                continue
            first = code.splitlines()[0]
            assert (name, first) in ELSEWHERE, f"{name}, {heading!r}: {first}"
            listed.add((name, first))
    assert listed == set(ELSEWHERE)
    for page, heading in SECTIONS:
        assert "```sh" in section(heading, page), (page, heading)


def test_the_readme_opens_with_the_two_commands_ci_runs():
    """The front page: 150-250 lines; its first ```sh block is the install and test commands that .ci/run runs, and
    a first detection comes within its first 60 lines."""
    readme = (ROOT / "README.md").read_text()
    assert 150 <= len(readme.splitlines()) <= 250
    first = re.search(r"```sh\n(.*?)```", readme, re.S)[1].splitlines()
    assert first == ["python3 -m pip install -e '.[test]'", "python3 -m pytest -q"]
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert any(line.startswith("python3 -m pip install") and "-e '.[test]'" in line for line in ci)
    assert ci[-1] == "python3 -m pytest -q"
    head = "\n".join(readme.splitlines()[:60])
    assert first[1] in head and "pydarknet detector test cfg/shapes.data" in head


def test_the_command_reference_is_generated_from_the_code():
    """docs/cli-reference.md is what tools/cli_reference.py prints: regenerate it with
    `python3 tools/cli_reference.py > docs/cli-reference.md`."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import cli_reference
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert (ROOT / "docs/cli-reference.md").read_text() == cli_reference.page()


def test_the_stated_defaults_are_the_codes():
    """docs/commands.md's table of defaults against the options of `detect` and `demo`."""
    from pydarknet.cli import cli
    from pydarknet.tasks.options import Preprocessing, Thresholds
    from pydarknet.results.tiles import Tiles
    text = (ROOT / "docs/commands.md").read_text()
    table = re.search(r"^\| flag \| default \|\n\| --- \| --- \|\n(.*?)\n\n", text, re.M | re.S)[1]
    stated = {row.split("|")[1].strip().strip("`"): row.split("|")[2].strip() for row in table.splitlines()}
    options = {opt: param for name in ("detect", "demo") for param in cli.commands[name].params
               if isinstance(param, click.Option) for opt in param.opts}
    for flag, value in stated.items():
        if flag == "-thresh":
            assert options[flag].default is None and Thresholds().thresh is None
            assert ".25 for AlexeyAB" in value and ".5 for pjreddie" in value
        elif flag == "-tile_overlap":
            assert float(value) == Tiles().overlap
        else:
            assert str(options[flag].default) == value, flag
    assert Thresholds().hier_thresh == float(stated["-hier"]) and Preprocessing().decoder == stated["--decoder"]


def test_the_readme_speed_table_names_cpu_date_and_commit():
    readme = (ROOT / "README.md").read_text()
    rows = readme.split("| CPU | measured | fastest mode |")[1].split("\n\n")[0].strip().splitlines()[2:]
    assert len(rows) >= 3
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d, [0-9a-f]{7}", cells[1]), row
        commit = cells[1].split(", ")[1]
        known = subprocess.run(["git", "cat-file", "-e", commit], cwd=ROOT, capture_output=True)
        if known.returncode and (ROOT / ".git").exists():
            pytest.fail(f"{commit}: not a commit of this repository")
