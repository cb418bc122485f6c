"""The sky benchmark's label-free domain statistics (what the simulator is matched to ZTF's cutouts by)."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "bench_realbogus_sky", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_realbogus_sky.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _moffat(fwhm, amplitude, size=63, beta=3.5, sub=8):
    """A centred Moffat integrated over pixels by sub-sampling."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    g = (np.arange(size * sub) + 0.5) / sub - size / 2
    x, y = np.meshgrid(g, g)
    f = (1 + (x ** 2 + y ** 2) / alpha ** 2) ** -beta
    pix = f.reshape(size, sub, size, sub).mean(axis=(1, 3))
    return amplitude * pix / pix.max()


def _stamps(fwhm, sign=1.0, n=12, crowd=0.02, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, (3, n, 63, 63)).astype(np.float32)
    bright = rng.random((n, 63, 63)) < crowd
    return {"science": noise[0] + 100.0 * bright, "reference": noise[1] + 100.0 * bright,
            "difference": noise[2] + sign * _moffat(fwhm, 200.0)}


def test_core_sharpness_orders_psf_widths_and_ignores_the_sign():
    sharp = {f: bench.domain_statistics(_stamps(f))["difference"]["core_sharpness_p10_50_90"][1]
             for f in (1.4, 2.0, 3.2)}
    # a centred source: the peak over its 3x3 from the integrated profile itself
    ref = _moffat(2.0, 1.0)
    assert abs(sharp[2.0] - ref[31, 31] / ref[30:33, 30:33].sum()) < 0.01
    assert sharp[1.4] > sharp[2.0] > sharp[3.2]
    negated = bench.domain_statistics(_stamps(2.0, sign=-1.0))["difference"]
    assert abs(negated["core_sharpness_p10_50_90"][1] - sharp[2.0]) < 0.005
    assert negated["centre_max_sigma_p10_50_90"][0] > 100


def test_crowding_is_the_fraction_of_bright_pixels():
    stats = bench.domain_statistics(_stamps(2.0, crowd=0.05))
    assert abs(stats["reference"]["fraction_above_5sigma"] - 0.05) < 0.01
    assert stats["n"] == 12
    sparse = bench.domain_statistics(_stamps(2.0, crowd=0.0))
    assert sparse["reference"]["fraction_above_5sigma"] < 0.001
    # no centre above 8 sigma: no sharpness rather than a made-up number
    flat = _stamps(2.0)
    flat["difference"] = flat["difference"] * 0 + np.random.default_rng(1).normal(size=flat["difference"].shape)
    assert bench.domain_statistics(flat)["difference"]["core_sharpness_p10_50_90"] is None
