"""torch's idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) in the commands and in the panels'
worker process: spinning ones collapsed training on a shared CPU (`core.device.passive_openmp`)."""

import os

from napari_tubediff.cli import main
from napari_tubediff.workers.process import Child


def test_the_command_sets_a_passive_wait_policy_unless_one_is_chosen(monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main([]) == 0  # no command: help, and the policy is set before anything imports torch
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main([]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice stands
    capsys.readouterr()


def test_the_worker_process_gets_a_passive_wait_policy_unless_one_is_chosen(monkeypatch):
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if given is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", given)
        child = Child(warm=())
        try:
            assert child.run(os.getenv, "OMP_WAIT_POLICY") == expected
        finally:
            child.terminate()
        assert os.environ.get("OMP_WAIT_POLICY") == given  # the GUI's own environment is left alone
