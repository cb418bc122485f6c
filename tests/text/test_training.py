"""Weak labels: WIESP spans filtered to names, GCN subjects labelled by the rules (eval set left out)."""
from __future__ import annotations

import pytest

from astroray.errors import ConfigError
from astroray.text.evaluation import load_evalset
from astroray.text.pipeline import NerConfig
from astroray.text.training import _trim, gcn_subject_examples, simulated_examples, train_ner, wiesp_name_label


@pytest.mark.parametrize("span, label", [
    ("Earth", "O"), ("solar", "O"), ("Galactic", "O"), ("Milky Way", "O"), ("MW-like", "O"), ("Earth's", "O"),
    ("B", "-"), ("e", "-"), ("GRB 170817A", "EVENT"), ("AT 2018cow", "EVENT"), ("NGC 1277", "SOURCE"),
    ("Capella", "SOURCE"), ("\u03ba Cassiopeiae", "SOURCE"), ("16 Cyg A", "SOURCE"), ("67P", "O"),
])
def test_wiesp_celestial_objects_filtered_to_names(span, label):
    assert wiesp_name_label(span) == label


def test_trim_keeps_balanced_brackets():
    text = "(UGC 8320) and DDO 154 (UGC 8024), then NGC 1277,"
    ddo, ngc = text.index("DDO"), text.index("NGC")
    assert text[slice(*_trim(text, 0, 10))] == "UGC 8320"
    assert text[slice(*_trim(text, ddo, ddo + 19))] == "DDO 154 (UGC 8024)"
    assert text[slice(*_trim(text, ngc, len(text)))] == "NGC 1277"


def test_simulated_transients_become_events_and_regions_go():
    docs = simulated_examples(200, seed=2)
    labels = {lab for d in docs for _, _, lab in d.entities}
    assert labels == {"SOURCE", "EVENT", "FACILITY"}
    assert not any(d.text[s:e] == "Galactic Centre" for d in docs for s, e, _ in d.entities)


def test_gcn_subjects_are_labelled_by_rules_without_the_evaluation_subjects(shared_data):
    held = {d.meta["circular"] for d in load_evalset("gcn_subjects_dev")}
    docs = gcn_subject_examples(shared_data / "text" / "gcn_circular_subjects.json", n=300, seed=1,
                                exclude=held)
    assert len(docs) == 300 and not {d.doc_id[4:] for d in docs} & held
    assert sum(len(d.entities) for d in docs) > 300
    assert all(d.text[s:e].strip() == d.text[s:e] for d in docs for s, e, _ in d.entities)


def test_train_ner_refuses_a_pipeline_without_a_model():
    docs = simulated_examples(4, seed=0)
    with pytest.raises(ConfigError):
        train_ner(NerConfig(model=False), docs[:2], docs[2:])
