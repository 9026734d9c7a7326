"""stream.FirstAhead: the first image decodes in a background thread while the command loads its network."""
import threading

import pytest

from pydarknet.files.config import DarknetError
from pydarknet.tasks.stream import FirstAhead


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
