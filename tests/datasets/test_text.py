"""Simulated ATel/abstract text: spans, naming conventions, purity, gazetteer."""
from __future__ import annotations

import re

import pytest

from astroray.datasets.text import CONVENTIONS, LABELS, TextConfig, load_gazetteer, simulate_documents
from astroray.errors import InvalidInputError


def test_spans_point_at_their_text_and_follow_conventions():
    docs = simulate_documents(400, seed=0)
    conventions, labels, openings = set(), set(), set()
    for doc in docs:
        assert doc.text.startswith(doc.title + "\n\n")
        last_end = -1
        for ent in sorted(doc.entities, key=lambda e: e["start"]):
            assert doc.text[ent["start"]:ent["end"]] == ent["text"]
            assert ent["start"] >= last_end  # no overlaps
            last_end = ent["end"]
            assert ent["label"] in LABELS
            assert re.fullmatch(CONVENTIONS[ent["convention"]], ent["text"]), ent
            assert ent["text"] == ent["text"].strip() and not ent["text"].startswith("the ")
            conventions.add(ent["convention"])
            labels.add(ent["label"])
        openings.add(doc.text.split("\n\n")[1][:25])
    assert labels == set(LABELS)
    wanted = set(CONVENTIONS) - {"gazetteer"}
    assert wanted <= conventions, wanted - conventions
    assert {d.kind for d in docs} == {"atel", "abstract"}
    assert len(openings) > 40  # varied templates, not one sentence with names swapped


def test_tns_suffix_rule_and_consistent_years():
    docs = simulate_documents(300, seed=1, config=TextConfig(kinds={"atel": 1.0}))
    for doc in docs:
        years = set()
        for ent in doc.entities:
            if ent["convention"] == "tns":
                suffix = re.sub(r"^(AT|SN) ?\d{4}", "", ent["text"])
                # TNS: the first 26 of a year are one capital letter, later ones lower case
                assert (len(suffix) == 1 and suffix.isupper()) or (len(suffix) in (2, 3) and suffix.islower())
                years.add(int(re.search(r"\d{4}", ent["text"]).group()) % 100)
            if ent["convention"] in ("ztf", "gaia"):
                years.add(int(re.search(r"\d{2}", ent["text"]).group()))
        assert len(years) <= 1, doc.text  # the names of one object share its year


def test_documents_are_a_pure_function_of_seed_and_index():
    a = simulate_documents(30, seed=4)
    b = simulate_documents(10, seed=4, start=20)
    assert [d.to_dict() for d in a[20:]] == [d.to_dict() for d in b]
    assert simulate_documents(5, seed=5)[0].text != a[0].text


def test_real_names_from_the_gazetteer(shared_data):
    folder = shared_data / "text" / "gazetteer"
    gaz = load_gazetteer(str(folder))
    real_iau = {t[0] for t in gaz.transients}
    real_ztf = {t[1] for t in gaz.transients}
    docs = simulate_documents(200, seed=2, config=TextConfig(gazetteer=str(folder), gazetteer_fraction=1.0))
    names = [e for d in docs for e in d.entities]
    tns = [e["text"] for e in names if e["convention"] == "tns"]
    ztf = [e["text"] for e in names if e["convention"] == "ztf"]
    assert tns and sum(t in real_iau for t in tns) / len(tns) > 0.8
    assert ztf and sum(t in real_ztf for t in ztf) / len(ztf) > 0.8
    assert any(e["convention"] == "gazetteer" and e["text"] in gaz.sources for e in names)
    # without the folder every name is synthetic
    synthetic = simulate_documents(200, seed=2)
    assert not {e["text"] for d in synthetic for e in d.entities if e["convention"] == "ztf"} & real_ztf


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(InvalidInputError):
        simulate_documents(2, config=TextConfig(gazetteer=str(tmp_path / "missing")))
    with pytest.raises(InvalidInputError):
        simulate_documents(2, config=TextConfig(gazetteer=str(tmp_path)))
    with pytest.raises(InvalidInputError):
        simulate_documents(-2)
    with pytest.raises(ValueError):
        TextConfig(kinds={"tweet": 1.0})
