"""SExtractor's multi-threshold deblending.

For each detected object, ``nthresh - 1`` thresholds spaced exponentially
between its detection threshold and its (filtered) peak cut it into a tree
of 8-connected components (at least ``min(min_area, 3)`` pixels each). Going
down the tree, a node whose branches include more than one with
``flux - level * npix > mincont * total flux`` is split: its branches that
did not split further become *seeds*. The object's remaining pixels are then
shared among its seeds, each pixel drawn with probability proportional to
the seeds' Gaussian-profile models at that pixel.

Tree building and cutting are sequential per object, so they run as one
Numba routine per object, compiled twice from one source: a CPU twin
(``numba.njit``, a loop over objects) and a CUDA kernel (``numba.cuda.jit``,
one thread per object; CI runs it under ``NUMBA_ENABLE_CUDASIM=1``). The
pixel sharing is ``xp`` array code.

SExtractor draws the sharing with C's ``rand()``; here a counter-based hash of
the pixel's position gives the same distribution, reproducibly on both
devices. Objects that are not split are identical to SEP's; split objects'
positions (their seeds' barycentres) are too, but their isophotal fluxes
differ from SEP's by that random sharing of faint pixels.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from numba import cuda

from astroray.kernels.backend import array_module_of, bincount, launch, to_numpy
from astroray.kernels.extract.detect import PixelList
from astroray.kernels.catalog import OBJ_MERGED, OBJ_SINGU, OBJ_TRUNC
from astroray.kernels.extract.measure import analyse

__all__ = ["DeblendOutput", "deblend", "deblend_trees", "host_share", "seed_trees_cpu", "seed_trees_cuda",
           "seed_trees_split"]

_MAX_DEBLEND_AREA = 3  # sub-objects need min(min_area, 3) pixels, as SExtractor

CUDA_THREAD_SLOWDOWN = 18.0
"""How many times longer one CUDA thread takes than one host core to build the same object's tree.

The routine is sequential and waits on memory at every step, so a lone GPU thread is far slower than a
CPU core at it, and the kernel lasts as long as its largest object.  :func:`host_share` uses this ratio
to give the largest objects (streaks, saturated stars) to the host.  Measured on an H200 against one core
of its host: a 54,212-pixel streak took 2,500 ms in the kernel and 138 ms on the CPU
(``benchmarks/bench_deblend.py --device gpu``)."""


def _make_tree_kernel(jit):
    """Build the per-object deblending routine for one compiler (``njit`` or ``cuda.jit(device=True)``)."""

    @jit
    def level_threshold(t0, peak, k, xn):
        if peak > 0.0:
            return numba.float32(numba.float64(t0) * math.pow(numba.float64(peak) / numba.float64(t0),
                                                             numba.float64(k) / numba.float64(xn)))
        return t0

    @jit
    def find(lab, base, p):
        r = p
        while lab[base + r] != r:
            lab[base + r] = lab[base + lab[base + r]]  # path halving
            r = lab[base + r]
        return r

    @jit
    def union(lab, base, p, q):
        rp = find(lab, base, p)
        rq = find(lab, base, q)
        if rp < rq:
            lab[base + rq] = rp
        elif rq < rp:
            lab[base + rp] = rq

    @jit
    def link(lab, grid, goff, bw, base, p, nx, ny):
        if nx >= 0 and nx < bw and ny >= 0:
            q = grid[goff + ny * bw + nx]
            if q >= 0 and lab[base + q] >= 0:
                union(lab, base, p, q)

    @jit
    def one_object(o, start, count, px, py, cval, xmin, ymin, bw, goff, grid, thresh0, peak, xn,
                   mincont, minarea, lab, nflux, nnpix, nok, npass, seed_of_pixel, seed_level, seed_root,
                   nseeds):
        s = start[o]
        n = count[o]
        big_n = px.shape[0]
        t0 = thresh0[o]
        pk = peak[o]
        w = bw[o]
        g0 = goff[o]
        # The object's filtered flux, summed in pixel order by this one thread: the same float64
        # sum on both twins (an atomic bincount on the GPU would vary from run to run, and the
        # split tests below compare against it).
        flux0 = 0.0
        for p in range(n):
            flux0 += numba.float64(cval[s + p])
            grid[g0 + (py[s + p] - ymin[o]) * w + (px[s + p] - xmin[o])] = p
            seed_of_pixel[s + p] = -1
            lab[s + p] = 0  # level 0: the whole object, rooted at its first pixel
            nflux[s + p] = 0.0
            nnpix[s + p] = 0
            nok[s + p] = 0
            npass[s + p] = 0
        flux0 = numba.float64(numba.float32(flux0))  # SEP keeps the object's flux as a float
        nflux[s] = flux0
        nnpix[s] = n
        nok[s] = 1
        # Build the tree bottom-up: components above each level (roots = first pixel).
        for k in range(1, xn):
            base = k * big_n + s
            tk = level_threshold(t0, pk, k, xn)
            for p in range(n):
                lab[base + p] = p if cval[s + p] > tk else -1
                nflux[base + p] = 0.0
                nnpix[base + p] = 0
                nok[base + p] = 0
                npass[base + p] = 0
            for p in range(n):
                if lab[base + p] < 0:
                    continue
                x = px[s + p] - xmin[o]
                y = py[s + p] - ymin[o]
                link(lab, grid, g0, w, base, p, x - 1, y)
                link(lab, grid, g0, w, base, p, x - 1, y - 1)
                link(lab, grid, g0, w, base, p, x, y - 1)
                link(lab, grid, g0, w, base, p, x + 1, y - 1)
            for p in range(n):
                if lab[base + p] >= 0:
                    r = find(lab, base, p)
                    nflux[base + r] += cval[s + p]
                    nnpix[base + r] += 1
            for p in range(n):
                if lab[base + p] >= 0:
                    r = find(lab, base, p)
                    lab[base + p] = r
            for p in range(n):  # components too small to be sub-objects
                r = lab[base + p]
                if r >= 0 and nnpix[base + r] < minarea:
                    lab[base + p] = -1
            for p in range(n):
                if lab[base + p] == p:
                    nok[base + p] = 1
        # Cut the branches top-down.
        value0 = flux0 * mincont
        ns = 0
        for k in range(xn - 2, -1, -1):
            bk = k * big_n + s
            bk1 = (k + 1) * big_n + s
            tk1 = level_threshold(t0, pk, k + 1, xn)
            for p in range(n):
                if lab[bk1 + p] == p:
                    i = lab[bk + p]
                    excess = numba.float32(nflux[bk1 + p]) - numba.float32(tk1 * numba.float32(nnpix[bk1 + p]))
                    if numba.float64(excess) > value0:
                        npass[bk + i] += 1
                    if nok[bk1 + p] == 0:
                        nok[bk + i] = 0
            for p in range(n):
                if lab[bk1 + p] == p:
                    i = lab[bk + p]
                    excess = numba.float32(nflux[bk1 + p]) - numba.float32(tk1 * numba.float32(nnpix[bk1 + p]))
                    if npass[bk + i] > 1 and nok[bk1 + p] == 1 and numba.float64(excess) > value0:
                        seed_level[s + ns] = k + 1
                        seed_root[s + ns] = p
                        ns += 1
            for p in range(n):
                if lab[bk + p] == p and npass[bk + p] > 1:
                    nok[bk + p] = 0
        if nok[s] == 1:
            ns = 0
        nseeds[o] = ns
        for m in range(ns):
            base = seed_level[s + m] * big_n + s
            r = seed_root[s + m]
            for p in range(n):
                if lab[base + p] == r:
                    seed_of_pixel[s + p] = m

    return one_object


@functools.cache
def _cpu_routines():
    one_object = _make_tree_kernel(numba.njit(cache=False))

    @numba.njit(cache=False)
    def all_objects(start, count, px, py, cval, xmin, ymin, bw, goff, grid, thresh0, peak, xn, mincont,
                    minarea, lab, nflux, nnpix, nok, npass, seed_of_pixel, seed_level, seed_root, nseeds):
        for o in range(start.shape[0]):
            one_object(o, start, count, px, py, cval, xmin, ymin, bw, goff, grid, thresh0, peak, xn,
                       mincont, minarea, lab, nflux, nnpix, nok, npass, seed_of_pixel, seed_level, seed_root,
                       nseeds)

    return all_objects


@functools.cache
def _cuda_routines():
    one_object = _make_tree_kernel(cuda.jit(device=True))

    @cuda.jit
    def all_objects(start, count, px, py, cval, xmin, ymin, bw, goff, grid, thresh0, peak, xn, mincont,
                    minarea, lab, nflux, nnpix, nok, npass, seed_of_pixel, seed_level, seed_root, nseeds):
        o = cuda.grid(1)
        if o < start.shape[0]:
            one_object(o, start, count, px, py, cval, xmin, ymin, bw, goff, grid, thresh0, peak, xn,
                       mincont, minarea, lab, nflux, nnpix, nok, npass, seed_of_pixel, seed_level, seed_root,
                       nseeds)

    return all_objects


@dataclass
class SeedTrees:
    """Per-pixel seed index (-1: not in a seed) and per-object seed counts (0: not split)."""

    seed_of_pixel: Any
    nseeds: Any
    seed_level: Any  # (N,) level of seed m of object o at start[o] + m


def _tree_inputs(pixels, thresh0, peak, xp):
    n = pixels.n_objects
    big_n = int(pixels.x.shape[0])
    from astroray.kernels.extract.measure import segment_min_max_int

    xmin, xmax = segment_min_max_int(pixels.x, pixels.obj, n)
    ymin = pixels.y[pixels.start]
    ymax = pixels.y[pixels.start + pixels.count - 1]
    bw = (xmax - xmin + 1).astype(xp.int64)
    area = bw * (ymax - ymin + 1)
    goff = (xp.cumsum(area) - area).astype(xp.int64)
    total = int(area.sum()) if n else 0
    return dict(start=pixels.start.astype(xp.int64), count=pixels.count.astype(xp.int64),
                px=pixels.x.astype(xp.int64), py=pixels.y.astype(xp.int64), cval=pixels.cvalue.astype(xp.float32),
                xmin=xmin.astype(xp.int64), ymin=ymin.astype(xp.int64), bw=bw, goff=goff,
                grid=xp.full(max(total, 1), -1, dtype=xp.int32),
                thresh0=xp.asarray(thresh0, dtype=xp.float32), peak=xp.asarray(peak, dtype=xp.float32)), big_n


def _run_trees(routine, inputs, big_n, n, nthresh, mincont, min_area, xp, *, on_cuda=False):
    area = max(big_n, 1)
    lab = xp.zeros(nthresh * area, dtype=xp.int32)
    nflux = xp.zeros(nthresh * area, dtype=xp.float64)
    nnpix = xp.zeros(nthresh * area, dtype=xp.int32)
    nok = xp.zeros(nthresh * area, dtype=xp.int8)
    npass = xp.zeros(nthresh * area, dtype=xp.int32)
    seed_of_pixel = xp.full(area, -1, dtype=xp.int32)
    seed_level = xp.zeros(area, dtype=xp.int32)
    seed_root = xp.zeros(area, dtype=xp.int32)
    nseeds = xp.zeros(max(n, 1), dtype=xp.int32)
    deb_min = min(int(min_area), _MAX_DEBLEND_AREA)
    args = (inputs["start"], inputs["count"], inputs["px"], inputs["py"], inputs["cval"], inputs["xmin"],
            inputs["ymin"], inputs["bw"], inputs["goff"], inputs["grid"], inputs["thresh0"], inputs["peak"],
            int(nthresh), float(mincont), deb_min, lab, nflux, nnpix, nok, npass, seed_of_pixel, seed_level,
            seed_root, nseeds)
    if not on_cuda:
        routine(*args)
    else:
        launch(routine, n, *args)
    return SeedTrees(seed_of_pixel[:big_n], nseeds[:n], seed_level[:big_n])


def _host_pixels(pixels):
    """``pixels`` with every array copied to host memory."""
    return PixelList(**{f.name: getattr(pixels, f.name) if f.name == "n_objects" else to_numpy(getattr(pixels, f.name))
                        for f in dataclasses.fields(PixelList)})


def seed_trees_cpu(pixels, thresh0, peak, *, nthresh, mincont, min_area):
    """CPU twin: deblending trees of every object (results on the device the pixels came from).

    Device (CuPy) pixel lists are copied to the host, and the results back.
    """
    xp = array_module_of(pixels.x)
    if xp is not np:
        pixels, thresh0, peak = _host_pixels(pixels), to_numpy(thresh0), to_numpy(peak)
    inputs, big_n = _tree_inputs(pixels, thresh0, peak, np)
    trees = _run_trees(_cpu_routines(), inputs, big_n, pixels.n_objects, nthresh, mincont, min_area, np)
    if xp is not np:
        trees = SeedTrees(xp.asarray(trees.seed_of_pixel), xp.asarray(trees.nseeds), xp.asarray(trees.seed_level))
    return trees


def seed_trees_cuda(pixels, thresh0, peak, *, nthresh, mincont, min_area):
    """CUDA twin: one thread per object (CuPy arrays, or NumPy under the CUDA simulator)."""
    xp = array_module_of(pixels.x)
    inputs, big_n = _tree_inputs(pixels, thresh0, peak, xp)
    return _run_trees(_cuda_routines(), inputs, big_n, pixels.n_objects, nthresh, mincont, min_area, xp,
                      on_cuda=True)


def host_share(counts, *, slowdown: float = CUDA_THREAD_SLOWDOWN) -> np.ndarray:
    """The objects whose trees the host builds while the CUDA kernel builds the others' (sorted indices).

    Both twins' work on an object grows with its pixel count.  The kernel, one
    thread per object, lasts ``slowdown`` x its largest object; the host, one
    core, the sum of its objects.  The ``k`` largest objects go to the host, for
    the ``k`` that makes the longer of the two shortest (``k = 0`` on a tie).
    """
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    largest_first = counts[order]
    host = np.concatenate([[0.0], np.cumsum(largest_first)])  # k = 0 .. n objects on the host
    device = slowdown * np.concatenate([largest_first, [0.0]])  # the largest object left to the kernel
    k = int(np.argmin(np.maximum(host, device)))
    return np.sort(order[:k])


def _objects_subset(pixels, objects, starts, counts, xp):
    """The pixel list of ``objects`` alone (renumbered 0..k-1, order kept) and its pixels' positions in ``pixels``."""
    c = counts[objects]
    sub_start = np.cumsum(c) - c
    # a pixel's position: its object's start in ``pixels`` + its rank inside the object
    positions = xp.asarray(np.repeat(starts[objects] - sub_start, c) + np.arange(int(c.sum()), dtype=np.int64))
    k = int(objects.shape[0])
    sub = PixelList(xp.asarray(np.repeat(np.arange(k, dtype=np.int64), c)),
                    *(getattr(pixels, f)[positions] for f in ("x", "y", "value", "cvalue", "var", "thresh")),
                    k, xp.asarray(sub_start), xp.asarray(c))
    return sub, positions


def seed_trees_split(pixels, thresh0, peak, *, host_objects, nthresh, mincont, min_area):
    """Trees of ``host_objects`` on the CPU twin while the CUDA kernel builds the others' (one result).

    The host's share is copied out before the kernel starts, so the two run
    at once; the results are the twins' own, so the split changes nothing
    but the time.
    """
    xp = array_module_of(pixels.x)
    n = pixels.n_objects
    starts, counts = to_numpy(pixels.start).astype(np.int64), to_numpy(pixels.count).astype(np.int64)
    host_objects = np.asarray(host_objects, dtype=np.int64)
    device_objects = np.setdiff1d(np.arange(n, dtype=np.int64), host_objects)
    opts = dict(nthresh=nthresh, mincont=mincont, min_area=min_area)
    host_px, host_pos = _objects_subset(pixels, host_objects, starts, counts, xp)
    host_px = _host_pixels(host_px)  # copied before the launch: a copy would wait for the kernel
    host_t0, host_peak = to_numpy(thresh0)[host_objects], to_numpy(peak)[host_objects]
    dev_px, dev_pos = _objects_subset(pixels, device_objects, starts, counts, xp)
    dev_sel = xp.asarray(device_objects)
    on_device = seed_trees_cuda(dev_px, thresh0[dev_sel], peak[dev_sel], **opts)  # returns once launched
    on_host = seed_trees_cpu(host_px, host_t0, host_peak, **opts)
    big_n = int(pixels.x.shape[0])
    seed_of_pixel = xp.full(big_n, -1, dtype=xp.int32)
    seed_level = xp.zeros(big_n, dtype=xp.int32)
    nseeds = xp.zeros(n, dtype=xp.int32)
    for pos, objects, trees in ((dev_pos, dev_sel, on_device), (host_pos, xp.asarray(host_objects), on_host)):
        seed_of_pixel[pos] = xp.asarray(trees.seed_of_pixel)
        seed_level[pos] = xp.asarray(trees.seed_level)
        nseeds[objects] = xp.asarray(trees.nseeds)
    return SeedTrees(seed_of_pixel, nseeds, seed_level)


def deblend_trees(pixels, thresh0, peak, *, nthresh, mincont, min_area, backend="auto"):
    """Seeds of every object, on the CPU twin or the CUDA kernel (``backend``: auto/cpu/cuda).

    On the GPU the largest objects, which would hold the kernel up, are built
    on the host meanwhile (:func:`host_share`).
    """
    xp = array_module_of(pixels.x)
    if backend == "auto":
        backend = "cpu" if xp is np else "cuda"
    opts = dict(nthresh=nthresh, mincont=mincont, min_area=min_area)
    if backend == "cpu":
        return seed_trees_cpu(pixels, thresh0, peak, **opts)
    host_objects = host_share(to_numpy(pixels.count))
    if host_objects.size == 0:
        return seed_trees_cuda(pixels, thresh0, peak, **opts)
    if host_objects.size == pixels.n_objects:
        return seed_trees_cpu(pixels, thresh0, peak, **opts)
    return seed_trees_split(pixels, thresh0, peak, host_objects=host_objects, **opts)


# --------------------------------------------------------------------------- sharing the faint pixels


def _uniform(index, xp):
    """Counter-based uniform [0, 1) numbers: splitmix64 of the index (same on CPU and GPU)."""
    z = index.astype(xp.uint64) + xp.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> xp.uint64(30))) * xp.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> xp.uint64(27))) * xp.uint64(0x94D049BB133111EB)
    z = z ^ (z >> xp.uint64(31))
    return (z >> xp.uint64(11)).astype(xp.float64) * (1.0 / 9007199254740992.0)


@dataclass
class DeblendOutput:
    """Final objects after deblending, ready for :func:`~astroray.kernels.extract.measure.analyse`."""

    pixels: PixelList
    thresh: Any
    centre: Any
    merged: Any
    flag: Any


def deblend(pixels, object_thresh, *, nthresh, mincont, min_area, image_shape, backend="auto"):
    """Deblend every object of ``pixels``; unsplit objects pass through unchanged.

    Returns
    -------
    DeblendOutput
        Objects in SEP's order (each detection's children where it was split).
    """
    xp = array_module_of(pixels.x)
    n = pixels.n_objects
    h, w = image_shape
    from astroray.kernels.extract.measure import segment_max_first

    peak, _ = segment_max_first(pixels.cvalue, pixels.obj, n)
    trees = deblend_trees(pixels, object_thresh, peak, nthresh=nthresh, mincont=mincont,
                          min_area=min_area, backend=backend)
    nseeds = trees.nseeds.astype(xp.int64)
    split = nseeds > 0
    if not bool(split.any()):
        return DeblendOutput(pixels, object_thresh, None, None, None)

    # Final numbering: each detection gives itself or its seeds, in detection order.
    nout = xp.where(split, nseeds, 1)
    first_out = xp.cumsum(nout) - nout
    n_final = int(nout.sum())
    pix_split = split[pixels.obj]
    sop = trees.seed_of_pixel.astype(xp.int64)

    # Seeds as objects, numbered 0..S-1 in final order; analysed at their own level
    # (SEP's gatherup analyses them before it resets their thresholds).
    n_seeds = int(nseeds.sum())
    cfirst = xp.cumsum(nseeds) - nseeds
    in_seed = pix_split & (sop >= 0)
    sidx = xp.flatnonzero(in_seed)
    seed_c = cfirst[pixels.obj[sidx]] + sop[sidx]
    seed_pixels = pixels.take(sidx, obj=seed_c, n_objects=n_seeds)
    owner = xp.searchsorted(cfirst, xp.arange(n_seeds), side="right") - 1  # object of each seed
    local = xp.arange(n_seeds) - cfirst[owner]
    seed_final = first_out[owner] + local
    level = trees.seed_level[pixels.start[owner] + local].astype(xp.float64)
    t_parent = object_thresh.astype(xp.float64)
    peak64 = peak.astype(xp.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_level = xp.where(peak64[owner] > 0,
                           t_parent[owner] * (peak64[owner] / t_parent[owner]) ** (level / nthresh),
                           t_parent[owner])
    sm = analyse(seed_pixels, t_level.astype(xp.float32), image_shape=image_shape)
    final_obj = first_out[pixels.obj].copy()
    final_obj[sidx] = seed_final[seed_c]

    # Share the remaining pixels of split objects among their seeds.
    rest = xp.flatnonzero(pix_split & (sop < 0))
    if rest.shape[0]:
        o_rest = pixels.obj[rest]
        k_rest = nseeds[o_rest]
        offs = xp.cumsum(k_rest) - k_rest
        total = int(k_rest.sum())
        pair_pix = xp.searchsorted(offs, xp.arange(total), side="right") - 1
        pair_seed = cfirst[o_rest[pair_pix]] + (xp.arange(total) - offs[pair_pix])  # compact seed ids
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            dist_amp = sm["npix"].astype(xp.float64) / (2 * np.pi * sm["abcor"].astype(xp.float64)
                                                         * sm["a"].astype(xp.float64) * sm["b"].astype(xp.float64))
            cap = 4.0 * sm["cpeak"].astype(xp.float64)
            amp = xp.where(dist_amp < 70.0, t_parent[owner] * xp.exp(xp.minimum(dist_amp, 70.0)), cap)
            amp = xp.minimum(amp, cap).astype(xp.float32).astype(xp.float64)
            dx = (pixels.x[rest][pair_pix] - sm["x"][pair_seed]).astype(xp.float32).astype(xp.float64)
            dy = (pixels.y[rest][pair_pix] - sm["y"][pair_seed]).astype(xp.float32).astype(xp.float64)
            dist = 0.5 * (sm["cxx"][pair_seed] * dx * dx + sm["cyy"][pair_seed] * dy * dy
                          + sm["cxy"][pair_seed] * dx * dy) / sm["abcor"][pair_seed]
            prob = xp.where(dist < 70.0, amp[pair_seed] * xp.exp(-xp.minimum(dist, 70.0)), 0.0)
        # Cumulative probability over each pixel's seeds. Summed seed by seed (a global
        # cumsum minus offsets would cancel catastrophically over a whole frame).
        cum_local = prob.copy()
        for j in range(1, int(k_rest.max())):
            has = xp.flatnonzero(k_rest > j)
            cum_local[offs[has] + j] += cum_local[offs[has] + j - 1]
        tot = cum_local[offs + k_rest - 1]
        u = _uniform(pixels.y[rest].astype(xp.int64) * w + pixels.x[rest], xp)
        draw = tot * u
        # First seed whose cumulative probability reaches the draw; else the nearest seed.
        reach = cum_local >= draw[pair_pix]
        big = xp.int64(1 << 40)
        first_reach = xp.full(rest.shape[0], big, dtype=xp.int64)
        cand = xp.flatnonzero(reach)
        if cand.shape[0]:
            _, fi = xp.unique(pair_pix[cand], return_index=True)
            first_reach[pair_pix[cand[fi]]] = cand[fi]
        # Nearest: smallest dist per pixel (first on ties, as SEP's strict '<').
        order = xp.lexsort(xp.stack([dist, pair_pix.astype(xp.float64)]))
        nearest = xp.zeros(rest.shape[0], dtype=xp.int64)
        _, fi2 = xp.unique(pair_pix[order], return_index=True)
        nearest[pair_pix[order[fi2]]] = order[fi2]
        chosen = xp.where((tot > 1e-31) & (first_reach < big), first_reach, nearest)
        final_obj[rest] = seed_final[pair_seed[chosen]]

    final = pixels.take(xp.arange(pixels.x.shape[0]), obj=final_obj, n_objects=n_final)
    is_seed = xp.zeros(n_final, dtype=bool)
    is_seed[seed_final] = True
    thresh = xp.zeros(n_final, dtype=xp.float64)
    thresh[seed_final] = t_parent[owner]  # gatherup resets the children to the parent's threshold
    unsplit_objs = xp.flatnonzero(~split)
    thresh[first_out[unsplit_objs]] = t_parent[unsplit_objs]
    cx = xp.zeros(n_final, dtype=xp.float64)
    cy = xp.zeros(n_final, dtype=xp.float64)
    cx[seed_final], cy[seed_final] = sm["x"], sm["y"]
    # Flags: MERGED and the seed's own TRUNC and SINGU for children; unsplit objects their TRUNC.
    edge = (seed_pixels.x == 0) | (seed_pixels.x == w - 1) | (seed_pixels.y == 0) | (seed_pixels.y == h - 1)
    seed_trunc = bincount(seed_pixels.obj, weights=edge.astype(xp.float64), minlength=n_seeds)[:n_seeds] > 0
    fedge = (final.x == 0) | (final.x == w - 1) | (final.y == 0) | (final.y == h - 1)
    flag = xp.where(bincount(final.obj, weights=fedge.astype(xp.float64), minlength=n_final)[:n_final] > 0,
                    OBJ_TRUNC, 0).astype(xp.int64)
    flag[seed_final] = OBJ_MERGED | xp.where(seed_trunc, OBJ_TRUNC, 0) | (sm["flag"] & OBJ_SINGU)
    return DeblendOutput(final, thresh.astype(xp.float32), (cx, cy), is_seed, flag)
