from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"


def shared_path(*parts):
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (the shared reference data is not beside the project)")
    return path


@pytest.fixture(autouse=True)
def chatter_on(monkeypatch):
    """`-q` switches stderr chatter (and OpenCV's log) off process-wide; in-process CLI tests must not leak that
    into others."""
    from pydarknet.config import chatter
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
    from pydarknet.network import Network
    from pydarknet.weights import save_weights
    folder = tmp_path_factory.mktemp("classifier")
    cfg = folder / "small.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n\n"
                   "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
                   "[convolutional]\nfilters=3\nsize=1\nstride=1\nactivation=linear\n\n[avgpool]\n\n[softmax]\n")
    save_weights(Network(cfg, quiet_unused=True).initialize(3), folder / "small.weights")
    (folder / "small.names").write_text("a\nb\nc\n")
    (folder / "small.data").write_text(f"classes=3\nnames={folder / 'small.names'}\ntop=3\n")
    return [str(folder / name) for name in ("small.data", "small.cfg", "small.weights")]
