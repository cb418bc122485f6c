"""Satellite streaks on a score image: a Hough transform of its significant pixels.

A satellite or aircraft trail crosses a CCD in a straight line. On the
difference's score image a bright one is one long, elongated detection whose
footprint swallows any transient it passes; a faint one breaks into a row of
5-7 sigma fragments that each look like a candidate. Both are found here as
lines: pixels above ``threshold`` are pooled in ``bin x bin`` blocks, the
blocks vote in a Hough accumulator over (theta, rho), and a peak is a streak
when the blocks along it form a run at least ``min_length`` pixels long with
gaps under ``max_gap`` and at least ``min_fill`` of its length covered.
Compact sources, noise and short trails (asteroids) fail the run test.

Detections on a streak are flagged (``on_streak`` in the catalog and in the
alerts' meta), not dropped: brokers filter on the flag.  :func:`streak_model`
gives each streak's own profile (a running median along it), so that the
image pipeline can look again, on ``image - model``, for the transients a
streak's footprint swallowed (``under_streak``).

Example
-------
>>> finder = StreakFinder(StreakConfig(min_length=200))
>>> streaks = finder(score)                                   # doctest: +SKIP
>>> on_streak = streaks_contain(streaks, catalog["x"], catalog["y"])  # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.kernels.backend import array_module_of, to_numpy
from astroray.stage import Stage

__all__ = ["StreakConfig", "Streak", "StreakFinder", "find_streaks", "streaks_contain", "streak_model"]


class StreakConfig(AstrorayConfig):
    """Options of :class:`StreakFinder`.

    Attributes
    ----------
    threshold : float
        Pixels with ``|score|`` above this vote (a streak too faint to reach
        5 sigma anywhere still lifts most of its pixels over 2.5).
    bin : int
        Pixels are pooled in ``bin x bin`` blocks before voting; also the rho
        step of the accumulator, in pixels.
    theta_step : float
        Angle step of the accumulator in degrees.
    min_length : float
        Shortest streak in pixels (asteroid trails are tens of pixels).
    max_gap : float
        Longest gap along a streak, in pixels.
    min_fill : float
        Fraction of the streak's length where a voting block lies within a
        bin of the line (noise alignments cover a few per cent; where the
        image's own block occupancy is high, at least half way from it to 1).
    margin : float
        Detections within the streak's half width plus this many pixels are on it.
    max_streaks : int
        At most this many streaks per image.
    candidates : int
        Accumulator peaks examined per streak found (most votes first, equal
        votes in index order).
    recover : bool
        Image pipeline: search each streak's band again with the streak's
        profile removed, for the transients its footprint swallowed (about
        0.03 s per 1000 px of streak on 2 cores).
    """

    threshold: float = Field(default=2.5, gt=0)
    bin: int = Field(default=4, ge=1)
    theta_step: float = Field(default=0.5, gt=0, le=10)
    min_length: float = Field(default=200.0, gt=0)
    max_gap: float = Field(default=50.0, ge=0)
    min_fill: float = Field(default=0.7, gt=0, le=1)
    margin: float = Field(default=4.0, ge=0)
    max_streaks: int = Field(default=8, ge=1)
    candidates: int = Field(default=20, ge=1)
    recover: bool = True


@dataclass(frozen=True)
class Streak:
    """A straight streak segment from ``(x0, y0)`` to ``(x1, y1)`` (0-based pixels)."""

    x0: float
    y0: float
    x1: float
    y1: float
    half_width: float
    """Half width of the band that holds the streak's significant pixels."""
    fill: float
    """Fraction of the length covered by significant pixels."""

    @property
    def length(self) -> float:
        return math.hypot(self.x1 - self.x0, self.y1 - self.y0)

    @property
    def angle(self) -> float:
        """Direction in degrees in [0, 180), counter-clockwise from +x."""
        return math.degrees(math.atan2(self.y1 - self.y0, self.x1 - self.x0)) % 180.0


def find_streaks(score, *, config: StreakConfig | None = None, mask=None) -> list[Streak]:
    """Straight streaks on a score image (NumPy or CuPy), longest first.

    Parameters
    ----------
    score : array (H, W)
        ``S_corr`` or any image in units of its noise.
    config : StreakConfig, optional
    mask : array (H, W) of bool, optional
        Pixels that do not vote (flagged, blanked).

    Raises
    ------
    InvalidInputError
        ``score`` is not 2-D.
    """
    cfg = config or StreakConfig()
    xp = array_module_of(score)
    score = xp.asarray(score)
    if score.ndim != 2:
        raise InvalidInputError(f"score must be a 2-D image, got shape {tuple(score.shape)}")
    if xp is np:  # one parallel pass on the host, no full-frame temporaries
        from astroray.imaging import _streak_kernels

        use_mask = mask is not None
        host_mask = np.asarray(mask, dtype=bool) if use_mask else np.zeros((1, 1), bool)
        if use_mask and host_mask.shape != score.shape:
            raise InvalidInputError(f"mask shape {host_mask.shape} does not match the score's {tuple(score.shape)}")
        by, bx = _streak_kernels.pooled_blocks(score, host_mask, use_mask, float(cfg.threshold), cfg.bin)
        ys, xs = (by + 0.5) * cfg.bin - 0.5, (bx + 0.5) * cfg.bin - 0.5
    else:
        significant = xp.abs(xp.nan_to_num(score)) > cfg.threshold
        if mask is not None:
            significant &= ~xp.asarray(mask, dtype=bool)
        ys, xs = _pooled_points(significant, cfg.bin, xp)
    occupancy = len(xs) / (-(-score.shape[0] // cfg.bin) * -(-score.shape[1] // cfg.bin))
    if occupancy > 0.5:
        return []  # most of the image is significant (a failed subtraction): every line would look filled
    # A streak must stand out from the blocks that are significant anyway: at least half the way to full.
    min_fill = max(cfg.min_fill, occupancy + 0.5 * (1.0 - occupancy))
    return _find_lines(ys, xs, score.shape, cfg.model_copy(update={"min_fill": min_fill}))


def streaks_contain(streaks: list[Streak], x, y, *, margin: float = 4.0) -> np.ndarray:
    """Whether each position ``(x, y)`` lies on one of ``streaks`` (within half width + ``margin``)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    on = np.zeros(x.shape, bool)
    for s in streaks:
        if s.length <= 0:
            continue
        ux, uy = (s.x1 - s.x0) / s.length, (s.y1 - s.y0) / s.length
        along = (x - s.x0) * ux + (y - s.y0) * uy
        across = np.abs(-(x - s.x0) * uy + (y - s.y0) * ux)
        on |= (across <= s.half_width + margin) & (along >= -margin) & (along <= s.length + margin)
    return on


def streak_model(image: np.ndarray, streaks: list[Streak], *, noise: np.ndarray | None = None, margin: float = 8.0,
                 segment: float = 32.0, end_cap: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The streaks' own light in ``image``: the median across-profile of each ``segment`` px along them.

    A transient under a streak covers a fraction of each segment's pixels at
    one across-distance, so the median leaves it out; ``image - model`` shows
    it on flat ground.  Returns ``(model, band, scale)``: the model (0 off
    the streaks); the pixels where it holds (the streaks' half widths plus
    ``margin``, without the segments at either end of the lit part of each
    streak, ``end_cap`` px at least, where streak and sky share a segment,
    nor where streaks cross); and the robust
    scatter of ``(image - model) / noise`` per cell (``noise`` default 1),
    at least 1: a bright streak is modelled to a few per cent, which on its
    ridge can be several sigma.
    """
    image = np.asarray(image)
    H, W = image.shape
    model = np.zeros((H, W), np.float32)
    band = np.zeros((H, W), bool)
    scale = np.ones((H, W), np.float32)
    cover = np.zeros((H, W), np.uint8)  # streaks reaching each pixel: crossings are not modelled, nor searched
    for s in streaks:
        if s.length <= 0:
            continue
        ux, uy = (s.x1 - s.x0) / s.length, (s.y1 - s.y0) / s.length
        reach = s.half_width + margin
        # every pixel of the band (centre within reach of the segment), row by row
        yy, xx = _band_pixels(s, ux, uy, reach, H, W)
        along = (xx - s.x0) * ux + (yy - s.y0) * uy
        across = -(xx - s.x0) * uy + (yy - s.y0) * ux
        # cells: segments along (the last one takes the remainder) x 1-px bins across, centred on k + 0.5
        n_seg = max(int(s.length // segment), 1)
        seg = np.minimum((along // segment).astype(np.int64), n_seg - 1)
        offset = int(np.ceil(reach)) + 1
        n_k = 2 * offset
        k = np.clip(np.floor(across).astype(np.int64) + offset, 0, n_k - 1)
        cell = seg * n_k + k
        values = image[yy, xx].astype(np.float64)
        medians = _cell_medians(cell, values, n_seg * n_k, fill=0.0).reshape(n_seg, n_k)
        # linear between bin centres across: the profile is steep on a bright streak's flanks
        t = across + offset - 0.5
        k0 = np.clip(np.floor(t).astype(np.int64), 0, n_k - 1)
        k1 = np.minimum(k0 + 1, n_k - 1)
        w = np.clip(t - k0, 0.0, 1.0)
        fitted = (1 - w) * medians[seg, k0] + w * medians[seg, k1]
        model[yy, xx] = fitted.astype(np.float32)
        # the scatter about the model, per cell too: on a bright streak's ridge it is the largest
        resid = values - fitted
        if noise is not None:
            sd = np.asarray(noise)[yy, xx].astype(np.float64)
            resid = np.divide(resid, sd, out=np.zeros_like(resid), where=sd > 0)
        spread = 1.4826 * _cell_medians(cell, np.abs(resid), n_seg * n_k, fill=1.0).reshape(n_seg, n_k)
        if n_seg >= 3:  # a running median over neighbouring segments: a transient does not raise its own cells
            padded = np.pad(spread, ((1, 1), (0, 0)), mode="edge")
            spread = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
        scale[yy, xx] = np.maximum((1 - w) * spread[seg, k0] + w * spread[seg, k1], 1.0).astype(np.float32)
        # Search only where the streak is really there: its ends, as found, can overrun the light by tens
        # of px on a bright streak, and a segment holding an end mixes streak and sky. The segments whose
        # ridge holds at least half the streak's typical ridge are the streak; the outermost of them go too.
        ridge = np.abs(medians).max(axis=1)
        lit = np.flatnonzero(ridge >= 0.5 * np.median(ridge))
        first, last = (lit[0] + 1, lit[-1] - 1) if len(lit) else (1, 0)
        inner = (seg >= first) & (seg <= last) & (along >= end_cap) & (along <= s.length - end_cap)
        band[yy[inner], xx[inner]] = True
        cover[yy, xx] += 1
    band &= cover == 1
    return model, band, scale


def _band_pixels(s: Streak, ux: float, uy: float, reach: float, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (row-major) of the pixels of an ``H x W`` image whose centres lie within ``reach``
    of the streak's segment (``0 <= along <= length``, ``|across| <= reach``)."""
    from astroray.imaging import _streak_kernels

    return _streak_kernels.band_pixels(float(s.x0), float(s.y0), float(ux), float(uy), float(s.length),
                                       float(reach), int(H), int(W))


def _cell_medians(cell: np.ndarray, values: np.ndarray, n_cells: int, *, fill: float) -> np.ndarray:
    """Median of ``values`` in each cell (``fill`` where a cell is empty): a Numba counting sort."""
    from astroray.imaging import _streak_kernels

    return _streak_kernels.cell_medians(np.ascontiguousarray(cell, np.int64), np.ascontiguousarray(values, np.float64),
                                        int(n_cells), float(fill))


def _cell_medians_sorted(cell: np.ndarray, values: np.ndarray, n_cells: int, *, fill: float) -> np.ndarray:
    """:func:`_cell_medians` in NumPy, by one lexsort of all the values (the reference the tests hold it to)."""
    order = np.lexsort((values, cell))
    c, v = cell[order], values[order]
    cells, starts, counts = np.unique(c, return_index=True, return_counts=True)
    lower = v[starts + (counts - 1) // 2]
    upper = v[starts + counts // 2]
    out = np.full(n_cells, fill)
    out[cells] = 0.5 * (lower + upper)
    return out


class StreakFinder(Stage[StreakConfig]):
    """Configure once, call per score image: ``StreakFinder(config)(score) -> list[Streak]``."""

    config_class = StreakConfig

    def run(self, score, *, mask=None) -> list[Streak]:
        """See :func:`find_streaks`."""
        return find_streaks(score, config=self.config, mask=mask)

    def contains(self, streaks: list[Streak], x, y) -> np.ndarray:
        """See :func:`streaks_contain` (with this config's margin)."""
        return streaks_contain(streaks, x, y, margin=self.config.margin)


# --------------------------------------------------------------------------- core


def _pooled_points(significant, b: int, xp) -> tuple[np.ndarray, np.ndarray]:
    """Centres (y, x) of the ``b x b`` blocks holding a significant pixel, on the host."""
    H, W = significant.shape
    hb, wb = -(-H // b), -(-W // b)
    padded = xp.zeros((hb * b, wb * b), dtype=bool)
    padded[:H, :W] = significant
    blocks = padded.reshape(hb, b, wb, b).any(axis=(1, 3))
    by, bx = (to_numpy(a) for a in xp.nonzero(blocks))
    return (by + 0.5) * b - 0.5, (bx + 0.5) * b - 0.5


def _find_lines(ys: np.ndarray, xs: np.ndarray, shape, cfg: StreakConfig) -> list[Streak]:
    votes = _Votes(ys, xs, shape, cfg)
    found: list[Streak] = []
    keep = np.ones(len(xs), bool)
    while len(found) < cfg.max_streaks:
        px, py = xs[keep], ys[keep]
        streak, used = None, None
        for theta, rho in votes.candidates():
            streak, used = _segment(px, py, theta, rho, cfg)
            if streak is not None:
                break
        if streak is None:
            break
        found.append(streak)
        stopped = np.flatnonzero(keep)[used]
        keep[stopped] = False  # its blocks vote no more
        votes.stop(stopped)
    return sorted(found, key=lambda s: -s.length)


class _Votes:
    """The Hough accumulator over (theta, rho) of the coarse blocks that still hold a voting point.

    Votes come from blocks twice the size of the fine ones (a quarter of the
    points to cast); the candidate lines are then refined and measured on the
    fine blocks.  A coarse block's votes are taken off when its last fine
    point stops voting (a count per block, so each stop costs its own points).
    """

    def __init__(self, ys: np.ndarray, xs: np.ndarray, shape, cfg: StreakConfig):
        H, W = shape
        self.cfg = cfg
        self.thetas = np.deg2rad(np.arange(0.0, 180.0, cfg.theta_step))
        self.cos, self.sin = np.cos(self.thetas), np.sin(self.thetas)
        self.rho_max = math.hypot(H, W)
        self.vote = 2 * cfg.bin
        self.n_rho = int(math.ceil(2 * self.rho_max / self.vote)) + 1
        self.xs, self.ys = xs, ys
        coarse = _coarse_ids(xs, ys, self.vote, W)
        ids, self.first, self.block_of = np.unique(coarse, return_index=True, return_inverse=True)
        self.live = np.bincount(self.block_of, minlength=len(ids))  # fine points still voting, per coarse block
        self.acc = self._cast(self.first)

    def _cast(self, points: np.ndarray) -> np.ndarray:
        return _accumulate(self.xs[points], self.ys[points], self.cos, self.sin, self.rho_max, self.n_rho, self.vote)

    def candidates(self):
        """``(theta, rho)`` of the best cells (:func:`_top_cells`), best first."""
        cfg = self.cfg
        for flat in _top_cells(self.acc.ravel(), self.vote, cfg.min_length * cfg.min_fill, cfg.candidates):
            t, r = divmod(int(flat), self.n_rho)
            yield self.thetas[t], r * self.vote - self.rho_max

    def stop(self, points: np.ndarray) -> None:
        """Fine points (indices) that vote no more; blocks left without one lose their votes."""
        had_votes = self.live > 0
        self.live -= np.bincount(self.block_of[points], minlength=len(self.live))
        gone = np.flatnonzero(had_votes & (self.live == 0))
        if len(gone):
            self.acc -= self._cast(self.first[gone])


def _top_cells(flat_acc: np.ndarray, vote: int, min_covered: float, k: int) -> np.ndarray:
    """Flat indices of the (at most) ``k`` accumulator cells with the most votes, of those whose votes
    (``vote`` px each) reach ``min_covered`` px (fewer cannot make an acceptable streak).

    Most votes first; equal votes in index order.  Only the cells over the
    floor are ranked (a few hundred of the ~10^5-10^6), not the whole accumulator.
    """
    floor = math.ceil(min_covered / vote)  # the fewest votes with votes * vote >= min_covered, exactly
    while floor > 0 and (floor - 1) * vote >= min_covered:
        floor -= 1
    while floor * vote < min_covered:
        floor += 1
    cells = np.flatnonzero(flat_acc >= floor)
    votes = flat_acc[cells]
    if len(cells) > k:
        kth = np.partition(votes, len(votes) - k)[len(votes) - k]  # the k-th most votes
        over, tied = votes > kth, np.flatnonzero(votes == kth)
        keep = over.copy()
        keep[tied[:k - int(over.sum())]] = True  # ties at the cut: the lowest indices
        cells, votes = cells[keep], votes[keep]
    return cells[np.lexsort((cells, -votes))]


def _coarse_ids(xs, ys, size: int, width: int) -> np.ndarray:
    """Id of the ``size x size`` block holding each point."""
    return (ys // size).astype(np.int64) * (width // size + 1) + (xs // size).astype(np.int64)


def _accumulate(xs, ys, cos, sin, rho_max, n_rho, step) -> np.ndarray:
    """Votes per (theta, rho) bin: each point votes once per angle (a parallel Numba loop over the angles)."""
    from astroray.imaging import _streak_kernels

    return _streak_kernels.hough_votes(np.ascontiguousarray(xs), np.ascontiguousarray(ys), cos.astype(np.float32),
                                       sin.astype(np.float32), np.float32(rho_max + 0.5 * step),
                                       np.float32(1.0 / step), int(n_rho))


def _accumulate_numpy(xs, ys, cos, sin, rho_max, n_rho, step, *, chunk: int = 16384) -> np.ndarray:
    """:func:`_accumulate` in NumPy (in chunks: memory stays ~chunk x angles), the reference the tests hold it to."""
    acc = np.zeros(len(cos) * n_rho, np.int64)
    cos32, sin32 = cos.astype(np.float32), sin.astype(np.float32)
    offsets = (np.arange(len(cos), dtype=np.int32) * np.int32(n_rho))[None, :]
    for k in range(0, len(xs), chunk):
        # float32 and in place: a 4k frame has ~10^5 voting blocks times 360 angles
        rho = np.multiply.outer(xs[k:k + chunk].astype(np.float32), cos32)
        rho += np.multiply.outer(ys[k:k + chunk].astype(np.float32), sin32)
        rho += np.float32(rho_max + 0.5 * step)
        rho *= np.float32(1.0 / step)
        flat = rho.astype(np.int32)  # floor of a positive number: the nearest rho bin
        flat += offsets
        acc += np.bincount(flat.ravel(), minlength=acc.size)
    return acc.reshape(len(cos), n_rho)


def _segment(xs, ys, theta, rho, cfg: StreakConfig):
    """The longest well-filled run of points along the line (theta, rho), or (None, None).

    The accumulator's line is good to a bin in rho and half a step in angle,
    which over a 4k CCD drifts by tens of pixels: it is refined first
    (:func:`_refine`), then the run is found along the refined line.
    """
    theta, rho = _refine(xs, ys, theta, rho, cfg)
    run = _longest_run(xs, ys, theta, rho, cfg)
    if run is None or run["length"] < cfg.min_length or run["fill"] < cfg.min_fill:
        return None, None
    lo, hi, length, across, along = run["lo"], run["hi"], run["length"], run["across"], run["along"]
    # Grow the band while the next stripe out is still filled (bright streaks are wide on the score);
    # every point in it stops voting, so a wide streak is not found again as parallel lines.
    inside = (along >= lo - cfg.bin) & (along <= hi + cfg.bin)
    w = float(cfg.bin)
    while w < 16 * cfg.bin:
        stripe = inside & (np.abs(across) > w) & (np.abs(across) <= w + cfg.bin)
        covered = len(np.unique(np.floor((along[stripe] - lo) / cfg.bin))) * cfg.bin / length
        if covered < 0.5 * cfg.min_fill:
            break
        w += cfg.bin
    wide = inside & (np.abs(across) <= w + cfg.bin)
    c, s = math.cos(theta), math.sin(theta)
    x0, y0 = rho * c - lo * s, rho * s + lo * c
    x1, y1 = rho * c - hi * s, rho * s + hi * c
    return Streak(float(x0), float(y0), float(x1), float(y1), w + 0.5 * cfg.bin, float(run["fill"])), wide


def _longest_run(xs, ys, theta, rho, cfg: StreakConfig) -> dict | None:
    """Points within a bin of the line, split where they leave gaps over ``max_gap``: the longest piece."""
    c, s = math.cos(theta), math.sin(theta)
    across = xs * c + ys * s - rho
    band = np.abs(across) <= cfg.bin  # one block either side of the line
    if band.sum() < 2:
        return None
    along = -xs * s + ys * c
    pos = np.sort(along[band])
    breaks = np.flatnonzero(np.diff(pos) > cfg.max_gap + cfg.bin)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(pos) - 1]))
    k = int(np.argmax(pos[ends] - pos[starts]))
    run = pos[starts[k]:ends[k] + 1]
    if run[-1] - run[0] + cfg.bin < cfg.min_length:
        return None
    # Noise blocks within max_gap of the ends would stretch the run: its ends are the outermost
    # occupied bins with at least half of the next max_gap (inwards) occupied.
    occupied = np.unique(np.floor((run - run[0]) / cfg.bin)).astype(np.int64)
    window = max(int(cfg.max_gap // cfg.bin), 1)
    ahead = np.searchsorted(occupied, occupied + window) - np.arange(len(occupied))
    behind = np.arange(len(occupied)) + 1 - np.searchsorted(occupied, occupied - window + 1)
    dense_ahead, dense_behind = np.flatnonzero(2 * ahead >= window), np.flatnonzero(2 * behind >= window)
    if len(dense_ahead) == 0 or len(dense_behind) == 0:
        return None
    lo = float(run[0] + occupied[dense_ahead[0]] * cfg.bin)
    hi = float(run[0] + (occupied[dense_behind[-1]] + 1) * cfg.bin)
    length = hi - lo
    if length < cfg.min_length:
        return None
    inner = occupied[(occupied >= occupied[dense_ahead[0]]) & (occupied <= occupied[dense_behind[-1]])]
    fill = len(inner) * cfg.bin / length
    members = band & (along >= lo) & (along <= hi)
    return dict(lo=lo, hi=hi, length=length, fill=fill, across=across, along=along, members=members)


def _refine(xs, ys, theta, rho, cfg: StreakConfig, *, n_angles: int = 41) -> tuple[float, float]:
    """A finer Hough transform of the points near the line: the best angle within a step, and the centre in rho.

    Wide streaks fill many rho bins equally, so rho is the middle of the
    bins above half the peak rather than the first maximum.
    """
    reach = 16 * cfg.bin
    near = np.abs(xs * math.cos(theta) + ys * math.sin(theta) - rho) <= reach
    px, py = xs[near], ys[near]
    step = math.radians(cfg.theta_step)
    angles = theta + np.linspace(-step, step, n_angles)
    rhos = np.outer(px, np.cos(angles)) + np.outer(py, np.sin(angles))  # (points, angles)
    n_bins = int(2 * (reach + cfg.bin) / cfg.bin) + 1
    idx = np.clip(np.rint((rhos - rho + reach + cfg.bin) / cfg.bin).astype(np.int64), 0, n_bins - 1)
    idx += np.arange(n_angles) * n_bins  # one flat bin per (angle, rho): counted in one pass
    hist = np.bincount(idx.ravel(), minlength=n_angles * n_bins).reshape(n_angles, n_bins)
    hist[:, [0, -1]] = 0  # the clipped overflow bins
    # The aligned angle packs the points into the fewest rho bins: most counts squared. (A wide streak
    # gives the same peak count over a range of angles, the sharpness only at the right one.)
    a = int(np.argmax((hist.astype(np.float64) ** 2).sum(axis=1)))
    row = hist[a]
    peak = int(np.argmax(row))
    lo = peak
    while lo > 0 and row[lo - 1] * 2 >= row[peak]:
        lo -= 1
    hi = peak
    while hi < n_bins - 1 and row[hi + 1] * 2 >= row[peak]:
        hi += 1
    centre = 0.5 * (lo + hi) * cfg.bin - reach - cfg.bin + rho
    new_theta = float(angles[a])
    if new_theta < 0 or new_theta >= math.pi:  # keep theta in [0, pi): flip the normal
        new_theta, centre = new_theta % math.pi, -centre
    return new_theta, float(centre)
