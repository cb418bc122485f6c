"""Simulated multi-band light curves of 14 variable and transient classes, with truth.

Each object is observed with a survey's cadence (LSST ``ugrizy`` or ZTF
``gri``): seasons set by its sky position, nights lost to weather, one or two
visits a night, a single-visit 5-sigma depth per band that varies from visit to
visit.  Fluxes are in nJy (AB: ``mag = 31.4 - 2.5 log10 flux``) with per-point
errors from that depth (sky noise, source photon noise and a 0.5 % calibration
floor); points under 5 sigma are non-detections (forced photometry by default,
or upper limits with NaN flux).

Physics, per class
------------------
Extragalactic transients (SNIa, SNII, SNIbc, SLSN, TDE, KN) are a cooling
blackbody: a bolometric light curve (a smooth rise of ``rise_time`` rest-frame
days, then class-specific declines: two slopes, an SN II plateau and drop, the
TDE ``t^-5/3`` power law) times a Planck spectrum of a temperature that falls
with time, seen at redshift ``z`` (time dilation, bandpass shift, ``(1+z)``
flux-density factor, luminosity distance in flat LCDM with H0=70, Om=0.3),
dimmed by host dust (at rest wavelength) and Milky Way dust.  Redshifts follow
the comoving volume up to where the class's peak reaches the survey depth.
AGN are a damped random walk in magnitude (exact Ornstein-Uhlenbeck steps at
the observed times).  Galactic classes (RR Lyrae, Cepheid, eclipsing binary,
delta Scuti, M-dwarf flares, microlensing, long-period variables) have
periodic, eclipse, flare or Paczynski shapes with class colours and Milky Way
extinction.

Purity and speed
----------------
Objects are generated in blocks of :data:`BLOCK` objects, each block seeded
from ``(seed, block number)``, so object ``i`` is the same whatever slice it is
generated in, and work is vectorised over a whole block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numba as nb
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, field_validator
from scipy.special import expit

from astroray.config import AstrorayConfig
from astroray.errors import InvalidInputError
from astroray.records import AB_NJY_ZEROPOINT, LIGHTCURVE_SCHEMA, LightCurve

__all__ = [
    "CLASSES",
    "EXTRAGALACTIC",
    "OBSERVED_CLASS_WEIGHTS",
    "SURVEY_BANDS",
    "BLOCK",
    "LightCurveConfig",
    "LightCurveSet",
    "simulate_lightcurves",
    "simulate_lightcurve_table",
    "LIGHTCURVE_TRUTH_COLUMNS",
    "distance_modulus",
]

CLASSES = ("SNIa", "SNII", "SNIbc", "SLSN", "TDE", "KN", "AGN", "RRLyrae", "Cepheid", "EB", "DeltaScuti",
           "MdwarfFlare", "Microlensing", "LPV")
EXTRAGALACTIC = ("SNIa", "SNII", "SNIbc", "SLSN", "TDE", "KN", "AGN")
_TRANSIENTS = ("SNIa", "SNII", "SNIbc", "SLSN", "TDE", "KN")

OBSERVED_CLASS_WEIGHTS = {
    "SNIa": 0.25, "SNII": 0.12, "SNIbc": 0.04, "SLSN": 0.005, "TDE": 0.003, "KN": 0.0005, "AGN": 0.15,
    "RRLyrae": 0.08, "Cepheid": 0.02, "EB": 0.18, "DeltaScuti": 0.05, "MdwarfFlare": 0.06, "Microlensing": 0.004,
    "LPV": 0.04,
}
"""Roughly what an alert stream shows (common classes common, kilonovae very rare)."""

SURVEY_BANDS = {"lsst": "ugrizy", "ztf": "gri"}
_ALL_BANDS = "ugrizy"
_BAND_WAVELENGTH = np.array([3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0])  # Angstrom, effective
# Milky Way A_band / E(B-V) for R_V = 3.1 at those wavelengths (and a wider grid for rest frames)
_R_GRID_WAVE = np.array([1500.0, 2000.0, 3000.0, 3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0, 12500.0])
_R_GRID = np.array([8.5, 8.0, 5.8, 4.8, 3.6, 2.6, 2.0, 1.5, 1.3, 0.9])
_R_BAND = np.interp(_BAND_WAVELENGTH, _R_GRID_WAVE, _R_GRID)

# single-visit 5-sigma depths (AB) and per-band visit probabilities
_SURVEYS = {
    "lsst": dict(depth=[23.9, 25.0, 24.7, 24.0, 23.3, 22.1], band_p=[0.07, 0.10, 0.22, 0.22, 0.20, 0.19],
                 night_p=0.30, pair_p=0.6, season=200.0, bright=16.5),
    "ztf": dict(depth=[99.0, 20.8, 20.6, 20.2, 99.0, 99.0], band_p=[0.0, 0.45, 0.45, 0.10, 0.0, 0.0],
                night_p=0.45, pair_p=0.8, season=240.0, bright=13.5),
}

BLOCK = 1024
"""Objects per seeded block."""

LIGHTCURVE_TRUTH_COLUMNS = ("object_id", "label", "survey", "n_points", "n_detections", "redshift", "mwebv",
                            "host_ebv", "t0", "peak_mag", "rise_time", "decline_rate", "period", "amplitude",
                            "tau", "u0")


class LightCurveConfig(AstrorayConfig):
    """Light-curve simulation settings.

    Parameters
    ----------
    survey : {"lsst", "ztf"}
        Bands, depths and cadence.
    duration : float
        Days of survey each object is followed for.
    mjd_start : float
        First night.
    class_weights : dict or None
        Relative frequency per class (missing classes get 0); None is uniform
        over all 14.  :data:`OBSERVED_CLASS_WEIGHTS` makes rare classes rare.
    nondetections : {"forced", "upper_limit"}
        Below 5 sigma keep the forced-photometry flux (``detected=False``), or
        store an upper limit (flux NaN, ``flux_err`` = the 5-sigma limit / 5).
    depth_scatter : float
        RMS visit-to-visit scatter of the 5-sigma depth, mag.
    weather_loss : float
        Fraction of in-season nights lost.
    night_fraction : float or None
        Fraction of in-season nights the field is visited before weather
        (None: the survey's own, 0.30 for LSST, 0.45 for ZTF).
    """

    survey: Literal["lsst", "ztf"] = "lsst"
    duration: float = Field(365.0, gt=1.0, le=3650.0)
    mjd_start: float = 60000.0
    class_weights: dict[str, float] | None = None
    nondetections: Literal["forced", "upper_limit"] = "forced"
    depth_scatter: float = Field(0.25, ge=0.0, le=2.0)
    weather_loss: float = Field(0.25, ge=0.0, lt=1.0)
    night_fraction: float | None = Field(None, gt=0.0, le=1.0)

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, value):
        if value is None:
            return value
        unknown = set(value) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}; known: {', '.join(CLASSES)}")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return value

    def probabilities(self) -> np.ndarray:
        """Class probabilities in :data:`CLASSES` order."""
        if self.class_weights is None:
            return np.full(len(CLASSES), 1.0 / len(CLASSES))
        w = np.array([self.class_weights.get(c, 0.0) for c in CLASSES], dtype=np.float64)
        return w / w.sum()


@dataclass
class LightCurveSet:
    """Light curves and their truth table (one row per object, same order)."""

    lightcurves: list[LightCurve]
    truth: pd.DataFrame


def simulate_lightcurves(n: int, *, config: LightCurveConfig | None = None, seed: int = 0,
                         start: int = 0) -> LightCurveSet:
    """Simulate objects ``start .. start + n - 1`` as :class:`~astroray.records.LightCurve` objects.

    Object ``i`` depends only on ``(config, seed, i)``.  Each light curve has
    ``label`` (one of :data:`CLASSES`), ``survey`` and meta ``redshift`` and
    ``mwebv`` (what a broker has as host photo-z and dust map).

    Parameters
    ----------
    n : int
        Number of objects (>= 0).
    config : LightCurveConfig, optional
    seed, start : int
        Non-negative.

    Returns
    -------
    LightCurveSet
    """
    config, n, seed, start = _check(config, n, seed, start)
    flat, truth = _simulate(config, n, seed, start)
    lcs = []
    bands = np.array(list(_ALL_BANDS))[flat["band"]]
    bounds = flat["offsets"].tolist()
    mjd, flux, err, det = flat["mjd"], flat["flux"], flat["flux_err"], flat["detected"]
    for k, (oid, label, z, ebv) in enumerate(zip(truth["object_id"].tolist(), truth["label"].tolist(),
                                                 truth["redshift"].tolist(), truth["mwebv"].tolist())):
        a, b = bounds[k], bounds[k + 1]
        lcs.append(LightCurve(oid, mjd[a:b], bands[a:b], flux[a:b], err[a:b], det[a:b], survey=config.survey,
                              label=label, meta={"redshift": z, "mwebv": ebv}))
    return LightCurveSet(lcs, truth)


def simulate_lightcurve_table(n: int, *, config: LightCurveConfig | None = None, seed: int = 0,
                              start: int = 0) -> tuple[pa.Table, pd.DataFrame]:
    """As :func:`simulate_lightcurves`, straight to an Arrow table (:data:`~astroray.records.LIGHTCURVE_SCHEMA`).

    No per-object Python objects are made, so this is the form to use at scale
    (Ray Data, Parquet).  Returns ``(table, truth)``.
    """
    config, n, seed, start = _check(config, n, seed, start)
    flat, truth = _simulate(config, n, seed, start)
    offsets = pa.array(flat["offsets"].astype(np.int32))
    flux = flat["flux"]
    valid = pa.array(~np.isnan(flux)) if np.isnan(flux).any() else None
    flux_arr = pa.array(flux, mask=None if valid is None else np.isnan(flux))
    band_values = pa.array(np.array(list(_ALL_BANDS), dtype=object)[flat["band"]], type=pa.string())
    cols = {
        "object_id": pa.array(truth["object_id"].tolist(), pa.string()),
        "survey": pa.array([config.survey] * n, pa.string()),
        "label": pa.array(truth["label"].tolist(), pa.string()),
        "mjd": pa.ListArray.from_arrays(offsets, pa.array(flat["mjd"])),
        "band": pa.ListArray.from_arrays(offsets, band_values),
        "flux": pa.ListArray.from_arrays(offsets, flux_arr),
        "flux_err": pa.ListArray.from_arrays(offsets, pa.array(flat["flux_err"])),
        "detected": pa.ListArray.from_arrays(offsets, pa.array(flat["detected"])),
    }
    return pa.table(cols, schema=LIGHTCURVE_SCHEMA), truth


def _check(config, n, seed, start):
    if config is None:
        config = LightCurveConfig()
    if not isinstance(config, LightCurveConfig):
        raise InvalidInputError(f"config must be a LightCurveConfig, got {type(config).__name__}")
    for name, value in (("n", n), ("seed", seed), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return config, int(n), int(seed), int(start)


def _simulate(config, n, seed, start):
    parts, truths = [], []
    first, last = start // BLOCK, (start + n - 1) // BLOCK if n else start // BLOCK - 1
    for block in range(first, last + 1):
        lo = max(start, block * BLOCK) - block * BLOCK
        hi = min(start + n, (block + 1) * BLOCK) - block * BLOCK
        flat, truth = _simulate_block(config, seed, block)
        a, b = flat["offsets"][lo], flat["offsets"][hi]
        parts.append({k: v[a:b] for k, v in flat.items() if k != "offsets"} | {
            "counts": np.diff(flat["offsets"][lo:hi + 1])})
        truths.append(truth.iloc[lo:hi])
    if not parts:
        empty = {"mjd": np.zeros(0), "band": np.zeros(0, np.int64), "flux": np.zeros(0),
                 "flux_err": np.zeros(0), "detected": np.zeros(0, bool), "offsets": np.zeros(1, np.int64)}
        return empty, pd.DataFrame({c: [] for c in LIGHTCURVE_TRUTH_COLUMNS})
    flat = {k: np.concatenate([p[k] for p in parts]) for k in ("mjd", "band", "flux", "flux_err", "detected")}
    counts = np.concatenate([p["counts"] for p in parts])
    flat["offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    truth = pd.concat(truths, ignore_index=True)
    return flat, truth


# --------------------------------------------------------------------------- cosmology, spectra

_C_KM_S = 299792.458
_H0, _OM = 70.0, 0.3
_Z_GRID = np.linspace(0.0, 4.0, 4001)
_DC_GRID = np.concatenate([[0.0], np.cumsum(
    0.5 * np.diff(_Z_GRID) * (1 / np.sqrt(_OM * (1 + _Z_GRID[1:]) ** 3 + 1 - _OM)
                              + 1 / np.sqrt(_OM * (1 + _Z_GRID[:-1]) ** 3 + 1 - _OM)))]) * _C_KM_S / _H0  # Mpc


def distance_modulus(z):
    """Distance modulus in flat LCDM (H0=70, Om=0.3)."""
    z = np.asarray(z, np.float64)
    dl = (1 + z) * np.interp(z, _Z_GRID, _DC_GRID)
    return 5.0 * np.log10(np.maximum(dl, 1e-6) * 1e5)


def _planck_nu(wave_angstrom, temperature):
    """B_nu up to a constant: nu^3 / (exp(h nu / k T) - 1), nu in units of c / 1 Angstrom."""
    x = 1.4388e8 / (wave_angstrom * temperature)  # h c / (lambda k T), lambda in Angstrom
    return (1.0 / wave_angstrom) ** 3 / np.expm1(np.minimum(x, 700.0))


def _z_limit(abs_peak, depth):
    """Redshift where a source of this absolute peak magnitude reaches ``depth``."""
    mu = distance_modulus(_Z_GRID[1:])
    return float(np.interp(depth - abs_peak, mu, _Z_GRID[1:]))


# class parameters of the transient model (rest frame):
# M_peak mean/sd at 5000 A; rise range (days); slope1 range (mag/day), its duration tau1; slope2;
# plateau drop (mag) and width; power-law t0 range (0 = none); T_peak range, T_late, cooling time (days)
_TRANSIENT_PARAMS = {
    "SNIa": dict(M=(-19.3, 0.15), rise=(15.0, 21.0), s1=(0.06, 0.09), tau1=(25.0, 30.0), s2=(0.013, 0.017),
                 drop=(0.0, 0.0), t0=(0.0, 0.0), T=(9500.0, 11500.0), T_late=5500.0, cool=20.0, zmin=0.01),
    "SNII": dict(M=(-17.0, 0.8), rise=(5.0, 12.0), s1=(0.003, 0.015), tau1=(70.0, 120.0), s2=(0.0098, 0.0098),
                 drop=(1.5, 3.0), t0=(0.0, 0.0), T=(12000.0, 16000.0), T_late=6000.0, cool=15.0, zmin=0.005),
    "SNIbc": dict(M=(-17.6, 0.6), rise=(10.0, 20.0), s1=(0.06, 0.10), tau1=(20.0, 30.0), s2=(0.015, 0.025),
                  drop=(0.0, 0.0), t0=(0.0, 0.0), T=(8000.0, 10000.0), T_late=5000.0, cool=15.0, zmin=0.005),
    "SLSN": dict(M=(-21.0, 0.6), rise=(25.0, 60.0), s1=(0.015, 0.04), tau1=(80.0, 120.0), s2=(0.015, 0.025),
                 drop=(0.0, 0.0), t0=(0.0, 0.0), T=(13000.0, 17000.0), T_late=8000.0, cool=60.0, zmin=0.05),
    "TDE": dict(M=(-19.5, 0.7), rise=(15.0, 40.0), s1=(0.0, 0.0), tau1=(1e4, 1e4), s2=(0.0, 0.0),
                drop=(0.0, 0.0), t0=(20.0, 60.0), T=(20000.0, 40000.0), T_late=-1.0, cool=1e9, zmin=0.01),
    "KN": dict(M=(-16.0, 0.7), rise=(0.5, 1.5), s1=(0.5, 1.0), tau1=(1e4, 1e4), s2=(0.0, 0.0),
               drop=(0.0, 0.0), t0=(0.0, 0.0), T=(5500.0, 7000.0), T_late=2500.0, cool=2.0, zmin=0.003),
}

# colours relative to r (u g r i z y) and variability-amplitude factors per band
_COLOURS = {
    "AGN": [0.4, 0.2, 0.0, -0.1, -0.1, -0.1],
    "RRLyrae": [1.2, 0.25, 0.0, -0.1, -0.15, -0.2],
    "Cepheid": [1.6, 0.5, 0.0, -0.25, -0.35, -0.4],
    "EB": [1.4, 0.4, 0.0, -0.15, -0.2, -0.25],
    "DeltaScuti": [1.1, 0.2, 0.0, -0.05, -0.1, -0.12],
    "MdwarfFlare": [4.0, 1.4, 0.0, -1.4, -2.1, -2.5],
    "Microlensing": [1.5, 0.5, 0.0, -0.2, -0.3, -0.35],
    "LPV": [4.5, 1.6, 0.0, -1.3, -2.2, -2.8],
}
_AMP_PULSATOR = np.array([1.25, 1.15, 1.0, 0.8, 0.7, 0.65])
_AMP_LPV = np.array([2.0, 1.6, 1.0, 0.6, 0.4, 0.3])
_AMP_AGN = np.array([1.3, 1.15, 1.0, 0.9, 0.85, 0.8])


# --------------------------------------------------------------------------- one block


def _simulate_block(config: LightCurveConfig, seed: int, block: int):
    ss = np.random.SeedSequence([seed, 0x4C43], spawn_key=(block,))
    rng_cls, rng_cad, rng_par, rng_noise = (np.random.default_rng(s) for s in ss.spawn(4))
    m = BLOCK
    survey = _SURVEYS[config.survey]
    cls = rng_cls.choice(len(CLASSES), m, p=config.probabilities())

    # ---- cadence: seasons by sky position, weather, one or two visits a night
    n_nights = int(math.ceil(config.duration))
    season_start = rng_cad.uniform(0.0, 365.25, m)
    # integer nights and float32 draws: this (objects x nights) mask is the block's largest array
    nights = np.arange(n_nights, dtype=np.int32)
    first = np.floor(season_start).astype(np.int32)
    in_season = ((nights[None, :] - first[:, None]) % 365) < int(survey["season"])
    night_p = survey["night_p"] if config.night_fraction is None else config.night_fraction
    p_obs = night_p * (1.0 - config.weather_loss)
    observed = in_season & (rng_cad.random((m, n_nights), dtype=np.float32) < np.float32(p_obs))
    obj, night = np.nonzero(observed)  # row-major: grouped by object, nights in order
    night_time = config.mjd_start + night + rng_cad.uniform(0.05, 0.3, len(obj))
    pair = rng_cad.random(len(obj)) < survey["pair_p"]
    n_visit = 1 + pair
    obj = np.repeat(obj, n_visit)
    mjd = np.repeat(night_time, n_visit)
    second = np.zeros(len(obj), bool)
    second[np.cumsum(n_visit)[pair] - 1] = True
    mjd = mjd + np.where(second, rng_cad.uniform(0.015, 0.04, len(obj)), 0.0)  # a pair 20-60 min apart
    band = rng_cad.choice(6, len(obj), p=survey["band_p"])
    counts = np.bincount(obj, minlength=m)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    # ---- per-object parameters and true fluxes
    n_pts = len(obj)
    flux_true = np.zeros(n_pts)
    truth = {c: np.full(m, np.nan) for c in ("redshift", "mwebv", "host_ebv", "t0", "peak_mag", "rise_time",
                                             "decline_rate", "period", "amplitude", "tau", "u0")}
    t_lo = config.mjd_start + 0.15 * config.duration
    t_hi = config.mjd_start + 0.85 * config.duration
    depth_r = survey["depth"][2]
    for ci, name in enumerate(CLASSES):
        objs = np.nonzero(cls == ci)[0]
        if len(objs) == 0:
            continue
        pts = np.nonzero(cls[obj] == ci)[0]
        local = np.searchsorted(objs, obj[pts])  # index of each point's object within this class
        k = len(objs)
        mwebv = (rng_par.exponential(0.04, k) if name in EXTRAGALACTIC
                 else np.exp(rng_par.uniform(math.log(0.02), math.log(0.8), k)))
        truth["mwebv"][objs] = mwebv
        if name in _TRANSIENTS:
            # peak inside the object's observing season, so the survey sees the event
            season_phase = rng_par.uniform(0.1, 0.7, k) * survey["season"]
            year = rng_par.integers(0, max(int(math.ceil(config.duration / 365.25)), 1), k)
            t_peak = config.mjd_start + 365.25 * year + (season_start[objs] + season_phase) % 365.25
            t_peak = np.where(t_peak > config.mjd_start + config.duration, rng_par.uniform(t_lo, t_hi, k), t_peak)
            flux_true[pts] = _transient(rng_par, name, k, local, mjd[pts], band[pts], t_peak, depth_r,
                                        truth, objs, mwebv)
        else:
            bright = survey["bright"]
            if name == "AGN":
                mag_r = rng_par.uniform(max(bright, 16.5), depth_r - 1.0, k)
            else:
                mag_r = rng_par.uniform(bright, depth_r - 0.8, k)
            base = mag_r[local] + np.asarray(_COLOURS[name])[band[pts]] + _R_BAND[band[pts]] * mwebv[local]
            truth["peak_mag"][objs] = mag_r
            flux_true[pts] = _variable(rng_par, name, k, local, mjd[pts], band[pts], base, truth, objs, t_lo, t_hi,
                                       config.duration)

    # ---- noise from the 5-sigma depth
    depth = np.asarray(survey["depth"])[band] + rng_noise.normal(0.0, config.depth_scatter, n_pts)
    f5 = 10.0 ** (-0.4 * (depth - AB_NJY_ZEROPOINT))
    sky_sigma = f5 / 5.0
    sigma = np.sqrt(sky_sigma ** 2 * (1.0 + 0.035 * np.maximum(flux_true, 0.0) / f5) + (0.005 * flux_true) ** 2)
    flux = flux_true + sigma * rng_noise.standard_normal(n_pts)
    detected = flux / sigma >= 5.0
    if config.nondetections == "upper_limit":
        flux = np.where(detected, flux, np.nan)
        sigma = np.where(detected, sigma, sky_sigma)

    ids = np.arange(block * BLOCK, (block + 1) * BLOCK)
    frame = pd.DataFrame({
        "object_id": [f"sim{config.survey}-s{seed}-{i:09d}" for i in ids],
        "label": np.array(CLASSES, dtype=object)[cls],
        "survey": config.survey,
        "n_points": counts,
        "n_detections": np.bincount(obj, weights=detected, minlength=m).astype(np.int64),
        **truth,
    }, columns=list(LIGHTCURVE_TRUTH_COLUMNS))
    frame["redshift"] = frame["redshift"].fillna(0.0)
    frame["host_ebv"] = frame["host_ebv"].fillna(0.0)
    flat = {"mjd": mjd, "band": band, "flux": flux, "flux_err": sigma, "detected": detected, "offsets": offsets}
    return flat, frame


def _transient(rng, name, k, local, t, band, t_peak, depth_r, truth, objs, mwebv):
    p = _TRANSIENT_PARAMS[name]
    M = rng.normal(p["M"][0], p["M"][1], k)
    # volumetric redshifts (p(z) ~ z^2) out to where a typical peak is a magnitude above the
    # single-visit depth: the population a survey detects and follows
    zmax = max(_z_limit(p["M"][0], depth_r - 1.0), p["zmin"] * 2)
    z = (p["zmin"] ** 3 + rng.random(k) * (zmax ** 3 - p["zmin"] ** 3)) ** (1.0 / 3.0)
    host = rng.exponential(0.1, k) if name != "TDE" else rng.exponential(0.03, k)
    rise = rng.uniform(*p["rise"], k)
    s1 = rng.uniform(*p["s1"], k)
    tau1 = rng.uniform(*p["tau1"], k)
    s2 = rng.uniform(*p["s2"], k)
    drop = rng.uniform(*p["drop"], k)
    t0_pl = rng.uniform(*p["t0"], k)
    T_peak = rng.uniform(*p["T"], k)
    T_late = T_peak if p["T_late"] < 0 else np.full(k, p["T_late"])
    truth["redshift"][objs] = z
    truth["host_ebv"][objs] = host
    truth["t0"][objs] = t_peak
    truth["rise_time"][objs] = rise
    truth["decline_rate"][objs] = s1
    truth["tau"][objs] = np.where(t0_pl > 0, t0_pl, tau1)

    zp = z[local]
    phase = (t - t_peak[local]) / (1.0 + zp)  # rest-frame days from peak
    # bolometric shape: smooth rise x^2 (3 - 2x) from explosion (x=0) to peak (x=1)
    x = np.clip(1.0 + phase / rise[local], 0.0, 1.0)
    rise_shape = x * x * (3.0 - 2.0 * x)
    after = np.maximum(phase, 0.0)
    dmag = s1[local] * np.minimum(after, tau1[local]) + s2[local] * np.maximum(after - tau1[local], 0.0)
    if p["drop"][1] > 0:  # the SN II fall off the plateau, a logistic step of `drop` mag
        dmag = dmag + drop[local] * (expit((after - tau1[local]) / 5.0) - expit(-tau1[local] / 5.0))
    if p["t0"][1] > 0:  # TDE fallback: L ~ (1 + t / t0)^(-5/3)
        dmag = dmag + (2.5 * 5.0 / 3.0) * np.log10(1.0 + after / t0_pl[local])
    lum = np.where(phase < 0, rise_shape, 10.0 ** (-0.4 * dmag))
    temp = T_late[local] + (T_peak[local] - T_late[local]) * np.exp(-after / p["cool"])
    rest_wave = _BAND_WAVELENGTH[band] / (1.0 + zp)
    sed = _planck_nu(rest_wave, temp) / temp ** 4
    sed_peak = _planck_nu(5000.0, T_peak[local]) / T_peak[local] ** 4
    f_peak = 10.0 ** (-0.4 * (M[local] + distance_modulus(zp) - AB_NJY_ZEROPOINT))
    a_host = np.interp(rest_wave, _R_GRID_WAVE, _R_GRID) * host[local]
    a_mw = _R_BAND[band] * mwebv[local]
    flux = (1.0 + zp) * f_peak * lum * sed / sed_peak * 10.0 ** (-0.4 * (a_host + a_mw))
    # observed peak magnitude in r (at the time of peak, with dust)
    wave_r = _BAND_WAVELENGTH[2] / (1.0 + z)
    f_r = ((1.0 + z) * 10.0 ** (-0.4 * (M + distance_modulus(z) - AB_NJY_ZEROPOINT))
           * (_planck_nu(wave_r, T_peak) / _planck_nu(5000.0, T_peak))
           * 10.0 ** (-0.4 * (np.interp(wave_r, _R_GRID_WAVE, _R_GRID) * host + _R_BAND[2] * mwebv)))
    truth["peak_mag"][objs] = AB_NJY_ZEROPOINT - 2.5 * np.log10(f_r)
    return flux


def _sawtooth(phase, rise_fraction):
    """Brightness in [0, 1]: a fast linear rise over ``rise_fraction`` of the cycle, a curved decline."""
    ph = phase % 1.0
    return np.where(ph < rise_fraction, ph / rise_fraction, ((1.0 - ph) / (1.0 - rise_fraction)) ** 1.5)


def _variable(rng, name, k, local, t, band, base_mag, truth, objs, t_lo, t_hi, duration):
    """Galactic variables and AGN: magnitude (or flux) variations about ``base_mag``."""
    if name == "RRLyrae":
        is_c = rng.random(k) < 0.3  # first-overtone (RRc) stars
        period = np.where(is_c, rng.uniform(0.22, 0.42, k), rng.uniform(0.45, 0.85, k))
        amp = np.where(is_c, rng.uniform(0.25, 0.5, k), rng.uniform(0.5, 1.2, k))
        epoch = rng.uniform(0, 1, k)
        shape = np.where(is_c[local], 0.5 + 0.5 * np.sin(2 * np.pi * (t / period[local] + epoch[local])),
                         _sawtooth(t / period[local] + epoch[local], 0.15))
        dmag = -amp[local] * _AMP_PULSATOR[band] * (shape - 0.5)
        truth["period"][objs], truth["amplitude"][objs] = period, amp
    elif name == "Cepheid":
        period = np.exp(rng.uniform(math.log(3.0), math.log(50.0), k))
        amp = rng.uniform(0.3, 1.0, k)
        epoch = rng.uniform(0, 1, k)
        dmag = -amp[local] * _AMP_PULSATOR[band] * (_sawtooth(t / period[local] + epoch[local], 0.3) - 0.5)
        truth["period"][objs], truth["amplitude"][objs] = period, amp
    elif name == "DeltaScuti":
        period = np.exp(rng.uniform(math.log(0.03), math.log(0.25), k))
        amp = np.exp(rng.uniform(math.log(0.02), math.log(0.3), k))
        epoch = rng.uniform(0, 1, k)
        arg = 2 * np.pi * (t / period[local] + epoch[local])
        dmag = -amp[local] * _AMP_PULSATOR[band] * 0.5 * (0.8 * np.sin(arg) + 0.2 * np.sin(2 * arg + 0.7)) / 0.9
        truth["period"][objs], truth["amplitude"][objs] = period, amp
    elif name == "LPV":
        period = rng.uniform(100.0, 500.0, k)
        amp = rng.uniform(1.0, 4.0, k)
        epoch = rng.uniform(0, 1, k)
        arg = 2 * np.pi * (t / period[local] + epoch[local])
        dmag = -amp[local] * _AMP_LPV[band] * 0.5 * (0.85 * np.sin(arg) + 0.15 * np.sin(2 * arg)) / 0.95
        truth["period"][objs], truth["amplitude"][objs] = period, amp
    elif name == "EB":
        period = np.exp(rng.uniform(math.log(0.3), math.log(10.0), k))
        depth1 = rng.uniform(0.1, 0.8, k)
        depth2 = depth1 * rng.uniform(0.05, 0.9, k)
        width = rng.uniform(0.02, 0.08, k)
        epoch = rng.uniform(0, 1, k)
        ph = (t / period[local] + epoch[local]) % 1.0
        d1 = np.minimum(ph, 1.0 - ph)
        d2 = np.abs(ph - 0.5)
        rel = (1.0 - depth1[local] * np.exp(-0.5 * (d1 / width[local]) ** 2)
               - depth2[local] * np.exp(-0.5 * (d2 / width[local]) ** 2) + 0.02 * np.cos(4 * np.pi * ph))
        dmag = -2.5 * np.log10(np.clip(rel, 0.05, None))
        truth["period"][objs], truth["amplitude"][objs] = period, -2.5 * np.log10(1.0 - depth1)
    elif name == "Microlensing":
        t0 = rng.uniform(t_lo, t_hi, k)
        t_e = np.clip(np.exp(rng.normal(math.log(25.0), 0.6, k)), 3.0, 300.0)
        u0 = rng.uniform(0.02, 1.0, k)
        blend = rng.uniform(0.2, 1.0, k)  # source flux fraction
        u = np.sqrt(u0[local] ** 2 + ((t - t0[local]) / t_e[local]) ** 2)
        magnification = (u * u + 2.0) / (u * np.sqrt(u * u + 4.0))
        dmag = -2.5 * np.log10(blend[local] * magnification + 1.0 - blend[local])
        truth["t0"][objs], truth["tau"][objs], truth["u0"][objs] = t0, t_e, u0
        u_peak = u0
        truth["amplitude"][objs] = 2.5 * np.log10(blend * (u_peak ** 2 + 2) / (u_peak * np.sqrt(u_peak ** 2 + 4))
                                                  + 1 - blend)
    elif name == "AGN":
        z = (0.1 ** 3 + rng.random(k) * (3.0 ** 3 - 0.1 ** 3)) ** (1.0 / 3.0)
        tau_rest = np.exp(rng.normal(math.log(200.0), 0.5, k))
        sf_inf = rng.uniform(0.1, 0.35, k)
        tau_obs = tau_rest * (1.0 + z)
        x = _drw(t, local, tau_obs, sf_inf / math.sqrt(2.0), rng.standard_normal(len(t)))
        dmag = x * _AMP_AGN[band]
        truth["redshift"][objs], truth["tau"][objs], truth["amplitude"][objs] = z, tau_obs, sf_inf
    elif name == "MdwarfFlare":
        return _flares(rng, k, local, t, band, base_mag, truth, objs, duration)
    else:  # pragma: no cover - CLASSES and the branches above are kept in step
        raise AssertionError(name)
    return 10.0 ** (-0.4 * (base_mag + dmag - AB_NJY_ZEROPOINT))


@nb.njit(cache=True)
def _drw_core(t, group, tau, sigma, normals):
    """Ornstein-Uhlenbeck (damped random walk) values at sorted times per group."""
    out = np.empty(t.shape[0])
    for i in range(t.shape[0]):
        g = group[i]
        if i == 0 or group[i - 1] != g:
            out[i] = sigma[g] * normals[i]  # stationary start
        else:
            a = math.exp(-(t[i] - t[i - 1]) / tau[g])
            out[i] = out[i - 1] * a + sigma[g] * math.sqrt(1.0 - a * a) * normals[i]
    return out


def _drw(t, local, tau, sigma, normals):
    return _drw_core(np.ascontiguousarray(t), np.ascontiguousarray(local), np.ascontiguousarray(tau),
                     np.ascontiguousarray(sigma), np.ascontiguousarray(normals))


def _flares(rng, k, local, t, band, base_mag, truth, objs, duration):
    """Quiescent M dwarf plus flares: random ones (~7 a year) and one caught at an observed visit."""
    quiescent = 10.0 ** (-0.4 * (base_mag - AB_NJY_ZEROPOINT))
    n_random = rng.poisson(0.02 * duration, k)
    n_flare = n_random + 1
    kmax = int(n_flare.max())
    starts = np.searchsorted(local, np.arange(k))
    ends = np.searchsorted(local, np.arange(k), side="right")
    peak = np.full((k, kmax), np.nan)
    has_pts = ends > starts
    # the caught flare peaks shortly before a random visit of the star
    pick = starts + (rng.random(k) * np.maximum(ends - starts, 1)).astype(np.int64)
    pick = np.minimum(pick, len(t) - 1) if len(t) else pick
    decay = rng.uniform(0.005, 0.05, (k, kmax))
    if len(t):
        peak[:, 0] = np.where(has_pts, t[pick] - rng.uniform(0.0, 1.0, k) * decay[:, 0], np.nan)
    t_span_lo, t_span_hi = (t.min(), t.max()) if len(t) else (0.0, 1.0)
    extra = rng.uniform(t_span_lo, t_span_hi, (k, kmax))
    col = np.arange(kmax)[None, :]
    peak = np.where((col >= 1) & (col < n_flare[:, None]), extra, peak)
    amp_g = 10.0 ** (0.4 * rng.uniform(0.5, 4.0, (k, kmax))) - 1.0  # g-band brightening factor
    g_flux = 10.0 ** (-0.4 * (base_mag - AB_NJY_ZEROPOINT))  # per point, in its own band
    # flare spectrum: a 9000 K blackbody, scaled so the g brightening is amp_g times quiescent g
    colour_g = np.asarray(_COLOURS["MdwarfFlare"])[1] - np.asarray(_COLOURS["MdwarfFlare"])[band]
    quiescent_g = g_flux * 10.0 ** (-0.4 * colour_g)
    bb_ratio = _planck_nu(_BAND_WAVELENGTH[band], 9000.0) / _planck_nu(_BAND_WAVELENGTH[1], 9000.0)
    total = np.zeros(len(t))
    for j in range(kmax):
        dt = t - peak[local, j]
        valid = np.isfinite(dt)
        tau = decay[local, j]
        dt = np.where(valid, dt, -1e3)
        # a fast rise (a tenth of the decay time), then an exponential decay
        shape = np.exp(np.where(dt >= 0, -dt / tau, np.maximum(dt / (0.1 * tau), -700.0)))
        total += np.where(valid, amp_g[local, j] * shape, 0.0)
    truth["t0"][objs] = peak[:, 0]
    truth["amplitude"][objs] = 2.5 * np.log10(1.0 + amp_g[:, 0])
    truth["tau"][objs] = decay[:, 0]
    return quiescent + quiescent_g * bb_ratio * total
