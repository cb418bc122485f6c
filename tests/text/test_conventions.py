"""Naming conventions: each one found in running text, boundaries, the normaliser, the simulator's names."""
from __future__ import annotations

import re

import pytest

from astroray.datasets.text import CONVENTIONS as SIMULATED_CONVENTIONS
from astroray.datasets.text import simulate_documents
from astroray.text.conventions import CONVENTIONS, convention_of, designation_regex, find_designations, normalise_name

# one real-world example per convention (key -> name); each must be found whole, with its key
EXAMPLES = {
    "tns": "SN 2023ixf", "ztf": "ZTF23aaklqou", "gaia": "Gaia19amg", "atlas": "ATLAS19abc", "panstarrs": "PS15cbt",
    "asassn": "ASASSN-14li", "ptf": "iPTF14hls", "master": "MASTER OT J123456.78+123456.7",
    "transient_j": "MLTJ080628.10-250116.4", "microlensing": "OGLE-2015-BLG-1234", "grb": "GRB 221009A",
    "xrf": "XRF 020903", "frb": "FRB 20180916B", "ep": "EP240315a", "gw": "S190425z", "icecube": "IceCube-170922A",
    "km3net": "KM3-230213A", "nova": "Nova Sco 2014", "swift": "Swift J1727.8-1613", "maxi": "MAXI J1820+070",
    "xte": "XTE J1550-564", "igr": "IGR J17091-3624", "4fgl": "4FGL J1653.8+3945", "psr": "PSR J0437-4715",
    "2mass": "2MASS J12345678+1234567", "sdss": "SDSS J123456.78+123456.7", "sgr_mag": "SGR 1935+2154",
    "jname": "Fermi J0502.5+0037", "jname_bare": "J0100+2802", "bname": "4U 1630-47", "gx": "GX 339-4",
    "xray_const": "Cyg X-1", "messier": "M87", "ngc": "NGC 4993", "ic": "IC 1101", "galaxy_cat": "Mrk 421",
    "star_cat": "HD 189733b", "variable_star": "V404 Cyg", "bayer": "eta Car", "sgr_a": "Sgr A*",
}


def test_every_convention_has_an_example():
    assert set(EXAMPLES) == set(CONVENTIONS)


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_each_convention_is_found_in_a_sentence(key):
    name = EXAMPLES[key]
    assert re.fullmatch(CONVENTIONS[key].pattern, name)
    text = f"We observed {name}. Then ({name}), and {name}: again"
    found = find_designations(text)
    assert [d.text for d in found] == [name] * 3, found
    assert {d.convention for d in found} == {key}
    assert all(text[d.start:d.end] == d.text and d.label == CONVENTIONS[key].label for d in found)
    # the single expression gives the same names
    assert [m.group(0) for m in designation_regex().finditer(text)] == [name] * 3


@pytest.mark.parametrize("text", [
    "http://isdc.unige.ch/~kuulkers/GX339-4/ and mail to a@b.org",  # inside a URL
    "xGRB 221009A", "GRB 221009AB", "M 1.4 Msun", "an M4V star", "ATel #12436", "1.3-1.7 E+38 erg/s",
    "from 2019-02-12 11:55 to 13:39 UTC", "at 22 +/- 5 keV", "SN Ia and SNe", "Swift/XRT and Fermi GBM",
])
def test_no_names_where_there_are_none(text):
    assert find_designations(text) == []


def test_longest_name_wins_and_names_do_not_overlap():
    text = "PSR J0437-4715 is not J0437-4715 alone; ZTF20aafqvyc/AT2020yq; GRB 210531500 (Fermi); AT2024adip"
    assert [d.text for d in find_designations(text)] == [
        "PSR J0437-4715", "J0437-4715", "ZTF20aafqvyc", "AT2020yq", "GRB 210531500", "AT2024adip"]


@pytest.mark.parametrize("raw, canonical", [
    ("GRB221009A", "GRB 221009A"), ("SN2023ixf", "SN 2023ixf"), ("AT2019aox", "AT 2019aox"),
    ("EP 240414a", "EP240414a"), ("EP260119A", "EP260119a"), ("M 87", "M87"), ("Messier 101", "M101"),
    ("NGC4993", "NGC 4993"), ("IceCube 170922A", "IceCube-170922A"), ("SwiftJ1727.8-1613", "Swift J1727.8-1613"),
    ("FRB20180916B", "FRB 20180916B"), ("MAXI J1727\u2013203", "MAXI J1727-203"), ("the Crab Nebula", "Crab Nebula"),
    ("  Sgr   A* ", "Sgr A*"), ("Betelgeuse", "Betelgeuse"),
])
def test_normalise_name(raw, canonical):
    assert normalise_name(raw) == canonical
    assert normalise_name(canonical) == canonical  # idempotent


def test_convention_of():
    assert convention_of("GRB 221009A") == "grb"
    assert convention_of("Crab Nebula") is None


def test_the_simulator_uses_the_same_patterns_and_its_names_are_found():
    for key, pattern in SIMULATED_CONVENTIONS.items():
        if key in CONVENTIONS:
            assert pattern == CONVENTIONS[key].pattern
    for doc in simulate_documents(150, seed=3):
        found = {(d.start, d.end) for d in find_designations(doc.text)}
        for ent in doc.entities:
            if ent["convention"] in CONVENTIONS:
                assert (ent["start"], ent["end"]) in found, (ent, doc.text)
