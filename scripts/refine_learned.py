"""The learned refiner at more steps (issue 13): the memory of one training update, and the
training-split comparison of docs/results/refine/learned_rule.txt.

    # peak memory of one refiner update (batch 4, 256 x 256 crops, the shipped U-Net's features),
    # each configuration in a fresh process
    python scripts/refine_learned.py memory --steps 10,50,200

    # raw, DTI, the default refinement, the shipped refiner and a candidate refiner, on the
    # training splits (stored maps of the shipped U-Net under --pred-root: pred_{drive,stare,hrf}_training)
    python scripts/refine_learned.py score --data /work/shared/data --pred-root /tmp/keep \
        --candidate /tmp/ckpt/refiner_n50_cldice.pt --hrf-only 01,02,03 --json learned.json

The memory is counted two ways: the bytes of the distinct storages the autograd graph saves
(`torch.autograd.graph.saved_tensors_hooks`: the graph itself), and the process's peak resident
set (``ru_maxrss``) minus its value before the update (the graph plus the backward pass's
temporaries). The learned rows run as ``tubediff refine --input image --refiner W`` does: the
head on the U-Net's features at its working scale, the diffusion there, the result back at the
photograph's size (`models.refiner.LearnedRefiner.refine`), each at the steps it was trained with.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:  # run as a script (scripts/ on the path) or imported from the repository root
    from refine_predict import training_items
    from refine_rscale import reference_field
except ImportError:  # pragma: no cover
    from scripts.refine_predict import training_items
    from scripts.refine_rscale import reference_field

SETS = ("drive", "stare", "hrf")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def one_update(steps: int, checkpoint: bool, batch: int = 4, crop: int = 256, loss: str = "cldice") -> dict:
    """One training update of a fresh refiner on the shipped U-Net's features of random crops."""
    from napari_tubediff.models.refiner import Refiner
    from napari_tubediff.training.losses import mixed_loss
    from napari_tubediff.training.refiner import load_unet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = load_unet()
    refiner = Refiner(unet.feature_channels, 9, steps=steps)
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, crop, crop)
    with torch.no_grad():  # the backbone is frozen: no graph, as in train_refiner
        logits, feats = unet(x)
        prob = torch.sigmoid(logits)
    target = (torch.rand_like(prob) < 0.15).float()
    fov = torch.ones_like(prob)
    before = _rss_mb()
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = refiner(prob, feats, checkpoint=checkpoint)
        value = mixed_loss(out, target, fov, kind=loss)
    t1 = time.perf_counter()
    opt.zero_grad()
    value.backward()
    opt.step()
    t2 = time.perf_counter()
    return {"steps": steps, "checkpoint": checkpoint, "batch": batch, "crop": crop,
            "graph_mb": sum(seen.values()) / 2 ** 20, "rss_before_mb": before,
            "peak_rss_mb": _rss_mb(), "peak_extra_mb": _rss_mb() - before,
            "forward_s": t1 - t0, "backward_s": t2 - t1}


def memory(args) -> None:
    rows = []
    for n in (int(s) for s in args.steps.split(",")):
        for ck in (False, True):
            if not ck and n > args.max_plain:
                continue
            cmd = [sys.executable, __file__, "_one", "--n", str(n), "--ck", str(int(ck)),
                   "--batch", str(args.batch), "--crop", str(args.crop)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"N={n:4d} checkpoint={str(ck):5s} graph {r['graph_mb']:8.1f} MB  "
                  f"peak RSS +{r['peak_extra_mb']:8.1f} MB  forward {r['forward_s']:6.1f} s  "
                  f"backward {r['backward_s']:6.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def score(args) -> None:
    from napari_tubediff.core.metrics import evaluate
    from napari_tubediff.evaluation import read_prediction
    from napari_tubediff.models import get_backbone
    from napari_tubediff.models.backbones import segment_image
    from napari_tubediff.models.refiner import LearnedRefiner

    torch.set_num_threads(1)
    bb = get_backbone("unet", device="cpu")
    shipped = LearnedRefiner.shipped(2, device="cpu")
    learned = {"shipped": (shipped, 10)}
    for n in (int(x) for x in args.shipped_steps.split(",")) if args.shipped_steps else ():
        learned[f"shipped@{n}"] = (shipped, n)  # a diagnosis: the shipped head run longer than trained
    if args.candidate:
        learned["candidate"] = (LearnedRefiner(args.candidate, device="cpu"), None)  # its trained steps
    names = ["raw", "dti", "default", *learned]
    out = {}
    for s in args.sets.split(","):
        items = training_items(args.data, s)
        if s == "hrf" and args.hrf_only:
            keep = tuple(f"{i}_" for i in args.hrf_only.split(","))
            items = [it for it in items if it.name.startswith(keep)]
        per = {m: [] for m in names}
        prob_diff = []
        for it in items:
            fov, truth = it.fov(), it.truth()
            prob = read_prediction(Path(args.pred_root) / f"pred_{s}_training", it)
            # the features, from the same call as the stored map (scripts/refine_predict.py); kept
            # in --feat-cache (float32, as computed) so a later run with the candidate reuses them
            cached = Path(args.feat_cache) / f"{s}_{it.name}.npz" if args.feat_cache else None
            if cached is not None and cached.exists():
                with np.load(cached) as z:
                    feats, diff = z["features"], float(z["prob_difference"])
            else:
                seg = segment_image(bb, it.image(), fov=fov)
                feats, diff = seg.features, float(np.abs(seg.prob - prob).max())
                if cached is not None:
                    np.savez(cached, features=feats, prob_difference=diff)
            prob_diff.append(diff)
            for m in names:
                t0 = time.perf_counter()
                field = reference_field(m, prob, fov)
                if field is None:
                    r, steps = learned[m]
                    field = r.refine(prob, feats, steps=steps, fov=fov)
                sec = time.perf_counter() - t0
                field = np.where(fov, field, 0) if field.dtype != bool else field & fov
                res = evaluate(field >= 0.5, truth, fov)
                res["seconds"] = sec
                per[m].append(res)
            print(s, it.name, " ".join(f"{m}:{per[m][-1]['dice']:.3f}/{per[m][-1]['cldice']:.3f}/"
                                       f"{per[m][-1]['vca']:.1f}" for m in names), flush=True)
        mean = {m: {k: float(np.mean([r[k] for r in per[m]])) for k in ("dice", "cldice", "vca", "seconds")}
                for m in names}
        out[s] = {"images": [it.name for it in items], "mean": mean, "per_image": per,
                  "max_prob_difference": max(prob_diff)}
    lines = [f"{'set':6s} {'row':11s} {'Dice':>7s} {'clDice':>7s} {'VCA':>6s} {'s/img':>6s}  checks"]
    checks = {m: 0 for m in names}
    for s, o in out.items():
        mean = o["mean"]
        for m in names:
            ok = [mean[m]["vca"] <= mean["dti"]["vca"], mean[m]["cldice"] >= mean["dti"]["cldice"],
                  mean[m]["dice"] >= mean["raw"]["dice"] - 0.005]
            checks[m] += sum(ok)
            lines.append(f"{s:6s} {m:11s} {mean[m]['dice']:7.4f} {mean[m]['cldice']:7.4f} "
                         f"{mean[m]['vca']:6.2f} {mean[m]['seconds']:6.2f}  "
                         + "".join("+" if x else "-" for x in ok))
        lines.append(f"{s:6s} ({len(o['images'])} images; stored map vs segment_image: max |diff| "
                     f"{o['max_prob_difference']:.2g})")
    lines.append("checks met (VCA <= DTI's, clDice >= DTI's, Dice >= raw's - 0.005), of "
                 f"{3 * len(out)}: " + ", ".join(f"{m} {c}" for m, c in checks.items()))
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"sets": out, "table": lines, "checks": checks}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--steps", default="10,50,200")
    m.add_argument("--max-plain", type=int, default=200, help="the most steps run without checkpointing")
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--crop", type=int, default=256)
    m.add_argument("--json")
    o = sub.add_parser("_one")
    o.add_argument("--n", type=int)
    o.add_argument("--ck", type=int)
    o.add_argument("--batch", type=int, default=4)
    o.add_argument("--crop", type=int, default=256)
    sc = sub.add_parser("score")
    sc.add_argument("--data", required=True, help="the folder holding DRIVE/, STARE/ and HRF/")
    sc.add_argument("--pred-root", required=True, help="holds pred_{drive,stare,hrf}_training")
    sc.add_argument("--candidate", help="a refiner checkpoint to compare")
    sc.add_argument("--sets", default=",".join(SETS))
    sc.add_argument("--shipped-steps", help="extra rows: the shipped refiner at these steps, e.g. 50")
    sc.add_argument("--hrf-only", help="HRF image numbers to keep, e.g. 01,02,03")
    sc.add_argument("--feat-cache", help="a folder keeping the U-Net's features per image between runs")
    sc.add_argument("--json")
    args = ap.parse_args()
    if args.cmd == "_one":
        print(json.dumps(one_update(args.n, bool(args.ck), args.batch, args.crop)))
    elif args.cmd == "memory":
        memory(args)
    else:
        score(args)


if __name__ == "__main__":
    main()
