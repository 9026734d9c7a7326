"""stream.FirstAhead: the first image decodes in a background thread while the command loads its network;
stream.prefetch: the next images are prepared in a background thread while the network runs."""
import threading

import pytest

from pydarknet.files.config import DarknetError
from pydarknet.tasks.stream import FirstAhead, parallel_kernels_thread_safe, prefetch


def recording(fail_on=()):
    calls = []

    def fn(item):
        calls.append((item, threading.current_thread().name))
        if item in fail_on:
            raise DarknetError(f"cannot load image {item}")
        return item.upper()
    return fn, calls


def test_the_first_item_is_computed_ahead_once_and_the_others_here():
    fn, calls = recording()
    load = FirstAhead(fn, ["a.jpg", "b.jpg", "a.jpg"])
    assert [load("a.jpg"), load("b.jpg"), load("a.jpg")] == ["A.JPG", "B.JPG", "A.JPG"]
    here = threading.current_thread().name
    assert calls == [("a.jpg", "pydarknet-first"), ("b.jpg", here), ("a.jpg", here)]


def test_an_error_ahead_is_raised_where_the_item_is_asked_for():
    fn, calls = recording(fail_on={"bad.jpg"})
    load = FirstAhead(fn, ["bad.jpg", "good.jpg"])
    with pytest.raises(DarknetError, match="cannot load image bad.jpg"):
        load("bad.jpg")
    assert load("good.jpg") == "GOOD.JPG"


@pytest.mark.parametrize("items", [None, []])
def test_no_items_no_thread(items):
    fn, calls = recording()
    load = FirstAhead(fn, items)
    assert load.worker is None and calls == []
    assert load("c.jpg") == "C.JPG" and calls == [("c.jpg", threading.current_thread().name)]


@pytest.mark.skipif(not parallel_kernels_thread_safe(), reason="under Numba's workqueue layer prefetch stays here")
def test_prefetched_items_run_their_kernels_on_the_background_thread_alone():
    """After the first, the items come from prefetch's thread, whose Numba kernels run on that thread alone: a
    kernel team of its own would share the cores with the forward pass beside it (a yolov3-tiny stream at batch 1:
    33.1-34.8 -> 36.2-36.8 images/s in --fast on 2 cores); the calling thread keeps its threads."""
    import numba
    here, threads = threading.current_thread().name, numba.get_num_threads()

    def items():
        for _ in range(4):
            yield threading.current_thread().name, numba.get_num_threads()
    assert list(prefetch(items(), 2)) == [(here, threads)] + [("pydarknet-prefetch", 1)] * 3
    assert numba.get_num_threads() == threads
