"""Functions a child process runs in tests/test_workers.py (importable without napari)."""

import os
import time


def frames(n, post):
    """Posts 0 .. n-1, each with how many frames the parent had acknowledged before it."""
    for i in range(n):
        post(i)
    return "done"


def pid():
    return os.getpid()


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def fail(message):
    raise ValueError(message)


class Unpicklable(Exception):
    def __init__(self, a, b):  # pickling calls Unpicklable(message): fails
        super().__init__(f"{a} and {b}")


def fail_oddly():
    raise Unpicklable("one", "two")


def die():
    os._exit(3)
