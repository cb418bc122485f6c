"""The spaCy pipeline: designations are single tokens, the rules find each convention, training
improves the tagger, and a saved pipeline loads and finds the same entities."""
from __future__ import annotations

import random

import numpy as np
import pytest

from astroray.text.conventions import CONVENTIONS
from astroray.text.evaluation import evaluate
from astroray.text.pipeline import NerConfig, _decode, build_pipeline, load_pipeline
from astroray.text.training import simulated_examples, train_ner

ISSUE_DESIGNATIONS = ["GRB 221009A", "Swift J1727.8-1613", "PSR J0437-4715", "SN 2023ixf", "ZTF23aaklqou", "Sgr A*",
                      "AT 2024abc", "EP240315a", "4FGL J1653.8+3945"]
# one name per convention, written as in reports (each must become one entity of the convention's type)
NAMES = {
    "tns": "AT2017gfo", "ztf": "ZTF20aafqvyc", "gaia": "Gaia24abc", "atlas": "ATLAS20xyz", "panstarrs": "PS1-13arp",
    "asassn": "ASASSN-15lh", "ptf": "PTF11kly", "master": "MASTER OT J030227.28+191754.5",
    "transient_j": "TCP J17154683-3128303", "microlensing": "MOA-2019-BLG-123", "grb": "GRB221009A",
    "xrf": "XRF 080109", "frb": "FRB 121102", "ep": "EP 240414a", "gw": "GW170817", "icecube": "IceCube-211023A",
    "km3net": "KM3-230213A", "nova": "Nova Her 2021", "swift": "Swift J1644+57", "maxi": "MAXI J1727-203",
    "xte": "XTE J1701-407", "igr": "IGR J08408-4503", "4fgl": "3FGL J0534.5+2201", "psr": "PSR B1919+21",
    "2mass": "2MASS J05345+22", "sdss": "SDSS J1004+4112", "sgr_mag": "SGR J1745-29", "jname": "SRGA J144459.2-604207",
    "jname_bare": "J1727.8-1613", "bname": "PKS 2155-304", "gx": "GX 5-1", "xray_const": "Sco X-1", "messier": "M 31",
    "ngc": "NGC4993", "ic": "IC 10", "galaxy_cat": "3C 273", "star_cat": "TOI-700", "variable_star": "RS Oph",
    "bayer": "alpha Cen", "sgr_a": "Sgr B2",
}


@pytest.fixture(scope="module")
def rules():
    return build_pipeline(NerConfig(model=False))


def test_names_cover_every_convention():
    assert set(NAMES) == set(CONVENTIONS)


@pytest.mark.parametrize("name", ISSUE_DESIGNATIONS)
def test_tokenizer_keeps_each_designation_whole(rules, name):
    for text, before, after in ((f"{name}.", [], ["."]), (f"See {name}, then", ["See"], [",", "then"]),
                                (f"({name})", ["("], [")"]),
                                (f"Follow-up of {name}: done", ["Follow", "-", "up", "of"], [":", "done"])):
        doc = rules.make_doc(text)
        assert [t.text for t in doc] == before + [name] + after, text
        assert doc.text == text


def test_tokenizer_round_trips_any_spacing(rules):
    rng = random.Random(0)
    pieces = ISSUE_DESIGNATIONS + ["the", "X-ray", "(", ").", "Swift/XRT", "mCrab", "GRB", "221009A.", "J1727",
                                   "http://x.org/GRB 221009A", "a@b.org", "\u03c3"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) + rng.choice(["", " ", "  ", "\n", ". ", ", "]) for _ in range(12))
        assert rules.make_doc(text).text == text


@pytest.mark.parametrize("key", sorted(NAMES))
def test_rules_find_each_convention(rules, key):
    name = NAMES[key]
    doc = rules(f"Observations of {name} with Swift/XRT.")
    ents = [(e.text, e.label_, e.ent_id_) for e in doc.ents]
    assert (name, CONVENTIONS[key].label, f"rule:{key}") in ents, ents
    assert ("Swift/XRT", "FACILITY", "facility") in ents


def test_gazetteer_names_come_from_the_folder(shared_data):
    nlp = build_pipeline(NerConfig(model=False), gazetteer_dir=shared_data / "text" / "gazetteer")
    doc = nlp("Unlike the Crab Nebula, Betelgeuse and the LMC, the Galactic Center field had no Trigger 565443.")
    ents = {(e.text, e.label_) for e in doc.ents}
    assert {("Crab Nebula", "SOURCE"), ("Betelgeuse", "SOURCE"), ("LMC", "SOURCE")} <= ents
    assert not {t for t, _ in ents} & {"Galactic Center", "Trigger", "Center"}


def test_decode_biluo_leniently():
    tags = ("O", "B-S", "I-S", "L-S", "U-S", "B-E", "I-E", "L-E", "U-E")
    seq = ["O", "B-S", "I-S", "L-S", "O", "U-E", "I-S", "O", "L-E", "B-S", "B-E", "I-E"]
    best = np.array([tags.index(t) for t in seq])
    spans = [(s, e, label) for s, e, label, _ in _decode(best, np.full(len(seq), 0.9), tags)]
    assert spans == [(1, 4, "S"), (5, 6, "E"), (6, 7, "S"), (8, 9, "E"), (9, 10, "S"), (10, 12, "E")]


def test_untrained_pipeline_adds_nothing_to_the_rules():
    nlp = build_pipeline(NerConfig())
    doc = nlp("Betelgeuse dimmed while GRB 221009A faded.")
    assert [(e.text, e.ent_id_) for e in doc.ents] == [("GRB 221009A", "rule:grb")]


@pytest.fixture(scope="module")
def tiny_model():
    """The tagger alone (no rules), trained for seconds on simulated reports."""
    docs = simulated_examples(260, seed=5)
    cfg = NerConfig(rules=False, facility_phrases=False, width=24, embed_rows=500, epochs=4, patience=4,
                    learning_rate=5e-3, batch_words=1000)
    seen = []
    nlp, metrics = train_ner(cfg, docs[:220], docs[220:], on_epoch=lambda epoch, m: seen.append((epoch, m)))
    return nlp, metrics, seen, docs[220:]


def test_a_tiny_training_run_improves_over_its_start(tiny_model):
    nlp, metrics, seen, dev = tiny_model
    assert [epoch for epoch, _ in seen] == list(range(len(seen)))
    assert all(isinstance(v, float) for _, m in seen for v in m.values())
    start, best = seen[0][1]["dev_names_f1"], metrics["best_dev_names_f1"]
    assert start == 0.0  # an untrained tagger without rules finds nothing
    assert best > 0.5, metrics["history"]
    assert evaluate(nlp, dev)["names"]["f1"] == pytest.approx(best)


def test_to_disk_and_spacy_load_give_the_same_entities(tiny_model, tmp_path):
    nlp, _, _, dev = tiny_model
    nlp.to_disk(tmp_path / "model")
    loaded = load_pipeline(tmp_path / "model")
    assert loaded.pipe_names == nlp.pipe_names
    texts = [d.text for d in dev[:20]]
    before = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    after = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in loaded.pipe(texts)]
    assert after == before and any(before)


def test_full_pipeline_round_trips_with_rules_and_gazetteer(shared_data, tmp_path):
    nlp = build_pipeline(NerConfig(model=False), gazetteer_dir=shared_data / "text" / "gazetteer")
    nlp.to_disk(tmp_path / "rules")
    loaded = load_pipeline(tmp_path / "rules")
    text = "GRB 221009A. Swift/XRT saw the Crab Nebula and PSR J0437-4715."
    assert [(e.text, e.label_) for e in loaded(text).ents] == [(e.text, e.label_) for e in nlp(text).ents]
