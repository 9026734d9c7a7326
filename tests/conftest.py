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
def chatter_on():
    """`-q` switches stderr chatter off process-wide; in-process CLI tests must not leak that into others."""
    from pydarknet.config import chatter
    chatter["quiet"] = False
    yield
    chatter["quiet"] = False


@pytest.fixture
def darknet_products():
    """darknet's exact-order matrix products for the test (the golden training cases are bit-exact with them)."""
    from pydarknet.kernels import products
    previous = products.set_backend("darknet")
    yield
    products.set_backend(previous)
