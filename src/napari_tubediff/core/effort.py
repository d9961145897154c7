"""Annotation effort: how many trace and remove clicks a mask needs to reach a goal.

`simulate_annotator` plays a scripted annotator who sees the ground truth (e.g. DRIVE's
1st observer) and corrects a start mask with the two hand tools of `core.trace` only:
`trace_path` between two points (the path through the probability field, painted with
the field's width, as the napari tool does) and `remove_piece` (a whole connected piece,
as a click in component mode does). No brush. It counts the actions until the mask
meets the goal (VCA <= 3 and clDice >= 0.85 by default, with `core.metrics`) or a cap.
The count is a measure of how much hand work a method leaves to the annotator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .metrics import cldice, skeleton, to_mask, vca
from .trace import remove_piece, trace_path

__all__ = ["Action", "EffortResult", "simulate_annotator"]

_KIND_ORDER = {"join": 0, "remove": 1, "extend": 2}


@dataclass
class Action:
    """One simulated click pair (trace) or click (remove).

    Attributes
    ----------
    kind : str
        ``"join"`` (trace joining two predicted pieces), ``"extend"`` (trace along a missing
        vessel end) or ``"remove"`` (a false piece taken out).
    points : tuple
        The clicked point(s): (start, end) for a trace, (point,) for a remove.
    value : int
        The truth-skeleton pixels the action was chosen for (the gap's length, or the
        false piece's skeleton length).
    vca, cldice : float
        The metrics after the action.
    """

    kind: str
    points: tuple
    value: int
    vca: float
    cldice: float


@dataclass
class EffortResult:
    """What `simulate_annotator` returns.

    Attributes
    ----------
    actions : int
        The number of actions taken.
    reached : bool
        Whether the goal was met (after ``actions`` actions).
    stopped : str
        ``"goal"``, ``"cap"`` (``max_actions`` taken without reaching the goal) or
        ``"stuck"`` (no action of the rules could help the unmet goal).
    start_vca, start_cldice, vca, cldice : float
        The metrics before the first and after the last action.
    mask : bool array
        The corrected mask.
    history : list of Action
    """

    actions: int
    reached: bool
    stopped: str
    start_vca: float
    start_cldice: float
    vca: float
    cldice: float
    mask: np.ndarray
    history: list = field(default_factory=list)


def _neighbour_pairs(gap_lab: np.ndarray, pred_lab: np.ndarray):
    """(gap label, predicted label, flat index of the gap pixel) for every gap pixel with an
    8-neighbour in a predicted piece."""
    ndim = gap_lab.ndim
    pg = np.pad(pred_lab, 1)
    idx = np.flatnonzero(gap_lab)
    coords = np.unravel_index(idx, gap_lab.shape)
    g_all, p_all, i_all = [], [], []
    for off in np.ndindex(*(3,) * ndim):
        if all(o == 1 for o in off):
            continue
        nb = pg[tuple(c + o for c, o in zip(coords, off, strict=True))]
        hit = nb > 0
        g_all.append(gap_lab.flat[idx[hit]])
        p_all.append(nb[hit])
        i_all.append(idx[hit])
    g = np.concatenate(g_all)
    p = np.concatenate(p_all)
    i = np.concatenate(i_all)
    # one row per (gap, piece): the first gap pixel in raster order touching that piece
    order = np.lexsort((i, p, g))
    g, p, i = g[order], p[order], i[order]
    first = np.ones(len(g), bool)
    first[1:] = (g[1:] != g[:-1]) | (p[1:] != p[:-1])
    return g[first], p[first], i[first]


def _click_along(gap_lab: np.ndarray, lab: int, start: np.ndarray, target, step: float) -> np.ndarray:
    """The trace's end click: ``target`` (or, without one, the gap pixel farthest from ``start``
    along the gap), or, when that lies more than ``step`` pixels along the gap, the gap
    pixel on the way that lies ``step`` along."""
    from skimage.graph import MCP_Geometric

    box = ndi.find_objects(gap_lab, max_label=lab)[lab - 1]
    off = np.array([sl.start for sl in box])
    inside = gap_lab[box] == lab
    mcp = MCP_Geometric(np.where(inside, 1.0, np.inf), fully_connected=True)
    dist, _ = mcp.find_costs([tuple(start - off)])
    if target is None:
        reach = np.where(inside & np.isfinite(dist), dist, -1.0)
        target = np.asarray(np.unravel_index(np.argmax(reach), reach.shape)) + off
    if dist[tuple(target - off)] <= step:
        return np.asarray(target)
    way = np.asarray(mcp.traceback(tuple(target - off)))
    along = dist[tuple(way.T)]
    return way[np.flatnonzero(along <= step)[-1]] + off


def simulate_annotator(start_mask, truth, prob, fov=None, *, vca_goal: float = 3.0,
                       cldice_goal: float = 0.85, max_actions: int = 200, false_overlap: float = 0.5,
                       trace_step: float = 25.0, trace_kwargs: dict | None = None) -> EffortResult:
    """Correct ``start_mask`` towards ``truth`` with trace and remove actions only; count them.

    Each round scores the mask (``vca(mask, truth)`` on the whole image, as the
    reference does; ``cldice(mask, truth, fov)``); if both goals hold it stops. Otherwise
    it lists the candidate actions, from the truth's skeleton ``S`` (of ``truth & fov``)
    and the mask's 8-connected (26 in 3D) pieces:

    * **join**: a *gap* is a connected piece of ``S & ~mask`` (a stretch of truth centre
      line the mask misses). A gap with 8-neighbours in two or more predicted pieces is a
      missing connection. For each piece it touches, its *anchor* is the gap's first pixel
      (raster order) next to that piece; of those anchors the two farthest apart
      (Euclidean; ties: the lower piece labels) are the trace's start and end.
      Value: the gap's pixel count.
      An end further than ``trace_step`` pixels along the gap is replaced by the gap pixel
      on the way that far along (the annotator clicks a point on the way, as the trace
      tool's help advises: across a long faint stretch the cheapest path would follow any
      nearby confident vessel instead); the next round continues from there.
    * **remove**: a *false piece* is a predicted piece of which fewer than
      ``false_overlap`` of the pixels lie in ``truth``. The click is its first pixel
      (raster order); `remove_piece` in component mode takes the piece out.
      Value: the piece's skeleton pixels (at least 1).
    * **extend**: a gap next to exactly one predicted piece (a missed vessel end, or a
      missed stretch of a loop): trace from its anchor to the gap pixel farthest from it
      along the gap (or ``trace_step`` along, as for join). Value: the gap's pixel count.

    Actions that help every unmet goal come first: with VCA unmet the candidates are join
    and remove (each takes one piece away, and either raises clDice's sensitivity or its
    precision); extend only when VCA is met (or no join or remove is left) and clDice is
    still short. Gaps touching no
    predicted piece (whole missed truth pieces) are never traced: that would add a
    piece. Of the candidates the one of largest value is taken (ties: join, remove,
    extend, then the lower label). A trace paints ``trace_path(prob, start, end).mask``
    into the mask (through the probability field, the width taken from it, as the napari
    tool does); the path may leave the truth where the field leads elsewhere. Every
    action changes the mask (a trace paints its two end points, which were not in it),
    so the loop ends: at the goal, at ``max_actions``, or when no candidate is left
    (``stopped="stuck"``). Deterministic.

    Parameters
    ----------
    start_mask : bool array, 2D or 3D
        The mask the annotator starts from (anything `to_mask` reads).
    truth : bool array
        The reference the annotator follows.
    prob : float array
        The field the trace tool runs through (the backbone's probability).
    fov : bool array, optional
        Field of view: clDice and the truth skeleton inside it, as `core.metrics`.
    vca_goal, cldice_goal : float
        The goal: ``vca <= vca_goal`` and ``cldice >= cldice_goal``.
    max_actions : int
        The cap.
    false_overlap : float
        A piece is false when less than this fraction of it lies in the truth.
    trace_step : float
        The longest stretch of truth centre line (pixels along it) one trace covers.
    trace_kwargs : dict, optional
        Passed to `trace_path` (e.g. ``threshold``).

    Returns
    -------
    EffortResult

    Examples
    --------
    >>> truth = np.zeros((9, 30), bool); truth[3:6, 2:28] = True
    >>> pred = truth.copy(); pred[:, 12:16] = False                      # one break
    >>> r = simulate_annotator(pred, truth, truth * 0.9, vca_goal=1.0, cldice_goal=0.95)
    >>> r.actions, r.reached, [a.kind for a in r.history]
    (1, True, ['join'])
    """
    mask = to_mask(start_mask).copy()
    truth = to_mask(truth)
    prob = np.asarray(prob, np.float64)
    if not (mask.shape == truth.shape == prob.shape):
        raise ValueError(f"start mask {mask.shape}, truth {truth.shape} and probability {prob.shape} "
                         "must have one shape")
    if fov is not None:
        fov = to_mask(fov)
        if fov.shape != truth.shape:
            raise ValueError(f"field of view {fov.shape} and truth {truth.shape} differ in shape")
    if max_actions < 0:
        raise ValueError(f"max_actions must be 0 or more, got {max_actions}")
    kw = dict(trace_kwargs or {})
    conn = ndi.generate_binary_structure(mask.ndim, mask.ndim)
    t_in = truth & fov if fov is not None else truth
    skel_t = skeleton(t_in)

    def score(m):
        return vca(m, truth), cldice(m, truth, fov)

    v0, c0 = v, c = score(mask)
    history: list[Action] = []
    stopped = "goal"
    while True:
        vca_ok, cl_ok = v <= vca_goal, c >= cldice_goal
        if vca_ok and cl_ok:
            break
        if len(history) >= max_actions:
            stopped = "cap"
            break
        pred_lab, n_pred = ndi.label(mask, structure=conn)
        gap_lab, n_gap = ndi.label(skel_t & ~mask, structure=conn)
        cands = []  # (value, kind, label, payload)
        if n_gap:
            g, p, i = _neighbour_pairs(gap_lab, pred_lab)
            size = np.bincount(gap_lab.ravel(), minlength=n_gap + 1)
            touched = np.bincount(g, minlength=n_gap + 1)
            starts = np.searchsorted(g, np.arange(n_gap + 2))
            for lab in np.flatnonzero(touched):
                rows = slice(starts[lab], starts[lab + 1])
                kind = "join" if touched[lab] >= 2 else "extend"
                if kind == "extend" and cl_ok:
                    continue
                cands.append((int(size[lab]), kind, int(lab), (p[rows], i[rows])))
        if n_pred:
            n_px = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)
            in_t = np.bincount(pred_lab[truth], minlength=n_pred + 1)
            skel_p = skeleton(mask)
            sk_len = np.bincount(pred_lab[skel_p], minlength=n_pred + 1)
            for lab in range(1, n_pred + 1):
                if in_t[lab] < false_overlap * n_px[lab]:
                    cands.append((max(int(sk_len[lab]), 1), "remove", lab, None))
        if not vca_ok and any(t[1] != "extend" for t in cands):
            cands = [t for t in cands if t[1] != "extend"]  # both goals gain from these
        if not cands:
            stopped = "stuck"
            break
        value, kind, lab, payload = min(cands, key=lambda t: (-t[0], _KIND_ORDER[t[1]], t[2]))
        if kind == "remove":
            point = tuple(int(x) for x in np.unravel_index(np.argmax(pred_lab.ravel() == lab), mask.shape))
            mask &= ~remove_piece(mask.astype(np.uint8), point)
            points = (point,)
        else:
            pieces, flat = payload
            anchors = np.stack(np.unravel_index(flat, mask.shape), axis=1)
            target = None
            if kind == "join":
                d = ((anchors[:, None] - anchors[None]) ** 2).sum(-1)
                a, b = np.unravel_index(np.argmax(d), d.shape)  # first maximum: lower piece labels
                start, target = anchors[a], anchors[b]
            else:
                start = anchors[0]
            end = _click_along(gap_lab, lab, start, target, trace_step)
            traced = trace_path(prob, start, end, **kw)
            mask |= traced.mask
            points = (tuple(int(x) for x in start), tuple(int(x) for x in end))
        v, c = score(mask)
        history.append(Action(kind, points, value, v, c))
    return EffortResult(actions=len(history), reached=stopped == "goal", stopped=stopped, start_vca=v0,
                        start_cldice=c0, vca=v, cldice=c, mask=mask, history=history)
