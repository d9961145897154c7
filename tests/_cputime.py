"""A pytest plugin that writes each test's wall time and CPU time to a TSV file, for finding
the tests that cost the most when the machine is loaded (wall times then mostly measure the
neighbours). Not loaded by default:

    xvfb-run -a python -m pytest -p tests._cputime   # CPUTIME_OUT=path, default pytest-cputime.tsv

Columns: test id, wall seconds (setup + call + teardown), CPU seconds of this process (all its
threads), CPU seconds of child processes reaped meanwhile (a worker process that outlives the
test is counted where it is reaped, or not at all).
"""

import os
import resource
import time

import pytest


def _now() -> tuple[float, float, float]:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time(), c.ru_utime + c.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    w0, p0, c0 = _now()
    yield
    w1, p1, c1 = _now()
    with open(os.environ.get("CPUTIME_OUT", "pytest-cputime.tsv"), "a") as f:
        f.write(f"{item.nodeid}\t{w1 - w0:.3f}\t{p1 - p0:.3f}\t{c1 - c0:.3f}\n")
