"""Cutouts and the PSF-likeness score against direct computation."""
import numpy as np
import pytest

from astroray.errors import InvalidInputError
from astroray.imaging.cutouts import cutouts, psf_likeness


def test_cutouts_match_slices_and_fill_off_edge():
    img = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    st = cutouts(img, [40, 2.4, 79], [50, 3.6, 99], size=7)
    assert st.shape == (3, 7, 7)
    np.testing.assert_array_equal(st[0], img[47:54, 37:44])
    assert np.isnan(st[1][0, 0]) and st[1][3, 3] == img[4, 2]
    np.testing.assert_array_equal(st[2][:4, :4], img[96:100, 76:80])
    assert np.isnan(st[2][4:, :]).all() and np.isnan(st[2][:, 4:]).all()
    with pytest.raises(InvalidInputError):
        cutouts(img, [1], [1], size=8)


def test_psf_likeness_ranks_point_above_dipole_and_cosmic():
    yy, xx = np.mgrid[-10:11, -10:11]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2))
    psf /= psf.sum()
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (3, 21, 21))
    point = psf * 10
    dipole = (np.roll(psf, 2, axis=1) - np.roll(psf, -2, axis=1)) * 10
    cosmic = np.zeros_like(psf)
    cosmic[10, 10] = 5
    score = psf_likeness(np.stack([point, dipole, cosmic]) + noise, psf)
    assert score[0] > 0.9 and score[1] < 0.3 and score[2] < 0.5
