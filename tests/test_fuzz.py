"""The fuzz corpus read by every reader and `io check` under a deadline and a memory cap; Hypothesis on the readers.

The corpus test reads ~200 corrupted variants in a worker process whose address
space is capped (RLIMIT_AS) and whose every read has a deadline, and requires:
0 hangs, 0 untyped errors, 0 reads past the memory cap, 0 crashes, and no
silent acceptance of a case that must be refused.
"""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astroray.errors import InvalidInputError
from astroray.testing.fuzz import FuzzLimits, build_corpus, run_corpus, summarize


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    return root, build_corpus(root, shared=shared_data, seed=0)


def test_corpus_covers_every_format_and_kind_of_damage(corpus):
    _, variants = corpus
    assert len(variants) >= 150
    families = {v.family for v in variants}
    assert {"truncation", "bitflip", "header-lie", "bomb", "schema", "values", "odd-file"} <= families
    suffixes = {v.name.split("/")[-1].split(".", 1)[-1].lower() for v in variants}
    assert {"fits", "fits.gz", "fits.fz", "avro", "json", "parquet", "csv", "csv.gz", "avsc"} <= suffixes
    assert {v.reader for v in variants} == {"exposure", "image", "alerts", "lightcurves", "table", "check"}
    assert sum(v.must_refuse for v in variants) >= 60


def test_corpus_no_hang_no_untyped_error_no_memory_blowup_no_silent_acceptance(corpus):
    root, variants = corpus
    limits = FuzzLimits(timeout_s=20.0, memory_mb=768, max_decompressed_mb=64.0)
    results = run_corpus(root, variants, limits=limits)
    summary = summarize(results)
    print(json.dumps({k: summary[k] for k in ("n_variants", "n_must_refuse", "outcomes", "slowest")}))
    assert summary["n_variants"] == len(variants) >= 150
    for key in ("read", "check"):
        counts = summary["outcomes"][key]
        assert counts["hang"] == counts["untyped"] == counts["memory"] == counts["died"] == 0, summary["failures"]
    assert summary["failures"] == []
    assert summary["silent_acceptances"] == []
    # the originals are read (the corpus is not refusing everything)
    originals = [r for r in results if r["family"] == "original"]
    assert originals and all(r.get("read", r["check"])["outcome"] == "accepted" for r in originals), \
        [r["name"] for r in originals if r.get("read", r["check"])["outcome"] != "accepted"]
    bombs = {r["name"]: r["read"]["message"] for r in results if r["family"] == "bomb"}
    assert all("64 MB" in m or "expands" in m or "bomb" in m for m in bombs.values()), bombs


# --------------------------------------------------------------------------- Hypothesis: the readers' contract

_SETTINGS = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def exposure_bytes():
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.io.fits import exposure_to_bytes

    return exposure_to_bytes(simulate_pair(ImagePairConfig(shape=(32, 32)), seed=4, index=0).science)


_KEYS = st.sampled_from([b"BITPIX", b"NAXIS", b"NAXIS1", b"NAXIS2", b"PCOUNT", b"GCOUNT", b"END"])
_VALUES = st.one_of(st.integers(-2**40, 2**40).map(lambda v: str(v).encode()),
                    st.sampled_from([b"-5", b"0", b"1", b"16", b"-32", b"-64", b"999", b"'x'", b"1.5", b"", b"T"]))


@_SETTINGS
@given(hdu=st.integers(0, 4), key=_KEYS, value=_VALUES, cut=st.one_of(st.none(), st.integers(0, 60000)))
def test_exposure_reader_returns_a_sound_exposure_or_a_typed_error(exposure_bytes, hdu, key, value, cut):
    """Any header card set to any value, and any truncation: a usable exposure or InvalidInputError, nothing else."""
    from astroray.io.fits import read_exposure

    data = bytearray(exposure_bytes)
    starts = [i for i in range(0, len(data), 2880) if data[i:i + 8] in (b"SIMPLE  ", b"XTENSION")]
    start = starts[hdu % len(starts)]
    k = data.find(key.ljust(8), start)
    if k >= 0:
        data[k:k + 80] = (key.ljust(8) + (b"= " + value.rjust(20) if key != b"END" else b"")).ljust(80)[:80]
    if cut is not None:
        data = data[:cut]
    try:
        exposure = read_exposure(bytes(data), name="fuzzed")
    except InvalidInputError:
        return
    assert min(exposure.image.shape) >= 2 and exposure.image.dtype == np.float32
    finite = np.isfinite(exposure.variance)
    assert not (exposure.variance[finite] < 0).any() and (exposure.variance[finite] > 0).any()
    assert np.isfinite(exposure.psf).all() and exposure.psf.sum() > 0


_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                    st.sampled_from([float("inf"), float("-inf"), float("nan"), -0.1, 0.0, 1e308, -1e308]))


@_SETTINGS
@given(rows=st.lists(st.tuples(st.floats(50000, 60000), _FLOATS, _FLOATS, st.sampled_from("gri")), min_size=1,
                     max_size=12))
def test_lightcurve_csv_reader_never_passes_an_impossible_point(rows):
    """Whatever the magnitudes and errors: refused, or every point read has a finite flux and a non-negative error."""
    from astroray.io.lightcurves import read_lightcurve

    text = "time,mag,magerr,band\n" + "".join(f"{t!r},{m!r},{e!r},{b}\n" for t, m, e, b in rows)
    try:
        lc = read_lightcurve(text.encode(), name="fuzzed.csv")
    except InvalidInputError:
        return
    assert len(lc) >= 1
    assert np.isfinite(lc.flux).all() and np.isfinite(lc.flux_err).all() and (lc.flux_err >= 0).all()
    kept = [(m, e) for _, m, e, _ in rows if not (math.isnan(m) or math.isnan(e))]
    assert all(math.isfinite(m) and math.isfinite(e) and e >= 0 for m, e in kept)


@pytest.fixture(scope="module")
def ztf_packet(shared_data):
    import fastavro

    with open(shared_data / "alerts/ztf/avro/472263571115115000.avro", "rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, next(reader)


@_SETTINGS
@given(ra=_FLOATS, dec=_FLOATS, magpsf=_FLOATS, sigmapsf=_FLOATS)
def test_ztf_reader_never_passes_an_alert_off_the_sky_or_without_a_flux(ztf_packet, ra, dec, magpsf, sigmapsf):
    import copy

    import fastavro

    from astroray.io import read_alerts

    schema, packet = ztf_packet
    packet = copy.deepcopy(packet)
    packet["candidate"].update(ra=ra, dec=dec, magpsf=magpsf, sigmapsf=sigmapsf)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [packet])
    try:
        (alert,) = read_alerts(buf.getvalue(), name="fuzzed.avro", cutouts=False)
    except InvalidInputError:
        return
    assert 0 <= alert.ra <= 360 and -90 <= alert.dec <= 90
    assert math.isfinite(alert.flux) and math.isfinite(alert.flux_err) and alert.flux_err > 0


@_SETTINGS
@given(data=st.binary(max_size=4000), suffix=st.sampled_from([".fits", ".avro", ".parquet", ".csv", ".json",
                                                               ".fits.gz", ".avsc", ".txt"]))
def test_io_check_reports_any_bytes_as_a_result_never_an_exception(tmp_path_factory, data, suffix):
    from astroray.io.check import check_path

    root = tmp_path_factory.mktemp("anybytes")
    (root / f"f{suffix}").write_bytes(data)
    report = check_path(root)
    assert report.n_files == 1
    error = report.files[0].error
    assert error is None or not error.startswith("unexpected"), error
