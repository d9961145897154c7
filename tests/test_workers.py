"""workers/process.py: a function run in a child process, with frames in lock-step, cancel
that ends the child at once, errors sent back as themselves, and the in-thread fallback.
No timings: the assertions read values, orders and process states."""

import os
import threading

import numpy as np
import pytest

from napari_tubediff.workers import process, tasks
from napari_tubediff.workers.process import Child, ChildError, run_in_child

from . import _child_tasks as ct


@pytest.fixture(scope="module")
def child():
    c = Child(warm=())
    yield c
    c.terminate()


def test_frames_arrive_in_order_and_the_child_waits_for_each(child):
    seen = []

    def on_frame(value):
        # the child is blocked in post() until this returns: nothing newer is queued yet
        assert not child._conn.poll(0.05)
        seen.append(value)

    assert child.run(ct.frames, 4, on_frame=on_frame) == "done"
    assert seen == [0, 1, 2, 3]
    assert child.run(ct.pid) == child.process.pid != os.getpid()   # the same child, reused


def test_errors_come_back_as_one_exception_with_the_message(child):
    with pytest.raises(ValueError, match="^the labels hold no vessel$"):
        child.run(ct.fail, "the labels hold no vessel")
    with pytest.raises(ChildError, match="Unpicklable: one and two"):
        child.run(ct.fail_oddly)
    assert child.alive()                                  # an exception does not end the child


def test_cancel_ends_the_child_at_once_wherever_it_is():
    c = Child(warm=())
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert c.run(ct.sleep_then, 600, "never", should_stop=stop.is_set) is None
    assert not c.alive() and c.process.returncode is not None
    # a frame refused (the panel's gate was cancelled) ends it too
    c = Child(warm=())
    assert c.run(ct.frames, 10, on_frame=lambda v: v < 2 and None) is None  # False at the 3rd
    assert not c.alive()


def test_a_child_that_dies_says_so():
    c = Child(warm=())
    with pytest.raises(ChildError, match="ended unexpectedly .exit code 3"):
        c.run(ct.die)


def test_run_in_child_reuses_one_child_and_replaces_a_terminated_one(monkeypatch):
    monkeypatch.setattr(process, "WARM", ())  # no torch to import first
    monkeypatch.setattr(process, "_users", [None])  # no panel (a script): a child is kept
    process.shutdown()
    first = run_in_child(ct.pid, threads=1)
    assert run_in_child(ct.pid) == first
    assert run_in_child(ct.sleep_then, 600, 0, should_stop=lambda: True) is None
    process.shutdown()
    assert run_in_child(ct.pid) not in (first, os.getpid())
    process.shutdown()


def test_switched_off_it_runs_in_this_thread(monkeypatch):
    monkeypatch.setenv("TUBEDIFF_WORKER_PROCESS", "0")
    got = []
    assert run_in_child(ct.pid) == os.getpid()
    assert run_in_child(ct.frames, 2, on_frame=got.append) == "done" and got == [0, 1]
    assert run_in_child(ct.pid, should_stop=lambda: True) is None


def test_models_travel_as_specs_and_come_back_equal():
    torch = pytest.importorskip("torch")
    from napari_tubediff.models import session

    unet, refiner = session.active_unet(), session.active_refiner(2)
    for model, module in ((unet, "net"), (refiner, "module")):
        back = tasks.unpack(tasks.pack(model))
        assert type(back) is type(model) and back.meta == model.meta
        a, b = getattr(model, module).state_dict(), getattr(back, module).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    p0, f0 = unet.predict_with_features(x)
    p1, f1 = tasks.unpack(tasks.pack(unet)).predict_with_features(x)
    assert np.array_equal(p0, p1) and np.array_equal(f0, f1)
    assert tasks.pack(None) is None and tasks.unpack(None) is None


def test_specs_come_back_through_the_classes_own_constructors():
    # unpack made the models with cls.__new__ and set their attributes by hand: a bad spec
    # gave a half-built model; each class now has from_state, which checks as __init__ does
    from napari_tubediff.models.backbones import UNet3DBackbone, UNetBackbone
    from napari_tubediff.models.refiner import LearnedRefiner

    unet3d = UNet3DBackbone(device="cpu")
    spec = tasks.pack(unet3d)
    back = tasks.unpack(dict(spec, polarity="bright"))
    assert type(back) is UNet3DBackbone and back.polarity == "bright" and back.ndim == 3
    assert str(back.weights) == str(unet3d.weights) and back.device.type == "cpu"
    with pytest.raises(ValueError, match="polarity"):
        tasks.unpack(dict(spec, polarity="sideways"))
    with pytest.raises(ValueError, match="do not fit the model"):  # the state of another network
        UNetBackbone.from_state(spec["config"], tasks.pack(UNetBackbone(device="cpu"))["state"])
    with pytest.raises(ValueError, match="not a U-Net backbone"):
        tasks.unpack(dict(spec, kind="TorchScriptBackbone"))
    r = LearnedRefiner.shipped(2, device="cpu")
    back = tasks.unpack(tasks.pack(r))
    assert type(back) is LearnedRefiner and back.config == r.config and back.meta == r.meta


@pytest.mark.slow  # a worker process with torch: 10 to 50 s on the loaded 2-core machine
def test_the_panels_tasks_give_the_same_results_in_the_child_as_here():
    """Diffusion (the panel's run, frame by frame) and fine-tuning (losses, weights, scores)
    in the worker process equal the same calls in this process."""
    torch = pytest.importorskip("torch")
    from napari_tubediff.core.refine import RefineSettings
    from napari_tubediff.data.fundus import synthetic_fundus
    from napari_tubediff.data.synthetic import synthetic_vessels
    from napari_tubediff.models import session
    from napari_tubediff.training.finetune import FinetuneConfig

    # a child of its own, computing with this process's thread count: the GUI suite's child
    # (started with `worker_threads`) gave losses 3e-8 apart after the Bridged gaps test
    process.shutdown()
    threads = torch.get_num_threads()
    u = synthetic_vessels((48, 48), seed=3).probability.astype(np.float32)
    settings = RefineSettings(steps=6)
    here = list(tasks.diffusion_frames(u, None, settings, every=2))
    there = []
    assert run_in_child(tasks.diffusion, u, None, settings, every=2, on_frame=there.append,
                        threads=threads) is None
    assert [f[0] for f in there] == [f[0] for f in here] == [0, 2, 4, 6]  # directions, then steps
    for a, b in zip(here, there, strict=True):
        for x, y in zip(a[1:], b[1:], strict=True):
            assert (x is None and y is None) or np.array_equal(x, y)

    # a 64-px crop inside the photograph, no FOV: the working scale from the vessel width (2.6)
    # and not from the FOV (the whole 64-px photograph at 13x): 0.3 s of CPU a run, not 2.8 s
    f = synthetic_fundus((96, 96), seed=3, n_breaks=6)
    image, truth = f.image[16:80, 16:80], f.truth[16:80, 16:80]
    cfg = FinetuneConfig(updates=2, crop=32, batch=2)
    models = {"refiner": tasks.pack(session.active_refiner(2)), "backbone": tasks.pack(session.active_unet())}
    losses_here, losses_there = [], []
    a = tasks.finetune(image, truth, None, None, cfg=cfg, post=losses_here.append, **models)
    b = run_in_child(tasks.finetune, image, truth, None, None, cfg=cfg, on_frame=losses_there.append,
                     threads=threads, **models)
    assert a.record["scales"] == b.record["scales"] == [pytest.approx(2.55, abs=0.01)]
    assert losses_here == losses_there and len(losses_here) == 2
    assert a.before == b.before and a.after == b.after
    ra, rb = a.refiner["state"], b.refiner["state"]
    assert all(torch.equal(ra[k], rb[k]) for k in ra)
    process.shutdown()


def test_a_task_the_child_cannot_import_is_an_error_not_a_crash(child):
    import types

    fake = types.ModuleType("tubediff_nowhere")
    exec("def f():\n    return 1\n", fake.__dict__)
    fake.f.__module__ = "tubediff_nowhere"
    import sys

    sys.modules["tubediff_nowhere"] = fake   # picklable here, not importable there
    try:
        with pytest.raises(ChildError, match="could not take the task"):
            child.run(fake.f)
    finally:
        del sys.modules["tubediff_nowhere"]
    assert child.run(ct.pid) == child.process.pid                    # and it takes the next one


def test_a_failing_frame_handler_ends_the_child_mid_task():
    c = Child(warm=())
    with pytest.raises(KeyError):
        c.run(ct.frames, 3, on_frame=lambda v: {}[v])
    assert not c.alive()                     # it waited for a reply: it cannot take another task
