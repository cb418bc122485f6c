"""The hand-labelled evaluation sets are well-formed and reproducibly drawn; the scores are right."""
from __future__ import annotations

import json
import random

import pytest

from astroray.text.conventions import NAME_TYPES
from astroray.text.evaluation import (
    EVALSETS,
    LabelledText,
    flatten_metrics,
    load_evalset,
    load_labelled_jsonl,
    regex_baseline,
    score_entities,
)
from astroray.text.pipeline import ENTITY_TYPES
from astroray.text.readers import InvalidTextError


@pytest.mark.parametrize("name", sorted(EVALSETS))
def test_evalsets_are_well_formed(name):
    items = load_evalset(name)  # checks that every span's text is the text at its offsets
    assert len({d.doc_id for d in items}) == len(items)
    for d in items:
        last = 0
        for s, e, label in d.entities:
            assert label in ENTITY_TYPES
            assert s >= last and d.text[s:e] == d.text[s:e].strip() and d.text[s:e]
            last = e
    if name.startswith("gcn"):
        assert len(items) >= 200
        assert sum(lab in NAME_TYPES for d in items for _, _, lab in d.entities) >= 200


def test_gcn_sets_are_the_seeded_draws_of_the_shared_subjects(shared_data):
    subjects = json.loads((shared_data / "text" / "gcn_circular_subjects.json").read_text())
    ids = sorted(subjects, key=float)
    dev_ids = random.Random(17).sample(ids, 240)
    rest = [k for k in ids if k not in set(dev_ids)]
    test_ids = random.Random(2017).sample(rest, 220)
    for name, drawn in (("gcn_subjects_dev", dev_ids), ("gcn_subjects_test", test_ids)):
        items = load_evalset(name)
        assert [d.meta["circular"] for d in items] == drawn
        assert all(d.text == subjects[d.meta["circular"]]["subject"] for d in items)


def test_scores_on_a_hand_worked_example():
    gold = [LabelledText("a", "GRB 1 and Swift and M87 and X", ((0, 5, "EVENT"), (10, 15, "FACILITY"),
                                                                 (20, 23, "SOURCE")))]
    pred = [[(0, 5, "SOURCE"), (10, 15, "FACILITY"), (28, 29, "SOURCE")]]
    scores = score_entities(gold, pred)
    # names: GRB 1 found (type aside), M87 missed, X spurious
    assert (scores["names"]["tp"], scores["names"]["fp"], scores["names"]["fn"]) == (1, 1, 1)
    assert scores["per_type"]["FACILITY"]["f1"] == 1.0
    assert scores["per_type"]["EVENT"]["r"] == 0.0
    assert scores["overall"]["tp"] == 1 and scores["overall"]["fp"] == 2 and scores["overall"]["fn"] == 2
    assert scores["names_without_convention"]["n"] == 1  # "GRB 1" follows no convention, "M87" does
    flat = flatten_metrics(scores, prefix="dev_")
    assert flat["dev_names_f1"] == pytest.approx(0.5) and all(isinstance(v, float) for v in flat.values())


def test_regex_baseline_finds_conventions_only():
    gold = [LabelledText("b", "GRB 221009A near Betelgeuse", ((0, 11, "EVENT"), (17, 27, "SOURCE")))]
    scores = regex_baseline(gold)
    assert scores["names"]["tp"] == 1 and scores["names"]["fn"] == 1 and scores["names"]["fp"] == 0
    assert scores["names_without_convention"] == {"n": 1, "recall": 0.0, "found": 0}


def test_a_bad_span_in_a_labelled_file_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"doc_id": "x", "text": "GRB 1", "entities": [
        {"start": 0, "end": 4, "label": "EVENT", "text": "GRB 1"}]}) + "\n")
    with pytest.raises(InvalidTextError, match="does not match"):
        load_labelled_jsonl(path)
