"""Cutout decoding: the direct float-image path against astropy on every real stamp, and the fallbacks."""
from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astroray.errors import InvalidAlertError
from astroray.io.cutouts import decode_cutout

STAMP_FILES = {
    "alerts/fink/alerts.parquet": True,  # ZTF: {fileName, stampData} structs, gzipped FITS
    "alerts/fink/hostless_detection/rubin_sample_data_10_0.parquet": False,  # Rubin: plain FITS bytes
}


def _astropy_pixels(blob: bytes) -> np.ndarray:
    raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(raw)) as hdus:
            return np.asarray(hdus[0].data, dtype=np.float32)


@pytest.mark.parametrize("rel", list(STAMP_FILES))
def test_every_real_stamp_matches_astropy(shared_data, rel):
    rows = pq.read_table(shared_data / rel, columns=["cutoutScience", "cutoutTemplate",
                                                     "cutoutDifference"]).to_pylist()
    blobs = [(v["stampData"] if STAMP_FILES[rel] else v) for r in rows for v in r.values() if v is not None]
    assert len(blobs) >= 3 * 25
    for blob in blobs:
        ours = decode_cutout(blob)
        ref = _astropy_pixels(blob)
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref)


def test_scaled_integer_stamp_goes_through_astropy():
    pixels = np.arange(63 * 63, dtype=np.float64).reshape(63, 63) * 0.5 + 100.0
    hdu = fits.PrimaryHDU(pixels.astype(np.float32))
    hdu.scale("int16", bscale=0.5, bzero=100.0)
    buf = io.BytesIO()
    hdu.writeto(buf)
    out = decode_cutout(gzip.compress(buf.getvalue()))
    np.testing.assert_allclose(out, pixels, rtol=0, atol=1e-3)


def test_truncated_and_empty_stamps(shared_data):
    row = pq.read_table(shared_data / "alerts/fink/alerts.parquet", columns=["cutoutScience"]).slice(0, 1)
    blob = row.to_pylist()[0]["cutoutScience"]["stampData"]
    raw = gzip.decompress(blob)
    with pytest.raises(InvalidAlertError, match="alert-7: cutoutScience is not a readable FITS image"):
        decode_cutout(gzip.compress(raw[: len(raw) - 5000]), source="alert-7", label="cutoutScience")
    with pytest.raises(InvalidAlertError, match="cutoutDifference is empty"):
        decode_cutout(b"", label="cutoutDifference")
