"""Fused parallel RK4 stencil kernels (numba), the fast path of `diffuse`.

One RK4 stage is one parallel launch over bands of rows (2D) or planes (3D). Each
band walks its rows (planes) in order: it computes the flux ``q = D grad u`` of the
padded stage input a few rows (planes) ahead into a small ring buffer that stays in
cache, then ``k = ReLU(div q)`` for the current row (plane), accumulates ``k`` into
the RK4 sum and writes the next stage's input ``u0 + c dt k`` (or, after the 4th
stage, the clipped new field) into the other padded buffer. The flux never goes to
memory; a band recomputes the ``order/2`` flux rows (planes) beyond each of its ends.
For order 8 each antisymmetric pair of stencil taps is one difference.

Buffers carry a halo of ``order/2`` cells along the last axis, filled by edge
replication; rows and planes beyond the edge are clamped, which is the same edge
padding, so the inner loops run over contiguous rows with no boundary branches.

Threading (measured with ``benchmarks/bench_diffusion.py --load``, see
docs/performance.md): with a torch job running beside it, numba's OpenMP layer
slowed this kernel twenty-fold (its threads spin while waiting), TBB and workqueue
did not; workqueue pays about 80 us per launch where TBB pays 2 us. So unless the
user set ``NUMBA_THREADING_LAYER`` we ask for TBB first, then workqueue, then OpenMP.
The ``tbb`` wheel puts ``libtbb.so.12`` in ``<prefix>/lib``, which the dynamic loader does
not search in a virtual environment (or a ``--user`` install), so numba would silently
fall back to workqueue; `preload_tbb` loads it from the package's own location first
(`threading_layer` says which layer numba really started).
workqueue must not be entered by two threads at once, so every launch holds
``LOCK`` (napari workers and the CLI may call from different threads).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

import numpy as np

try:
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is a declared dependency
    AVAILABLE = False

LOCK = threading.Lock()
#: The libtbb that `preload_tbb` loaded at import (None: none loaded).
TBB_LIBRARY: str | None = None

# Subnormal floats. Probability spreading into a zero background decays geometrically,
# so without care a large part of a field ends up below float32's smallest normal
# number (1.2e-38), where the CPU computes many times slower: on a 128^3 synthetic
# vessel volume 7% of the voxels were subnormal and a step took 177 ms instead of 46.
# Increments below TINY are dropped (probability below 1e-20 means nothing here), and
# tensor entries below TENSOR_TINY are zeroed, so every product stays normal.
TINY = np.float32(1e-20)
TENSOR_TINY = 1e-12

#: Our order of numba threading layers (see the module docstring); NUMBA_THREADING_LAYER wins.
LAYER_PRIORITY = ["tbb", "workqueue", "omp"]
_TBB_NAMES = ("libtbb.so.12", "libtbb.12.dylib")


def _tbb_candidates() -> list[Path]:
    # where pip put the tbb wheel's library (venv, --user or system site), then <prefix>/lib
    found = []
    try:
        from importlib.metadata import PackageNotFoundError, files

        try:
            found = [Path(f.locate()).resolve() for f in files("tbb") or [] if f.name in _TBB_NAMES]
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - python < 3.8
        pass
    for base in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found += [Path(base) / "lib" / n for n in _TBB_NAMES]
    return found


def preload_tbb() -> str | None:
    """Load the ``tbb`` package's ``libtbb`` globally so numba's TBB layer can start.

    Numba's ``tbbpool`` extension links ``libtbb.so.12`` by name; once a library with that
    name is loaded with ``RTLD_GLOBAL`` the loader reuses it. Returns the loaded path, or
    None (no ``tbb`` package, Windows, or a library that will not load: numba then takes
    the next layer of `LAYER_PRIORITY`).

    Examples
    --------
    >>> path = preload_tbb()
    >>> path is None or "tbb" in path
    True
    """
    if sys.platform.startswith("win"):
        return None  # the DLL sits in Library/bin, which is on PATH for a conda or pip install
    for path in _tbb_candidates():
        if path.is_file():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return str(path)
    return None


def _wants_tbb() -> bool:
    layer = os.environ.get("NUMBA_THREADING_LAYER", "").lower()
    return layer in ("", "default", "tbb", "safe", "threadsafe", "forksafe")


def threading_layer() -> str | None:
    """The numba threading layer that the kernels really run on (None without numba).

    Numba only picks a layer when the first parallel kernel runs, so this runs a tiny one
    first if needed.

    Examples
    --------
    >>> threading_layer() in (None, "tbb", "omp", "workqueue")
    True
    """
    if not AVAILABLE:
        return None
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel launch yet
        with LOCK:
            _touch(np.zeros(2, np.float32))
        return numba.threading_layer()


if AVAILABLE:
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = list(LAYER_PRIORITY)
    # before numba starts its pool (the first parallel launch), not at first use
    TBB_LIBRARY = preload_tbb() if _wants_tbb() else None

    @njit(parallel=True, cache=True)
    def _touch(x):
        for i in prange(x.shape[0]):
            x[i] += 1

    _opts = dict(parallel=True, fastmath=True, cache=True, nogil=True)

    _serial = dict(fastmath=True, cache=True, nogil=True)

    @njit(**_serial)
    def _rk4_update(f, x0, ac, o, r, stage, dt, relu):
        # One row of the RK4 bookkeeping: accumulate k, write the next stage input
        # (columns r..r+W of o) or, after the 4th stage, the clipped new field.
        W = f.shape[0]
        half = np.float32(0.5) * dt
        sixth = dt / np.float32(6.0)
        two = np.float32(2.0)
        zero = np.float32(0.0)
        one = np.float32(1.0)
        for j in range(W):
            fj = f[j]
            if relu:
                fj = max(fj, zero)
            if abs(fj) < TINY:
                fj = zero  # no subnormal increments (see TINY)
            if stage == 0:
                ac[j] = fj
                o[j + r] = x0[j] + half * fj
            elif stage == 1:
                ac[j] += two * fj
                o[j + r] = x0[j] + half * fj
            elif stage == 2:
                ac[j] += two * fj
                o[j + r] = x0[j] + dt * fj
            else:
                x = min(max(x0[j] + sixth * (ac[j] + fj), zero), one)
                o[j + r] = x
                x0[j] = x
        for j in range(r):
            o[j] = o[r]
            o[W + r + j] = o[W + r - 1]

    @njit(**_serial)
    def _flux8(m4, m3, m2, m1, p1, p2, p3, p4, b, w, e0, e1, e2, lperp, diff, from_v, o0, o1):
        # Order 8 in one pass: the stencil is antisymmetric (w[-k] = -w[k]), so each
        # pair of taps is one difference; rows m4..p4 are padded rows around b (offset 4).
        # The tensor comes from rows e0, e1, e2 = D00, D01, D11, or, with from_v, is
        # built from the direction rows e0, e1 = v0, v1 and scalar lambdas (one array
        # fewer to stream through memory).
        w1 = w[5]
        w2 = w[6]
        w3 = w[7]
        w4 = w[8]
        for j in range(e0.shape[0]):
            c = j + 4
            a0 = (w1 * (p1[c] - m1[c]) + w2 * (p2[c] - m2[c])
                  + w3 * (p3[c] - m3[c]) + w4 * (p4[c] - m4[c]))
            a1 = (w1 * (b[c + 1] - b[c - 1]) + w2 * (b[c + 2] - b[c - 2])
                  + w3 * (b[c + 3] - b[c - 3]) + w4 * (b[c + 4] - b[c - 4]))
            if from_v:
                # D g = lperp g + (lpar - lperp) (v . g) v
                t = diff * (e0[j] * a0 + e1[j] * a1)
                o0[j] = lperp * a0 + t * e0[j]
                o1[c] = lperp * a1 + t * e1[j]
            else:
                o0[j] = e0[j] * a0 + e1[j] * a1
                o1[c] = e1[j] * a0 + e2[j] * a1

    @njit(inline="always", fastmath=True, cache=True)
    def _div8_at(m4, m3, m2, m1, p1, p2, p3, p4, b, w1, w2, w3, w4, j):
        # order-8 divergence at column j: d/drow of the unpadded flux rows m4..p4 plus
        # d/dcol of the padded row b (offset 4), each tap pair one difference
        c = j + 4
        return (w1 * (p1[j] - m1[j] + b[c + 1] - b[c - 1])
                + w2 * (p2[j] - m2[j] + b[c + 2] - b[c - 2])
                + w3 * (p3[j] - m3[j] + b[c + 3] - b[c - 3])
                + w4 * (p4[j] - m4[j] + b[c + 4] - b[c - 4]))

    @njit(**_serial)
    def _div8_update(m4, m3, m2, m1, p1, p2, p3, p4, b, w, x0, ac, o, stage, dt, relu):
        # `_div8_at` fused with the RK4 bookkeeping of `_rk4_update` (one pass per row)
        w1 = w[5]
        w2 = w[6]
        w3 = w[7]
        w4 = w[8]
        zero = np.float32(0.0)
        one = np.float32(1.0)
        W = x0.shape[0]
        # fastmath assumes no infinities, so "no ReLU" is a finite floor, not -inf
        lo = zero if relu else np.float32(-3.0e38)
        if stage < 3:
            keep = zero if stage == 0 else one
            cacc = one if stage == 0 else np.float32(2.0)
            cout = dt if stage == 2 else np.float32(0.5) * dt
            for j in range(W):
                c = j + 4
                fj = max(_div8_at(m4, m3, m2, m1, p1, p2, p3, p4, b, w1, w2, w3, w4, j), lo)
                if abs(fj) < TINY:
                    fj = zero
                ac[j] = keep * ac[j] + cacc * fj
                o[c] = x0[j] + cout * fj
        else:
            sixth = dt / np.float32(6.0)
            for j in range(W):
                c = j + 4
                fj = max(_div8_at(m4, m3, m2, m1, p1, p2, p3, p4, b, w1, w2, w3, w4, j), lo)
                if abs(fj) < TINY:
                    fj = zero
                x = min(max(x0[j] + sixth * (ac[j] + fj), zero), one)
                o[c] = x
                x0[j] = x
        for j in range(4):
            o[j] = o[4]
            o[W + 4 + j] = o[W + 3]

    @njit(**_serial)
    def _band2d(upi, d00, d01, d11, w, u0, acc, upo, stage, dt, relu, i0, i1, lperp, diff, from_v):
        # Rows i0..i1 of one RK4 stage. The flux q = D grad u is computed row by row
        # into a ring of K rows (q0 needs rows i-r..i+r, q1 only row i), so it never
        # leaves the cache; rows outside the image are clamped (edge padding).
        H, W = u0.shape
        K = w.shape[0]
        r = K // 2
        ring0 = np.empty((K, W), np.float32)
        ring1 = np.empty((K, W + 2 * r), np.float32)
        g0 = np.empty(W, np.float32)
        g1 = np.empty(W, np.float32)
        f = np.empty(W, np.float32)
        nxt = max(i0 - r, 0)  # next flux row to compute
        for i in range(i0, i1):
            last = min(i + r, H - 1)
            while nxt <= last:
                b = upi[nxt]
                s = nxt % K
                o0 = ring0[s]
                o1 = ring1[s]
                if r == 4:
                    _flux8(upi[max(nxt - 4, 0)], upi[max(nxt - 3, 0)], upi[max(nxt - 2, 0)],
                           upi[max(nxt - 1, 0)], upi[min(nxt + 1, H - 1)], upi[min(nxt + 2, H - 1)],
                           upi[min(nxt + 3, H - 1)], upi[min(nxt + 4, H - 1)], b, w,
                           d00[nxt], d01[nxt], d11[nxt], lperp, diff, from_v, o0, o1)
                else:
                    g0[:] = 0
                    g1[:] = 0
                    for k in range(K):
                        if k == r:
                            continue
                        wk = w[k]
                        a = upi[min(max(nxt + k - r, 0), H - 1)]
                        for j in range(W):
                            g0[j] += wk * a[j + r]
                            g1[j] += wk * b[j + k]
                    e00 = d00[nxt]
                    e01 = d01[nxt]
                    e11 = d11[nxt]
                    for j in range(W):
                        o0[j] = e00[j] * g0[j] + e01[j] * g1[j]
                        o1[j + r] = e01[j] * g0[j] + e11[j] * g1[j]
                for j in range(r):
                    o1[j] = o1[r]
                    o1[W + r + j] = o1[W + r - 1]
                nxt += 1
            b = ring1[i % K]
            if r == 4:
                _div8_update(ring0[max(i - 4, 0) % K], ring0[max(i - 3, 0) % K],
                             ring0[max(i - 2, 0) % K], ring0[max(i - 1, 0) % K],
                             ring0[min(i + 1, H - 1) % K], ring0[min(i + 2, H - 1) % K],
                             ring0[min(i + 3, H - 1) % K], ring0[min(i + 4, H - 1) % K], b, w,
                             u0[i], acc[i], upo[i], stage, dt, relu)
            else:
                f[:] = 0
                for k in range(K):
                    if k == r:
                        continue
                    wk = w[k]
                    a = ring0[min(max(i + k - r, 0), H - 1) % K]
                    for j in range(W):
                        f[j] += wk * (a[j] + b[j + k])
                _rk4_update(f, u0[i], acc[i], upo[i], r, stage, dt, relu)

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def _stage2d(upi, d00, d01, d11, w, u0, acc, upo, stage, dt, relu, nb, lperp, diff, from_v):
        H = u0.shape[0]
        for b in prange(nb):
            _band2d(upi, d00, d01, d11, w, u0, acc, upo, stage, dt, relu,
                    b * H // nb, (b + 1) * H // nb, lperp, diff, from_v)

    @njit(**_serial)
    def _flux8_3d(up, nxt, i, P, H, w, e00, e01, e02, e11, e12, e22, o0, o1, o2):
        # Order 8, one row of plane `nxt`: each antisymmetric tap pair is one
        # difference (as `_flux8` in 2D); planes and rows clamped, columns padded.
        w1 = w[5]
        w2 = w[6]
        w3 = w[7]
        w4 = w[8]
        zm4 = up[max(nxt - 4, 0), i]
        zm3 = up[max(nxt - 3, 0), i]
        zm2 = up[max(nxt - 2, 0), i]
        zm1 = up[max(nxt - 1, 0), i]
        zp1 = up[min(nxt + 1, P - 1), i]
        zp2 = up[min(nxt + 2, P - 1), i]
        zp3 = up[min(nxt + 3, P - 1), i]
        zp4 = up[min(nxt + 4, P - 1), i]
        ym4 = up[nxt, max(i - 4, 0)]
        ym3 = up[nxt, max(i - 3, 0)]
        ym2 = up[nxt, max(i - 2, 0)]
        ym1 = up[nxt, max(i - 1, 0)]
        yp1 = up[nxt, min(i + 1, H - 1)]
        yp2 = up[nxt, min(i + 2, H - 1)]
        yp3 = up[nxt, min(i + 3, H - 1)]
        yp4 = up[nxt, min(i + 4, H - 1)]
        b = up[nxt, i]
        for j in range(e00.shape[0]):
            c = j + 4
            a0 = (w1 * (zp1[c] - zm1[c]) + w2 * (zp2[c] - zm2[c])
                  + w3 * (zp3[c] - zm3[c]) + w4 * (zp4[c] - zm4[c]))
            a1 = (w1 * (yp1[c] - ym1[c]) + w2 * (yp2[c] - ym2[c])
                  + w3 * (yp3[c] - ym3[c]) + w4 * (yp4[c] - ym4[c]))
            a2 = (w1 * (b[c + 1] - b[c - 1]) + w2 * (b[c + 2] - b[c - 2])
                  + w3 * (b[c + 3] - b[c - 3]) + w4 * (b[c + 4] - b[c - 4]))
            o0[j] = e00[j] * a0 + e01[j] * a1 + e02[j] * a2
            o1[j] = e01[j] * a0 + e11[j] * a1 + e12[j] * a2
            o2[c] = e02[j] * a0 + e12[j] * a1 + e22[j] * a2

    @njit(**_serial)
    def _div8_3d(ring0, ring1, c, p, s, i, P, H, K, w, f):
        # Order-8 divergence of one row: d/dplane of q0 (ring of planes), d/drow of q1
        # (plane s), d/dcol of the padded q2 row c; tap pairs as differences
        w1 = w[5]
        w2 = w[6]
        w3 = w[7]
        w4 = w[8]
        zm4 = ring0[max(p - 4, 0) % K, i]
        zm3 = ring0[max(p - 3, 0) % K, i]
        zm2 = ring0[max(p - 2, 0) % K, i]
        zm1 = ring0[max(p - 1, 0) % K, i]
        zp1 = ring0[min(p + 1, P - 1) % K, i]
        zp2 = ring0[min(p + 2, P - 1) % K, i]
        zp3 = ring0[min(p + 3, P - 1) % K, i]
        zp4 = ring0[min(p + 4, P - 1) % K, i]
        ym4 = ring1[s, max(i - 4, 0)]
        ym3 = ring1[s, max(i - 3, 0)]
        ym2 = ring1[s, max(i - 2, 0)]
        ym1 = ring1[s, max(i - 1, 0)]
        yp1 = ring1[s, min(i + 1, H - 1)]
        yp2 = ring1[s, min(i + 2, H - 1)]
        yp3 = ring1[s, min(i + 3, H - 1)]
        yp4 = ring1[s, min(i + 4, H - 1)]
        for j in range(f.shape[0]):
            q = j + 4
            f[j] = (w1 * (zp1[j] - zm1[j] + yp1[j] - ym1[j] + c[q + 1] - c[q - 1])
                    + w2 * (zp2[j] - zm2[j] + yp2[j] - ym2[j] + c[q + 2] - c[q - 2])
                    + w3 * (zp3[j] - zm3[j] + yp3[j] - ym3[j] + c[q + 3] - c[q - 3])
                    + w4 * (zp4[j] - zm4[j] + yp4[j] - ym4[j] + c[q + 4] - c[q - 4]))

    @njit(**_serial)
    def _band3d(upi, d00, d01, d02, d11, d12, d22, w, u0, acc, upo, stage, dt, relu, p0, p1):
        # Planes p0..p1 of one RK4 stage, the 3D analogue of `_band2d`: the flux
        # q = D grad u is computed plane by plane into rings of K planes (q0 is
        # differentiated across planes, so it is needed at planes p-r..p+r; q1 and q2
        # only at plane p, but they are computed with q0), so the flux never goes to
        # memory. Planes and rows outside the volume are clamped (edge padding);
        # arrays are padded by r along the last axis only.
        P, H, W = u0.shape
        K = w.shape[0]
        r = K // 2
        ring0 = np.empty((K, H, W), np.float32)
        ring1 = np.empty((K, H, W), np.float32)
        ring2 = np.empty((K, H, W + 2 * r), np.float32)
        g0 = np.empty(W, np.float32)
        g1 = np.empty(W, np.float32)
        g2 = np.empty(W, np.float32)
        f = np.empty(W, np.float32)
        nxt = max(p0 - r, 0)  # next flux plane to compute
        for p in range(p0, p1):
            last = min(p + r, P - 1)
            while nxt <= last:
                s = nxt % K
                for i in range(H):
                    if r == 4:
                        _flux8_3d(upi, nxt, i, P, H, w, d00[nxt, i], d01[nxt, i], d02[nxt, i],
                                  d11[nxt, i], d12[nxt, i], d22[nxt, i], ring0[s, i], ring1[s, i],
                                  ring2[s, i])
                        o2 = ring2[s, i]
                        for j in range(r):
                            o2[j] = o2[r]
                            o2[W + r + j] = o2[W + r - 1]
                        continue
                    g0[:] = 0
                    g1[:] = 0
                    g2[:] = 0
                    c = upi[nxt, i]
                    for k in range(K):
                        if k == r:
                            continue
                        wk = w[k]
                        a = upi[min(max(nxt + k - r, 0), P - 1), i]
                        b = upi[nxt, min(max(i + k - r, 0), H - 1)]
                        for j in range(W):
                            g0[j] += wk * a[j + r]
                            g1[j] += wk * b[j + r]
                            g2[j] += wk * c[j + k]
                    e00 = d00[nxt, i]
                    e01 = d01[nxt, i]
                    e02 = d02[nxt, i]
                    e11 = d11[nxt, i]
                    e12 = d12[nxt, i]
                    e22 = d22[nxt, i]
                    o0 = ring0[s, i]
                    o1 = ring1[s, i]
                    o2 = ring2[s, i]
                    for j in range(W):
                        a0 = g0[j]
                        a1 = g1[j]
                        a2 = g2[j]
                        o0[j] = e00[j] * a0 + e01[j] * a1 + e02[j] * a2
                        o1[j] = e01[j] * a0 + e11[j] * a1 + e12[j] * a2
                        o2[j + r] = e02[j] * a0 + e12[j] * a1 + e22[j] * a2
                    for j in range(r):  # q2 is differentiated along the last axis: its halo
                        o2[j] = o2[r]
                        o2[W + r + j] = o2[W + r - 1]
                nxt += 1
            s = p % K
            for i in range(H):
                c = ring2[s, i]
                if r == 4:
                    _div8_3d(ring0, ring1, c, p, s, i, P, H, K, w, f)
                    _rk4_update(f, u0[p, i], acc[p, i], upo[p, i], r, stage, dt, relu)
                    continue
                f[:] = 0
                for k in range(K):
                    if k == r:
                        continue
                    wk = w[k]
                    a = ring0[min(max(p + k - r, 0), P - 1) % K, i]
                    b = ring1[s, min(max(i + k - r, 0), H - 1)]
                    for j in range(W):
                        f[j] += wk * (a[j] + b[j] + c[j + k])
                _rk4_update(f, u0[p, i], acc[p, i], upo[p, i], r, stage, dt, relu)

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def _stage3d(upi, d00, d01, d02, d11, d12, d22, w, u0, acc, upo, stage, dt, relu, nb):
        P = u0.shape[0]
        for b in prange(nb):
            _band3d(upi, d00, d01, d02, d11, d12, d22, w, u0, acc, upo, stage, dt, relu,
                    b * P // nb, (b + 1) * P // nb)

    @njit(inline="always", **_serial)
    def _compact_at(x, d00, d01, d11, i, im, ip, j, jm, jp):
        c = x[i, j]
        a = d00[i, j]
        e = d11[i, j]
        s = (d00[ip, j] + a) * (x[ip, j] - c) - (a + d00[im, j]) * (c - x[im, j])
        s += (d11[i, jp] + e) * (x[i, jp] - c) - (e + d11[i, jm]) * (c - x[i, jm])
        m = d01[ip, j] * (x[ip, jp] - x[ip, jm]) - d01[im, j] * (x[im, jp] - x[im, jm])
        m += d01[i, jp] * (x[ip, jp] - x[im, jp]) - d01[i, jm] * (x[ip, jm] - x[im, jm])
        return np.float32(0.5) * s + np.float32(0.25) * m

    @njit(**_opts)
    def _compact_stage2d(x, d00, d01, d11, u0, acc, out, stage, dt, relu):
        # One RK4 stage of the compact stencil (diffusion.STENCILS) on an unpadded field: the
        # diagonal terms by half-point fluxes (D there the mean of its two neighbours), the mixed
        # ones by central differences; edge padding is index clamping (a zero flux at the edge).
        # The first and last columns clamp; the others run without branches (vectorised).
        H, W = x.shape
        for i in prange(H):
            im = max(i - 1, 0)
            ip = min(i + 1, H - 1)
            f = np.empty(W, np.float32)
            f[0] = _compact_at(x, d00, d01, d11, i, im, ip, 0, 0, min(1, W - 1))
            for j in range(1, W - 1):
                f[j] = _compact_at(x, d00, d01, d11, i, im, ip, j, j - 1, j + 1)
            if W > 1:
                f[W - 1] = _compact_at(x, d00, d01, d11, i, im, ip, W - 1, W - 2, W - 1)
            _rk4_update(f, u0[i], acc[i], out[i], 0, stage, dt, relu)


    @njit(inline="always", **_serial)
    def _compact_at3(x, d00, d01, d02, d11, d12, d22, p, pm, pp, i, im, ip, j, jm, jp):
        c = x[p, i, j]
        a = d00[p, i, j]
        b = d11[p, i, j]
        e = d22[p, i, j]
        s = (d00[pp, i, j] + a) * (x[pp, i, j] - c) - (a + d00[pm, i, j]) * (c - x[pm, i, j])
        s += (d11[p, ip, j] + b) * (x[p, ip, j] - c) - (b + d11[p, im, j]) * (c - x[p, im, j])
        s += (d22[p, i, jp] + e) * (x[p, i, jp] - c) - (e + d22[p, i, jm]) * (c - x[p, i, jm])
        # d_a(D_ab d_b u) + d_b(D_ab d_a u) for the pairs (0, 1), (0, 2), (1, 2), central differences
        m = d01[pp, i, j] * (x[pp, ip, j] - x[pp, im, j]) - d01[pm, i, j] * (x[pm, ip, j] - x[pm, im, j])
        m += d01[p, ip, j] * (x[pp, ip, j] - x[pm, ip, j]) - d01[p, im, j] * (x[pp, im, j] - x[pm, im, j])
        m += d02[pp, i, j] * (x[pp, i, jp] - x[pp, i, jm]) - d02[pm, i, j] * (x[pm, i, jp] - x[pm, i, jm])
        m += d02[p, i, jp] * (x[pp, i, jp] - x[pm, i, jp]) - d02[p, i, jm] * (x[pp, i, jm] - x[pm, i, jm])
        m += d12[p, ip, j] * (x[p, ip, jp] - x[p, ip, jm]) - d12[p, im, j] * (x[p, im, jp] - x[p, im, jm])
        m += d12[p, i, jp] * (x[p, ip, jp] - x[p, im, jp]) - d12[p, i, jm] * (x[p, ip, jm] - x[p, im, jm])
        return np.float32(0.5) * s + np.float32(0.25) * m

    @njit(**_opts)
    def _compact_stage3d(x, d00, d01, d02, d11, d12, d22, u0, acc, out, stage, dt, relu):
        # _compact_stage2d over planes: rows and planes clamp, the inner columns run branch-free
        P, H, W = x.shape
        for p in prange(P):
            pm = max(p - 1, 0)
            pp = min(p + 1, P - 1)
            f = np.empty(W, np.float32)
            for i in range(H):
                im = max(i - 1, 0)
                ip = min(i + 1, H - 1)
                f[0] = _compact_at3(x, d00, d01, d02, d11, d12, d22, p, pm, pp, i, im, ip,
                                    0, 0, min(1, W - 1))
                for j in range(1, W - 1):
                    f[j] = _compact_at3(x, d00, d01, d02, d11, d12, d22, p, pm, pp, i, im, ip,
                                        j, j - 1, j + 1)
                if W > 1:
                    f[W - 1] = _compact_at3(x, d00, d01, d02, d11, d12, d22, p, pm, pp, i, im, ip,
                                            W - 1, W - 2, W - 1)
                _rk4_update(f, u0[p, i], acc[p, i], out[p, i], 0, stage, dt, relu)


class KernelStepper:
    """Holds the buffers for repeated RK4 steps of one field.

    ``u`` (float32, 2D or 3D), the directions ``v`` (ndim, *spatial) and the
    lambdas (scalars or arrays) are copied in; `advance` runs whole clipped RK4
    steps; `field` returns a copy of the result.
    """

    def __init__(self, u: np.ndarray, v: np.ndarray, lambda_par, lambda_perp, order: int,
                 relu: bool = True, spacing=None):
        from .diffusion import _tensor, index_tensor
        from .stencils import fd_weights

        self.ndim = u.ndim
        r = order // 2
        self.w = np.ascontiguousarray(fd_weights(order), dtype=np.float32)
        self.relu = bool(relu)
        self.u0 = np.ascontiguousarray(u, dtype=np.float32).copy()
        self.acc = np.zeros_like(self.u0)  # stage 0 computes 0 * acc: must be finite
        pad = [(0, 0)] * (self.ndim - 1) + [(r, r)]  # only the last axis is padded
        self.up = np.pad(self.u0, pad, mode="edge")
        scalar = np.ndim(lambda_par) == 0 and np.ndim(lambda_perp) == 0
        # 2D order 8 with scalar lambdas builds D from v inside the kernel; with a voxel
        # spacing the kernel runs the unit-grid operator on the index-space tensor
        # (diffusion.index_tensor), which is not of that form
        self.from_v = self.ndim == 2 and r == 4 and scalar and spacing is None
        self.lperp = np.float32(lambda_perp if scalar else 0.0)
        self.diff = np.float32(lambda_par - lambda_perp if scalar else 0.0)
        def clean(a, tiny):
            a = np.array(a, dtype=np.float32, order="C")
            a[np.abs(a) < tiny] = 0  # no subnormal products (see TINY)
            return a

        if self.from_v:
            # D's entries are products of two components: 1e-6 each keeps them above 1e-12
            self.d = [clean(v[0], np.sqrt(TENSOR_TINY)), clean(v[1], np.sqrt(TENSOR_TINY))]
            self.d.append(self.d[1])  # unused third slot keeps one kernel signature
        else:
            D = index_tensor(_tensor(v, lambda_par, lambda_perp), spacing)
            idx = [(i, j) for i in range(self.ndim) for j in range(i, self.ndim)]
            self.d = [clean(D[i, j], TENSOR_TINY) for i, j in idx]
        # Bands of rows (2D) or planes (3D), two per thread: fewer bands recompute fewer
        # halo rows/planes, more balance the load when another process holds a core
        # (measured: docs/performance.md)
        self.nb = max(1, min(u.shape[0] // (4 * r), 2 * numba.get_num_threads()))
        self.up2 = self.up.copy()  # stages read one buffer and write the other

    def advance(self, n: int, dt: float) -> None:
        dt = np.float32(dt)
        with LOCK:
            for _ in range(n):
                for stage in range(4):
                    if self.ndim == 2:
                        _stage2d(self.up, *self.d, self.w, self.u0, self.acc, self.up2,
                                 stage, dt, self.relu, self.nb, self.lperp, self.diff, self.from_v)
                        self.up, self.up2 = self.up2, self.up
                    else:
                        _stage3d(self.up, *self.d, self.w, self.u0, self.acc, self.up2,
                                 stage, dt, self.relu, self.nb)
                        self.up, self.up2 = self.up2, self.up

    def field(self) -> np.ndarray:
        return self.u0.copy()


class CompactStepper:
    """`KernelStepper` for the compact stencil (``stencil="compact"``), 2D and 3D.

    One parallel launch per RK4 stage over rows (2D) or planes (3D); the stage input and
    output are two unpadded buffers used in turn. Tensor entries below `TENSOR_TINY` are zeroed, as in
    `KernelStepper`.
    """

    def __init__(self, u: np.ndarray, v: np.ndarray, lambda_par, lambda_perp, relu: bool = True,
                 spacing=None):
        from .diffusion import _tensor, index_tensor

        self.relu = bool(relu)
        self.u0 = np.ascontiguousarray(u, dtype=np.float32).copy()
        self.acc = np.zeros_like(self.u0)
        D = index_tensor(_tensor(v, lambda_par, lambda_perp), spacing)
        self.d = []
        for i, j in [(r, c) for r in range(u.ndim) for c in range(r, u.ndim)]:  # (0, 0), (0, 1), ...
            a = np.array(D[i, j], dtype=np.float32, order="C")
            a[np.abs(a) < TENSOR_TINY] = 0  # no subnormal products (see TINY)
            self.d.append(a)
        self.x = self.u0.copy()
        self.y = np.empty_like(self.u0)

    def advance(self, n: int, dt: float) -> None:
        dt = np.float32(dt)
        with LOCK:
            for _ in range(n):
                for stage in range(4):
                    stage_fn = _compact_stage2d if self.u0.ndim == 2 else _compact_stage3d
                    stage_fn(self.x, *self.d, self.u0, self.acc, self.y, stage, dt, self.relu)
                    self.x, self.y = self.y, self.x

    def field(self) -> np.ndarray:
        return self.u0.copy()
