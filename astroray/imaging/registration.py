"""The reference resampled onto the science frame: WCS first, then the stars decide.

:class:`Registration` maps every science pixel ``p`` to a reference pixel
``T(p) = W(p) + Delta(p)``: ``W`` goes through the two WCSs (science pixel ->
sky -> reference pixel, SIP distortions included) and ``Delta`` is a
polynomial fitted to stars seen in both frames, which absorbs pointing and
WCS errors: a shift, an affine map or a quadratic, whichever the Bayesian
information criterion of the fit prefers (a right WCS needs a shift only,
and fitting six terms to it would spend the stars' precision on zeros).  The reference is then resampled onto the
science grid with its variance and mask.

Matching
--------
Stars of each frame come from :class:`~astroray.imaging.extraction.SourceExtractor`,
compact ones only (galaxies' centres move with the seeing and with a
transient lighting up on them), centred by adaptive Gaussian-weighted
moments and weighted by their size over their S/N.  The science stars are mapped through ``W`` into the
reference frame; an asterism match (as ``astroalign`` does: triangles of each
star and its nearest neighbours, compared by their scale-, rotation- and
shift-free side ratios, each matched pair of triangles a similarity-transform
hypothesis kept by how many stars it brings within ``asterism_radius``)
pairs them up however far off the WCS is; where too few stars make
triangles, nearest neighbours within ``match_radius`` of the WCS prediction
do.  ``Delta`` is then fitted by weighted least squares, clipping pairs more
than ``clip_sigma`` times the robust scatter off, rematching, three times.

Resampling and flux
-------------------
The image is interpolated with a cubic B-spline (interpolating: the
reference's pixel values are kept at their own centres) at ``T(p)``, and --
with ``conserve_flux`` -- multiplied by ``|det dT/dp|``, the reference pixels
per science pixel: the counts of a source are conserved (to the interpolation
error of a band-limited image), not its surface brightness.  The variance is
interpolated linearly and multiplied by ``|det|^2``: the per-pixel variance,
not the smaller one of the interpolated values (interpolation correlates the
noise but keeps its power at the PSF's scales, which is what ZOGY weighs).
For comparison, ``reproject.reproject_interp`` conserves surface brightness,
not flux; ``reproject_adaptive(conserve_flux=True)`` and ``reproject_exact``
conserve flux.

Flagged pixels (``bad_bits``) are filled from their unflagged neighbours
before interpolating, and every science pixel whose interpolation used one
carries its flags (the reference mask grown by two pixels for the 4x4 cubic
footprint).  Science pixels whose ``T(p)`` falls off the reference are
NO_DATA.
"""
from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.imaging._regions import grow
from astroray.imaging.background import BackgroundConfig
from astroray.imaging.extraction import ExtractionConfig, SourceExtractor
from astroray.records import Exposure, MaskBits

__all__ = ["RegistrationConfig", "RegistrationResult", "Registration", "Transform", "register",
           "match_asterisms"]

_BAD_BITS = int(MaskBits.BAD | MaskBits.SAT | MaskBits.CR | MaskBits.NO_DATA)


class RegistrationConfig(AstrorayConfig):
    """Options of :class:`Registration`.

    Attributes
    ----------
    degree : int
        Largest degree of the polynomial correction ``Delta`` on top of the
        WCS mapping (1: affine; 2-3 for WCSs with unmodelled distortion).
    select_degree : bool
        Pick the degree from 0 (a shift) up to ``degree`` by the Bayesian
        information criterion of the fit (else always ``degree``).
    min_snr : float
        Isophotal S/N of the stars used.
    max_stars : int
        Brightest stars per frame used for the fit.
    asterism_stars : int
        Brightest stars per frame that make triangles.
    asterism_neighbours : int
        Each star's triangles are with its nearest this many neighbours.
    asterism_tolerance : float
        Distance in side-ratio space within which two triangles match.
    asterism_radius : float
        Pixels within which a hypothesis' transform must bring a star to its
        partner to count it.
    max_hypotheses : int
        Triangle matches tried, closest first.
    match_radius : float
        Pixels within which stars pair up once a transform is known.
    min_matches : int
        Fewer matched stars raise (or fall back to the WCS, see ``fallback``).
    clip_sigma : float
        Pairs further off than this many times the (robust) scatter drop out of the fit.
    max_size_ratio : float or None
        Only sources at most this many times the size of the stellar locus
        (adaptive second moments) register: a galaxy's centre moves when a
        transient lights up on it, and its windowed centre depends on the
        seeing.  None: every source.
    fallback : {"raise", "wcs"}
        Too few matched stars: raise :class:`InvalidInputError`, or trust the
        WCSs alone (the result says so in ``method``).
    min_overlap : float
        Fraction of the science frame the reference must cover.
    conserve_flux : bool
        Multiply by the Jacobian determinant (counts conserved).
    grid_step : int
        The mapping is evaluated every this many pixels and interpolated
        (bicubic spline) in between.
    bad_bits : int
        Reference mask bits whose pixels are filled and whose flags spread to
        every pixel interpolated from them.
    extraction, background : configs of the star finder
    """

    degree: int = Field(default=2, ge=1, le=3)
    select_degree: bool = True
    min_snr: float = Field(default=10.0, gt=0)
    max_stars: int = Field(default=400, ge=3)
    asterism_stars: int = Field(default=40, ge=3)
    asterism_neighbours: int = Field(default=5, ge=2)
    asterism_tolerance: float = Field(default=0.01, gt=0)
    asterism_radius: float = Field(default=3.0, gt=0)
    max_hypotheses: int = Field(default=3000, ge=1)
    match_radius: float = Field(default=1.5, gt=0)
    min_matches: int = Field(default=6, ge=3)
    clip_sigma: float = Field(default=3.0, gt=0)
    max_size_ratio: float | None = Field(default=1.3, gt=1)
    fallback: Literal["raise", "wcs"] = "raise"
    min_overlap: float = Field(default=0.1, gt=0, le=1)
    conserve_flux: bool = True
    grid_step: int = Field(default=32, ge=4)
    bad_bits: int = _BAD_BITS
    extraction: ExtractionConfig = Field(default_factory=lambda: ExtractionConfig(
        threshold=5.0, min_area=5, photometry=True, segmentation=False))
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)


# --------------------------------------------------------------------------- the transform


def _wcs_of(record, name: str):
    from astroray.io.survey import celestial_wcs

    wcs = celestial_wcs(getattr(record, "header", None))
    if wcs is None:
        raise InvalidInputError(f"the {name} has no celestial WCS in its header: it cannot be registered "
                                "(read it with astroray.io.survey.read_survey_image, which checks for one)",
                                source=getattr(record, "exposure_id", None) or None)
    return wcs


def _poly_terms(u, v, degree: int) -> np.ndarray:
    """Columns u^i v^j, i + j <= degree (1, u, v, u^2, u v, v^2, ...)."""
    cols = [np.ones_like(u)]
    for d in range(1, degree + 1):
        for j in range(d + 1):
            cols.append(u ** (d - j) * v ** j)
    return np.stack(cols, axis=-1)


@dataclass
class Transform:
    """Science pixel -> reference pixel: ``T(p) = W(p) + Delta(p)``.

    Attributes
    ----------
    science_wcs, reference_wcs : astropy.wcs.WCS
    coef_x, coef_y : ndarray
        Polynomial coefficients of ``Delta`` (see :func:`_poly_terms`) in the
        normalised science coordinates ``(p - centre) / half_size``; zeros for
        the WCS alone.
    centre, half_size : (float, float)
    degree : int
    """

    science_wcs: Any
    reference_wcs: Any
    coef_x: np.ndarray
    coef_y: np.ndarray
    centre: tuple[float, float]
    half_size: tuple[float, float]
    degree: int

    def wcs_map(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """``W``: science pixels through the sky to reference pixels (0-based)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ra, dec = self.science_wcs.all_pix2world(x.ravel(), y.ravel(), 0)
            qx, qy = self.reference_wcs.all_world2pix(ra, dec, 0, quiet=True)
        return np.asarray(qx).reshape(x.shape), np.asarray(qy).reshape(y.shape)

    def terms(self, x, y) -> np.ndarray:
        u = (np.asarray(x, np.float64) - self.centre[0]) / self.half_size[0]
        v = (np.asarray(y, np.float64) - self.centre[1]) / self.half_size[1]
        return _poly_terms(u, v, self.degree)

    def correction(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        t = self.terms(x, y)
        return t @ self.coef_x, t @ self.coef_y

    def __call__(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        qx, qy = self.wcs_map(x, y)
        dx, dy = self.correction(x, y)
        return qx + dx, qy + dy

    def jacobian(self, x, y, eps: float = 0.5) -> np.ndarray:
        """``dT/dp`` (..., 2, 2) by central differences: ``[[dqx/dx, dqx/dy], [dqy/dx, dqy/dy]]``."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        xp, yp = self(x + eps, y)
        xm, ym = self(x - eps, y)
        xq, yq = self(x, y + eps)
        xn, yn = self(x, y - eps)
        j = np.empty(x.shape + (2, 2))
        j[..., 0, 0] = (xp - xm) / (2 * eps)
        j[..., 1, 0] = (yp - ym) / (2 * eps)
        j[..., 0, 1] = (xq - xn) / (2 * eps)
        j[..., 1, 1] = (yq - yn) / (2 * eps)
        return j

    def summary(self, shape) -> dict:
        """Shift (reference px at the frame centre minus the centre), rotation (deg) and scale of ``T``."""
        h, w = shape
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        qx, qy = self(np.array([cx]), np.array([cy]))
        jac = self.jacobian(np.array([cx]), np.array([cy]))[0]
        return {"shift_x": float(qx[0] - cx), "shift_y": float(qy[0] - cy),
                "rotation_deg": float(math.degrees(math.atan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1]))),
                "scale": float(math.sqrt(abs(np.linalg.det(jac))))}


# --------------------------------------------------------------------------- asterisms


def _triangles(xy: np.ndarray, neighbours: int):
    """Triangles of each star with its nearest neighbours: vertex indices (canonical order) and invariants.

    Vertices are ordered by the length of the side opposite them (longest
    first), so matched triangles give matched vertices; the invariants are
    ``(b / a, c / b)`` for sides ``a >= b >= c``: free of shift, rotation and
    scale.
    """
    from scipy.spatial import cKDTree

    n = len(xy)
    k = min(neighbours + 1, n)
    _, nn = cKDTree(xy).query(xy, k=k)
    nn = np.atleast_2d(nn)
    seen = set()
    for row in nn:
        for tri in itertools.combinations(sorted(int(i) for i in row), 3):
            seen.add(tri)
    if not seen:
        return np.zeros((0, 3), int), np.zeros((0, 2))
    tris = np.array(sorted(seen), dtype=int)
    p = xy[tris]  # (m, 3, 2)
    opposite = np.stack([np.hypot(*(p[:, 1] - p[:, 2]).T), np.hypot(*(p[:, 0] - p[:, 2]).T),
                         np.hypot(*(p[:, 0] - p[:, 1]).T)], axis=1)  # side opposite vertex 0, 1, 2
    order = np.argsort(-opposite, axis=1)
    tris = np.take_along_axis(tris, order, axis=1)
    sides = np.take_along_axis(opposite, order, axis=1)
    good = sides[:, 2] > 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.stack([sides[:, 1] / sides[:, 0], sides[:, 2] / sides[:, 1]], axis=1)
    return tris[good], inv[good]


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama) as a 2x3 matrix; None if degenerate."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var = (a * a).sum() / len(src)
    if not var > 0:
        return None
    cov = b.T @ a / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rot = u @ d @ vt
    scale = float((sv * np.diag(d)).sum() / var)
    mat = np.empty((2, 3))
    mat[:, :2] = scale * rot
    mat[:, 2] = mu_d - scale * rot @ mu_s
    return mat


def _apply(mat: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ mat[:, :2].T + mat[:, 2]


def match_asterisms(source: np.ndarray, target: np.ndarray, *, neighbours: int = 5, tolerance: float = 0.01,
                    radius: float = 3.0, max_hypotheses: int = 3000, min_matches: int = 3):
    """Pair up two star lists related by an unknown similarity transform (shift, rotation, scale).

    Parameters
    ----------
    source, target : ndarray (n, 2), (m, 2)
        Positions, brightest first (only the brightest few dozen are needed).
    neighbours, tolerance, radius, max_hypotheses, min_matches
        See :class:`RegistrationConfig` (``asterism_*``).

    Returns
    -------
    matrix : ndarray (2, 3) or None
        The similarity taking ``source`` to ``target`` refitted on its pairs.
    pairs : ndarray (k, 2) of int
        Indices ``(source, target)`` of the stars it pairs within ``radius``.
    """
    from scipy.spatial import cKDTree

    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    if len(source) < 3 or len(target) < 3:
        return None, np.zeros((0, 2), int)
    tri_s, inv_s = _triangles(source, neighbours)
    tri_t, inv_t = _triangles(target, neighbours)
    if len(tri_s) == 0 or len(tri_t) == 0:
        return None, np.zeros((0, 2), int)
    dist, idx = cKDTree(inv_s).query(inv_t, k=1, distance_upper_bound=tolerance)
    hit = np.isfinite(dist)
    order = np.argsort(dist[hit])[:max_hypotheses]
    t_ids, s_ids = np.nonzero(hit)[0][order], idx[hit][order]
    tree_t = cKDTree(target)
    best, best_count = None, 0
    for ti, si in zip(t_ids, s_ids):
        mat = _similarity(source[tri_s[si]], target[tri_t[ti]])
        if mat is None:
            continue
        d, _ = tree_t.query(_apply(mat, source), k=1, distance_upper_bound=radius)
        count = int(np.isfinite(d).sum())
        if count > best_count:
            best, best_count = mat, count
            if count >= 0.8 * min(len(source), len(target)):
                break
    if best is None or best_count < min_matches:
        return None, np.zeros((0, 2), int)
    pairs = _mutual_pairs(_apply(best, source), target, radius)
    if len(pairs) >= 3:
        refit = _similarity(source[pairs[:, 0]], target[pairs[:, 1]])
        if refit is not None:
            best = refit
            pairs = _mutual_pairs(_apply(best, source), target, radius)
    return best, pairs


def _mutual_pairs(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Index pairs (i, j): a[i] and b[j] are each other's nearest neighbour within ``radius``."""
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), int)
    d_ab, j = cKDTree(b).query(a, k=1, distance_upper_bound=radius)
    _, i_back = cKDTree(a).query(b, k=1)
    i = np.nonzero(np.isfinite(d_ab))[0]
    j = j[i]
    keep = i_back[j] == i
    return np.column_stack([i[keep], j[keep]]).astype(int)


# --------------------------------------------------------------------------- the stage


@dataclass
class RegistrationResult:
    """What :meth:`Registration.run` returns.

    Attributes
    ----------
    reference : Exposure or SurveyImage
        The reference on the science grid (same type as given), with the
        science frame's header (WCS) and ``meta['registration']``.
    transform : Transform
        Science pixel -> original reference pixel.
    rms, rms_x, rms_y : float
        Residual rms of the matched stars about the fit, science pixels
        (includes both frames' centroid noise; NaN with the WCS alone).
    fit_error : (float, float)
        Expected rms over the frame of the fitted transform's own error per
        axis (from the fit's covariance): what ZOGY's ``sigma_astrometric``
        should be.
    n_matches, n_reference_stars, n_science_stars : int
    overlap : float
        Fraction of the science frame the reference covers.
    method : str
        "asterism", "wcs+nearest" (matched around the WCS prediction) or
        "wcs" (no stars matched; ``fallback="wcs"``).
    summary : dict
        Shift, rotation and scale of the transform at the frame centre.
    matches : DataFrame
        Matched pairs: science x, y; reference x, y; residuals (px); used.
    meta : dict
        Timings (ms).
    """

    reference: Any
    transform: Transform
    rms: float
    rms_x: float
    rms_y: float
    fit_error: tuple[float, float]
    n_matches: int
    n_reference_stars: int
    n_science_stars: int
    overlap: float
    method: str
    summary: dict
    matches: Any = None
    meta: dict = field(default_factory=dict)


class Registration:
    """Register a reference onto a science frame as a configure-once stage.

    Parameters
    ----------
    config : RegistrationConfig, optional

    Examples
    --------
    >>> reg = Registration(RegistrationConfig(degree=1))
    >>> out = reg.run(reference, science)                 # doctest: +SKIP
    >>> out.reference.shape == science.shape, out.rms     # doctest: +SKIP
    """

    def __init__(self, config: RegistrationConfig | None = None):
        self.config = config or RegistrationConfig()
        self.extractor = SourceExtractor(self.config.extraction.model_copy(
            update={"background": self.config.background}))

    def __reduce__(self):
        return (type(self), (self.config,))

    def run(self, reference, science, *, reference_stars=None, science_stars=None) -> RegistrationResult:
        """Resample ``reference`` onto ``science``'s pixel grid.

        Parameters
        ----------
        reference, science : Exposure or SurveyImage
            Both with a celestial WCS in their header.
        reference_stars, science_stars : DataFrame, optional
            Star catalogues (``x, y, snr`` and optionally ``xwin, ywin``,
            ``flag``) to use instead of extracting them.

        Returns
        -------
        RegistrationResult

        Raises
        ------
        InvalidInputError
            A frame without a WCS, WCSs whose footprints do not overlap
            (``min_overlap``), or too few matched stars (``fallback="raise"``).
        """
        t0 = time.perf_counter()
        cfg = self.config
        src = getattr(science, "exposure_id", None) or None
        wcs_s = _wcs_of(science, "science frame")
        wcs_r = _wcs_of(reference, "reference")
        H, W = science.image.shape
        h_r, w_r = reference.image.shape
        transform = Transform(wcs_s, wcs_r, np.zeros(_n_terms(cfg.degree)), np.zeros(_n_terms(cfg.degree)),
                              (0.5 * (W - 1), 0.5 * (H - 1)), (max(0.5 * W, 1.0), max(0.5 * H, 1.0)), cfg.degree)
        overlap = self._overlap(transform, (H, W), (h_r, w_r))
        if overlap < cfg.min_overlap:
            raise InvalidInputError(
                f"the WCSs do not overlap enough: the reference covers {100 * overlap:.1f}% of the science frame "
                f"(need {100 * cfg.min_overlap:g}%); check that the two files show the same field", source=src)
        timings = {"wcs": 1e3 * (time.perf_counter() - t0)}

        t1 = time.perf_counter()
        cat_s = science_stars if science_stars is not None else self._stars(science, "science")
        cat_r = reference_stars if reference_stars is not None else self._stars(reference, "reference")
        p, sig_p = _positions(cat_s, cfg)
        q, sig_q = _positions(cat_r, cfg)
        timings["stars"] = 1e3 * (time.perf_counter() - t1)

        t1 = time.perf_counter()
        pairs, method = self._match(transform, p, q)
        if len(pairs) < cfg.min_matches:
            msg = (f"only {len(pairs)} stars matched between the frames (need min_matches={cfg.min_matches}; "
                   f"{len(p)} science and {len(q)} reference stars at S/N >= {cfg.min_snr:g})")
            if cfg.fallback == "raise":
                raise InvalidInputError(msg + "; set fallback='wcs' to trust the WCSs alone", source=src)
            fit = {"rms": math.nan, "rms_x": math.nan, "rms_y": math.nan, "fit_error": (math.nan, math.nan),
                   "used": np.zeros(len(pairs), bool), "resid": np.zeros((len(pairs), 2))}
            method = "wcs"
        else:
            fit = self._fit(transform, p, q, pairs, sig_p, sig_q)
            pairs = fit.pop("pairs")
        timings["match_fit"] = 1e3 * (time.perf_counter() - t1)

        t1 = time.perf_counter()
        registered = self._resample(reference, science, transform)
        timings["resample"] = 1e3 * (time.perf_counter() - t1)
        summary = transform.summary((H, W))
        import pandas as pd

        pairs = pairs if len(pairs) else np.zeros((0, 2), int)
        matches = pd.DataFrame({
            "x": p[pairs[:, 0], 0], "y": p[pairs[:, 0], 1], "x_reference": q[pairs[:, 1], 0],
            "y_reference": q[pairs[:, 1], 1], "dx": fit["resid"][:, 0], "dy": fit["resid"][:, 1], "used": fit["used"]})
        info = {"rms": fit["rms"], "fit_error": list(fit["fit_error"]), "n_matches": int(fit["used"].sum()),
                "method": method, "overlap": overlap, **summary}
        registered.meta["registration"] = info
        timings["total"] = 1e3 * (time.perf_counter() - t0)
        return RegistrationResult(reference=registered, transform=transform, rms=fit["rms"], rms_x=fit["rms_x"],
                                  rms_y=fit["rms_y"], fit_error=tuple(fit["fit_error"]),
                                  n_matches=int(fit["used"].sum()), n_reference_stars=len(q), n_science_stars=len(p),
                                  overlap=overlap, method=method, summary=summary, matches=matches,
                                  meta={"timings_ms": timings})

    __call__ = run

    # ------------------------------------------------------------------ pieces

    def _overlap(self, transform: Transform, shape_s, shape_r) -> float:
        H, W = shape_s
        h, w = shape_r
        ys = np.linspace(0, H - 1, 24)
        xs = np.linspace(0, W - 1, 24)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        qx, qy = transform.wcs_map(xx, yy)
        inside = np.isfinite(qx) & np.isfinite(qy) & (qx >= -0.5) & (qx <= w - 0.5) & (qy >= -0.5) & (qy <= h - 0.5)
        return float(inside.mean())

    def _stars(self, record, name):
        bad = (np.asarray(record.mask).astype(np.uint32) & np.uint32(self.config.bad_bits)) != 0
        background = None if record.meta.get("background_subtracted") else "estimate"
        var = np.asarray(record.variance, np.float32)
        ok = np.isfinite(var) & (var > 0)
        bad |= ~ok
        try:
            res = self.extractor.run(record.image, variance=np.where(ok, var, 1.0), mask=bad, background=background,
                                     source=getattr(record, "exposure_id", None) or name)
        except InvalidInputError as exc:
            raise InvalidInputError(f"no stars could be found in the {name}: {exc.reason}",
                                    source=getattr(record, "exposure_id", None) or None) from None
        cat = res.catalog
        if len(cat) and self.config.max_size_ratio is not None:
            from astroray.imaging.psf import adaptive_moments

            data = np.asarray(record.image, np.float64)
            if res.background is not None:
                data = data - np.asarray(res.background.background, np.float64)
            cat = cat.sort_values("snr", ascending=False).iloc[:4 * self.config.max_stars]
            s0 = float(np.median(np.sqrt(np.clip(cat["a"].to_numpy() * cat["b"].to_numpy(), 0.25, None))))
            size, _, yc, xc = adaptive_moments(data, bad, cat["x"].to_numpy(), cat["y"].to_numpy(), s0, centres=True)
            # the matched (adaptive Gaussian) centres replace SEP's windowed ones, whose window is the
            # half-light radius: wider than the PSF's core for Moffat wings, so noisier
            ok = np.isfinite(yc) & np.isfinite(xc)
            cat = cat.assign(xwin=np.where(ok, xc, cat["xwin"].to_numpy() if "xwin" in cat else cat["x"].to_numpy()),
                             ywin=np.where(ok, yc, cat["ywin"].to_numpy() if "ywin" in cat else cat["y"].to_numpy()))
            bright = np.isfinite(size)
            top = np.sort(size[bright])[: max(5, bright.sum() // 2)]  # the compact half: stars
            locus = float(np.median(top)) if top.size else np.nan
            if np.isfinite(locus):
                cat = cat[np.isfinite(size) & (size <= self.config.max_size_ratio * locus)]
        if len(cat):
            # a saturated core, a bleed trail or a cosmic ray pulls a centre: such stars do not register
            H, W = bad.shape
            r = np.clip(np.ceil(3 * cat["a"].to_numpy()), 3, 15).astype(int)
            x = np.clip(np.rint(cat["x"].to_numpy()).astype(int), 0, W - 1)
            y = np.clip(np.rint(cat["y"].to_numpy()).astype(int), 0, H - 1)
            touched = np.array([bad[max(yy - rr, 0):yy + rr + 1, max(xx - rr, 0):xx + rr + 1].any()
                                for xx, yy, rr in zip(x, y, r)], bool)
            cat = cat[~touched]
        return cat

    def _match(self, transform: Transform, p: np.ndarray, q: np.ndarray):
        """Pairs (science index, reference index), and how they were found."""
        cfg = self.config
        if len(p) == 0 or len(q) == 0:
            return np.zeros((0, 2), int), "none"
        pw = np.column_stack(transform.wcs_map(p[:, 0], p[:, 1]))
        n_s, n_r = min(cfg.asterism_stars, len(p)), min(cfg.asterism_stars, len(q))
        mat, pairs = match_asterisms(pw[:n_s], q[:n_r], neighbours=cfg.asterism_neighbours,
                                     tolerance=cfg.asterism_tolerance, radius=cfg.asterism_radius,
                                     max_hypotheses=cfg.max_hypotheses, min_matches=min(cfg.min_matches, 5))
        if mat is not None and len(pairs) >= 3:
            # the similarity carries every star across; pairs within the asterism radius seed the fit
            return _mutual_pairs(_apply(mat, pw), q, cfg.asterism_radius), "asterism"
        return _mutual_pairs(pw, q, max(cfg.match_radius, cfg.asterism_radius)), "wcs+nearest"

    def _fit(self, transform: Transform, p, q, pairs, sig_p, sig_q) -> dict:
        cfg = self.config
        used = np.ones(len(pairs), bool)
        for round_ in range(4):
            pp, qq = p[pairs[:, 0]], q[pairs[:, 1]]
            wx, wy = transform.wcs_map(pp[:, 0], pp[:, 1])
            target = np.column_stack([qq[:, 0] - wx, qq[:, 1] - wy])
            terms = transform.terms(pp[:, 0], pp[:, 1])
            # a centre's error goes as the star's size over its S/N: faint stars count for little
            weight = 1.0 / (sig_p[pairs[:, 0]] ** 2 + sig_q[pairs[:, 1]] ** 2)
            for _ in range(5):
                if used.sum() < max(cfg.min_matches, terms.shape[1] + 1):
                    raise InvalidInputError(
                        f"only {int(used.sum())} matched stars left after clipping (need "
                        f"{max(cfg.min_matches, terms.shape[1] + 1)} for a degree-{cfg.degree} fit)")
                coef = _weighted_lstsq(terms[used], target[used], weight[used])
                resid = target - terms @ coef
                z = np.hypot(resid[:, 0], resid[:, 1]) * np.sqrt(weight)  # in units of the expected error
                # a robust scale: a transient on a host or a variable's neighbour moves a centre by
                # tenths of a pixel and would inflate an rms enough to keep itself in
                z_scale = 1.4826 * float(np.median(z[used])) / 1.1774  # median of a 2-D Rayleigh is 1.1774 sigma
                new_used = z <= cfg.clip_sigma * max(z_scale, 1e-9)
                if np.array_equal(new_used, used):
                    break
                used = new_used
            transform.coef_x, transform.coef_y = coef[:, 0].copy(), coef[:, 1].copy()
            if round_ == 3:
                break
            # rematch every star with the fitted transform, in the reference frame
            tx, ty = transform(p[:, 0], p[:, 1])
            pairs = _mutual_pairs(np.column_stack([tx, ty]), q, cfg.match_radius)
            if len(pairs) < cfg.min_matches:
                raise InvalidInputError(f"only {len(pairs)} stars within match_radius={cfg.match_radius:g} px of "
                                        "the fitted transform")
            used = np.ones(len(pairs), bool)
        if cfg.select_degree:
            resid, terms = self._select_degree(transform, pp, target, weight, used, z_scale)
        # residuals in science pixels (through the inverse of the local Jacobian)
        jac = transform.jacobian(pp[:, 0], pp[:, 1])
        resid_s = np.linalg.solve(jac, resid[..., None])[..., 0]
        rms_x = math.sqrt(float((resid_s[used, 0] ** 2).mean()))
        rms_y = math.sqrt(float((resid_s[used, 1] ** 2).mean()))
        fit_error = self._fit_error(transform, terms[used], weight[used], resid[used])
        return {"pairs": pairs, "used": used, "resid": resid_s, "rms": math.hypot(rms_x, rms_y), "rms_x": rms_x,
                "rms_y": rms_y, "fit_error": fit_error}

    def _select_degree(self, transform: Transform, pp, target, weight, used, z_scale):
        """The correction's degree (0: a shift, 1: affine, ... up to ``degree``) with the lowest BIC.

        A WCS that is right but for its pointing needs a shift only; fitting six
        affine terms to it spends the stars' precision on terms that are zero.
        chi^2 is in units of the largest model's robust scatter, so the models compare.
        """
        best = None
        n = int(used.sum())
        scale2 = max(z_scale, 1e-9) ** 2
        for degree in range(0, self.config.degree + 1):
            terms = _poly_terms((pp[:, 0] - transform.centre[0]) / transform.half_size[0],
                                (pp[:, 1] - transform.centre[1]) / transform.half_size[1], degree)
            if n < terms.shape[1] + 2:
                break
            coef = _weighted_lstsq(terms[used], target[used], weight[used])
            resid = target - terms @ coef
            chi2 = float((weight[used] * (resid[used] ** 2).sum(axis=1)).sum() / scale2)
            bic = chi2 + 2 * terms.shape[1] * math.log(n)  # two axes, terms.shape[1] coefficients each
            if best is None or bic < best[0]:
                best = (bic, degree, coef, resid, terms)
        _, degree, coef, resid, terms = best
        transform.degree = degree
        transform.coef_x, transform.coef_y = coef[:, 0].copy(), coef[:, 1].copy()
        return resid, terms

    def _fit_error(self, transform: Transform, terms, weight, resid) -> tuple[float, float]:
        """rms over the frame of the transform's error, from the weighted fit's covariance."""
        n, m = terms.shape
        normal = (terms * weight[:, None]).T @ terms
        try:
            cov = np.linalg.inv(normal)
        except np.linalg.LinAlgError:
            return (math.nan, math.nan)
        dof = max(n - m, 1)
        out = []
        grid = np.linspace(-1, 1, 9)
        uu, vv = np.meshgrid(grid, grid)
        t = _poly_terms(uu.ravel(), vv.ravel(), transform.degree)
        leverage = float(np.einsum("ki,ij,kj->k", t, cov, t).mean())
        for axis in range(2):
            sigma2 = float((weight * resid[:, axis] ** 2).sum() / dof)
            out.append(math.sqrt(max(sigma2 * leverage, 0.0)))
        return tuple(out)

    def _resample(self, reference, science, transform: Transform):
        from scipy import ndimage
        from scipy.interpolate import RectBivariateSpline

        cfg = self.config
        H, W = science.image.shape
        h, w = reference.image.shape
        step = cfg.grid_step
        ys = np.unique(np.append(np.arange(0, H, step), H - 1)).astype(np.float64)
        xs = np.unique(np.append(np.arange(0, W, step), W - 1)).astype(np.float64)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        qx_c, qy_c = transform(gx, gy)
        if not (np.isfinite(qx_c).all() and np.isfinite(qy_c).all()):
            raise InvalidInputError("the WCS mapping is not finite over the science frame",
                                    source=getattr(science, "exposure_id", None) or None)
        ky, kx = min(3, len(ys) - 1), min(3, len(xs) - 1)
        spline_x = RectBivariateSpline(ys, xs, qx_c, kx=ky, ky=kx)
        spline_y = RectBivariateSpline(ys, xs, qy_c, kx=ky, ky=kx)

        mask_r = np.asarray(reference.mask).astype(np.uint32)
        img_r = np.asarray(reference.image, np.float64)
        var_r = np.asarray(reference.variance, np.float64)
        bad = ((mask_r & np.uint32(cfg.bad_bits)) != 0) | ~np.isfinite(img_r) | ~np.isfinite(var_r) | (var_r <= 0)
        if bad.all():
            raise InvalidInputError("the reference has no usable pixel to resample",
                                    source=getattr(reference, "exposure_id", None) or None)
        img_f = _fill(img_r, bad)
        var_f = _fill(var_r, bad)
        coeffs = ndimage.spline_filter(img_f, order=3, mode="mirror")
        spread = _spread_mask(mask_r, cfg.bad_bits)

        out_img = np.empty((H, W), np.float32)
        out_var = np.empty((H, W), np.float32)
        out_mask = np.empty((H, W), np.uint32)
        rows_per_block = max(1, 2_000_000 // max(W, 1))
        xcol = np.arange(W, dtype=np.float64)
        for y0 in range(0, H, rows_per_block):
            yrow = np.arange(y0, min(y0 + rows_per_block, H), dtype=np.float64)
            qx = spline_x(yrow, xcol)
            qy = spline_y(yrow, xcol)
            inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
            coords = [qy, qx]
            val = ndimage.map_coordinates(coeffs, coords, order=3, prefilter=False, mode="mirror")
            var = ndimage.map_coordinates(var_f, coords, order=1, mode="nearest")
            iy = np.clip(np.rint(qy), 0, h - 1).astype(np.intp)
            ix = np.clip(np.rint(qx), 0, w - 1).astype(np.intp)
            m = spread[iy, ix]
            if cfg.conserve_flux:
                det = np.abs(spline_x(yrow, xcol, dy=1) * spline_y(yrow, xcol, dx=1)
                             - spline_x(yrow, xcol, dx=1) * spline_y(yrow, xcol, dy=1))
                val = val * det
                var = var * det * det
            sl = slice(int(yrow[0]), int(yrow[-1]) + 1)
            out_img[sl] = np.where(inside, val, 0.0)
            out_var[sl] = np.where(inside, var, 0.0)
            out_mask[sl] = np.where(inside, m, np.uint32(MaskBits.NO_DATA))
        meta = dict(reference.meta, registered_to=getattr(science, "exposure_id", ""),
                    reference_exposure_id=getattr(reference, "exposure_id", ""))
        meta["exposure_id"] = f"{getattr(reference, 'exposure_id', '') or 'reference'}-on-" \
                              f"{getattr(science, 'exposure_id', '') or 'science'}"
        if isinstance(reference, Exposure):
            psf = _transform_stamp(np.asarray(reference.psf, np.float64), transform, (H, W))
            return Exposure(image=out_img, variance=out_var, mask=out_mask, psf=psf, header=science.header, meta=meta)
        kind = type(reference)
        kwargs = dict(image=out_img, variance=out_var, mask=out_mask, header=science.header, meta=meta)
        if getattr(reference, "psf", None) is not None:
            kwargs["psf"] = _transform_stamp(np.asarray(reference.psf, np.float64), transform, (H, W))
        return kind(**kwargs)


# --------------------------------------------------------------------------- helpers


def _n_terms(degree: int) -> int:
    return (degree + 1) * (degree + 2) // 2


def _positions(cat, cfg: RegistrationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Brightest unflagged star positions (windowed where available), brightest first, and their expected errors.

    The error is ``a / snr`` (the source's rms size over its S/N), in pixels up to a common factor.
    """
    if cat is None or len(cat) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    c = cat
    if "flag" in c:
        c = c[c["flag"].to_numpy() & 0x3 == 0]  # not deblended, not on the edge
    if "snr" in c:
        c = c[c["snr"].to_numpy() >= cfg.min_snr].sort_values("snr", ascending=False)
    c = c.iloc[:cfg.max_stars]
    x = c["xwin"].to_numpy() if "xwin" in c else c["x"].to_numpy()
    y = c["ywin"].to_numpy() if "ywin" in c else c["y"].to_numpy()
    bad = ~np.isfinite(x) | ~np.isfinite(y) | (np.abs(x - c["x"].to_numpy()) > 1) | (np.abs(y - c["y"].to_numpy()) > 1)
    x = np.where(bad, c["x"].to_numpy(), x)
    y = np.where(bad, c["y"].to_numpy(), y)
    xy = np.column_stack([x, y]).astype(np.float64)
    size = c["a"].to_numpy() if "a" in c else np.ones(len(c))
    snr = c["snr"].to_numpy() if "snr" in c else np.full(len(c), 100.0)
    sigma = np.where(np.isfinite(size) & (size > 0), size, 1.0) / np.maximum(np.where(np.isfinite(snr), snr, 1.0), 1.0)
    # a floor: no star's centre is better than ~0.01 px (pixel response, PSF asymmetry), so none dominates the fit
    sigma = np.sqrt(sigma ** 2 + 0.01 ** 2)
    ok = np.isfinite(xy).all(axis=1)
    return xy[ok], sigma[ok]


def _weighted_lstsq(terms, target, weight) -> np.ndarray:
    sw = np.sqrt(weight)[:, None]
    coef, *_ = np.linalg.lstsq(terms * sw, target * sw, rcond=None)
    return coef


def _fill(arr: np.ndarray, bad: np.ndarray, size: int = 7) -> np.ndarray:
    """``arr`` with ``bad`` pixels replaced by the mean of the good ones around them (then the global median)."""
    if not bad.any():
        return arr
    from scipy import ndimage

    good = ~bad
    vals = np.where(good, arr, 0.0)
    box = ndimage.uniform_filter(vals, size=size, mode="mirror")
    frac = ndimage.uniform_filter(good.astype(np.float64), size=size, mode="mirror")
    out = arr.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        local = np.where(frac > 1e-6, box / np.where(frac > 1e-6, frac, 1.0), np.nan)
    fallback = float(np.median(arr[good]))
    out[bad] = np.where(np.isfinite(local[bad]), local[bad], fallback)
    return out


def _spread_mask(mask: np.ndarray, bad_bits: int, radius: int = 2) -> np.ndarray:
    """The mask with each bad bit grown by ``radius`` px (the cubic interpolation's footprint)."""
    out = mask.copy()
    present = int(np.bitwise_or.reduce(mask.ravel())) if mask.size else 0
    for bit in MaskBits:
        b = int(bit)
        if b & bad_bits and b & present:
            out[grow((mask & np.uint32(b)) != 0, radius)] |= np.uint32(b)
    return out


def _transform_stamp(psf: np.ndarray, transform: Transform, shape) -> np.ndarray:
    """A reference PSF stamp seen on the science grid: the local linear map at the frame centre applied."""
    from scipy import ndimage

    H, W = shape
    jac = transform.jacobian(np.array([0.5 * (W - 1)]), np.array([0.5 * (H - 1)]))[0]
    hs, ws = psf.shape
    cy, cx = hs // 2, ws // 2
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float64)
    u, v = xx - cx, yy - cy
    src_x = jac[0, 0] * u + jac[0, 1] * v + cx
    src_y = jac[1, 0] * u + jac[1, 1] * v + cy
    out = ndimage.map_coordinates(psf, [src_y, src_x], order=3, mode="constant", cval=0.0)
    total = out.sum()
    return (out / total).astype(np.float32) if total > 0 else psf.astype(np.float32)


def register(reference, science, **options) -> RegistrationResult:
    """One-off :class:`Registration` run: ``register(ref, sci, degree=1)``."""
    return Registration(RegistrationConfig(**options)).run(reference, science)
