import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"


def toy_detector_cfg(classes, max_batches):
    """A [yolo] detector of 32 x 32 images small enough to train for a few iterations in seconds (batch 4 in two
    subdivisions, the learning rate's burn-in and one step inside the first iterations)."""
    return f"""[net]
batch=4
subdivisions=2
width=32
height=32
channels=3
learning_rate=0.01
burn_in=2
max_batches={max_batches}
policy=steps
steps=3
scales=.1
momentum=0.9
decay=0.0005

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters={2 * (classes + 5)}
activation=linear

[yolo]
mask=0,1
anchors=4,4, 8,8
classes={classes}
num=2
jitter=.1
ignore_thresh=.5
random=0
"""


def run_command(capsys, *argv):
    """(exit code, stdout, stderr) of a pydarknet command run in this process (the CLI's main with an argv)."""
    from pydarknet.cli import main
    with pytest.raises(SystemExit) as end:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return end.value.code, out, err


def tool(name):
    """tools/<name>.py, a developer tool outside the package (the Makefile runs them from the repository root),
    imported as `tools.<name>`: the root joins the end of sys.path where pytest was started elsewhere."""
    import importlib
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    return importlib.import_module(f"tools.{name}")


def bench_module(name):
    """tools/bench/<name>.py, a developer benchmark, imported as `tools.bench.<name>`."""
    return tool(f"bench.{name}")


def shared_path(*parts):
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (the shared reference data is not beside the project)")
    return path


def takes_ctrl_c():
    """preexec_fn of a command a test interrupts: SIGINT as a terminal's foreground command has it. A test run
    started as a background job of a non-interactive shell ignores SIGINT, and its commands would inherit that
    (Python keeps an ignored SIGINT ignored) and run to their end through the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def chatter_on(monkeypatch):
    """`-q` switches stderr chatter (and OpenCV's log) off process-wide; in-process CLI tests must not leak that
    into others."""
    from pydarknet.files.config import chatter
    chatter["quiet"] = False
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)   # restored after the test
    yield
    chatter["quiet"] = False


@pytest.fixture
def darknet_products():
    """darknet's exact-order matrix products for the test (the golden training cases are bit-exact with them)."""
    from pydarknet.kernels import products
    previous = products.set_backend("darknet")
    yield
    products.set_backend(previous)


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """A random fully convolutional classifier (no batch-norm), 3 classes: its .data, .cfg and .weights."""
    from pydarknet.files.weights import save_weights
    from pydarknet.network.network import Network
    folder = tmp_path_factory.mktemp("classifier")
    cfg = folder / "small.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n\n"
                   "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
                   "[convolutional]\nfilters=3\nsize=1\nstride=1\nactivation=linear\n\n[avgpool]\n\n[softmax]\n")
    save_weights(Network(cfg, quiet_unused=True).initialize(3), folder / "small.weights")
    (folder / "small.names").write_text("a\nb\nc\n")
    (folder / "small.data").write_text(f"classes=3\nnames={folder / 'small.names'}\ntop=3\n")
    return [str(folder / name) for name in ("small.data", "small.cfg", "small.weights")]


WHEEL = {}   # the session's wheel build (tools/fresh_install.WheelBuild), started at collection, and its folder


def pytest_configure(config):
    """Numba's cache of the kernels checked against their sources (kernels/shipped.py's `fresh`) from the session's
    first kernel, not from its first Network: in the editable tree a test that calls kernels directly, run first
    after an edit to gemm.py alone, loaded conv.py's `_conv_direct` with the old register tile inlined."""
    from pydarknet.kernels import shipped
    shipped.install()


def pytest_collection_modifyitems(session, config, items):
    """Start building the wheel that `installed` installs as soon as a collected test needs it: the build (minutes
    of compiling, a process per CPU level) then runs, at a low priority, beside the tests before the first that
    installs it, on the core they mostly leave idle."""
    if not (WHEEL or config.option.collectonly) and any("installed" in item.fixturenames for item in items):
        WHEEL["folder"] = Path(tempfile.mkdtemp(prefix="pydarknet-wheel-"))
        WHEEL["build"] = tool("fresh_install").WheelBuild(WHEEL["folder"], niceness=19)


def pytest_sessionfinish(session, exitstatus):
    if WHEEL:
        WHEEL["build"].stop()
        shutil.rmtree(WHEEL["folder"], ignore_errors=True)


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """A fresh virtual environment (seeing the packages of the interpreter running the tests: numpy, numba,
    opencv, click) with the wheel built from this checkout installed in it, as a user installs pydarknet: (its bin
    folder, an empty working directory, environment). Built once for the tests that run the installed command
    (test_install.py, test_readme.py, test_shipped.py): with this environment's setuptools and Numba, which compile
    the kernels the wheel carries (tools/fresh_install.py; the build started at collection)."""
    install = tool("fresh_install")
    base = tmp_path_factory.mktemp("install")
    build = WHEEL.get("build") or install.WheelBuild(base / "wheels")
    bin_dir = install.fresh_environment(build.wait(), base / "venv")
    empty = base / "empty"
    empty.mkdir()
    # the commands below share one Numba cache (what the wheel lacks compiles once)
    return bin_dir, empty, install.clean_environment(NUMBA_CACHE_DIR=str(base / "numba-cache"))
