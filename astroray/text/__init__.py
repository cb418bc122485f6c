"""Source, event and facility names in astronomy text (ATel, GCN circulars, abstracts).

* readers: :func:`read_documents` (a file or folder), :func:`parse_atel_html`,
  :func:`parse_atel_rss`, :func:`parse_gcn_json`, :func:`parse_gcn_text`,
  :func:`parse_jsonl`, :func:`parse_plain_text` -> :class:`TextDocument`
* naming conventions: :data:`CONVENTIONS`, :func:`find_designations`,
  :func:`normalise_name`, :func:`convention_of`
* the spaCy pipeline: :class:`NerConfig`, :func:`build_pipeline`,
  :func:`load_pipeline`; training: :func:`train_ner`, :func:`weak_training_set`
* evaluation: :func:`evaluate`, :func:`regex_baseline`, :func:`load_evalset`
* extraction: :class:`NameFinder` (rows of doc id, text, type, offsets, normalised name)

The spaCy parts load on first use, so ``astroray.text.conventions`` (used by the
text simulator) stays light.
"""
from __future__ import annotations

import importlib

__all__ = [
    "CONVENTIONS", "NAME_TYPES", "find_designations", "normalise_name", "convention_of",
    "InvalidTextError", "TextDocument", "read_documents", "parse_atel_html", "parse_atel_rss", "parse_gcn_json",
    "parse_gcn_text", "parse_jsonl", "parse_plain_text", "html_to_text",
    "FACILITIES", "GazetteerNames", "load_gazetteer_names",
    "ENTITY_TYPES", "NerConfig", "build_pipeline", "load_pipeline",
    "WeakLabelConfig", "weak_training_set", "train_ner",
    "LabelledText", "evaluate", "regex_baseline", "load_evalset", "score_entities", "flatten_metrics",
    "NameFinder", "NAME_ROW_FIELDS",
]

_WHERE = {
    "CONVENTIONS": "conventions", "NAME_TYPES": "conventions", "find_designations": "conventions",
    "normalise_name": "conventions", "convention_of": "conventions",
    "InvalidTextError": "readers", "TextDocument": "readers", "read_documents": "readers",
    "parse_atel_html": "readers", "parse_atel_rss": "readers", "parse_gcn_json": "readers",
    "parse_gcn_text": "readers", "parse_jsonl": "readers", "parse_plain_text": "readers", "html_to_text": "readers",
    "FACILITIES": "facilities", "GazetteerNames": "gazetteer", "load_gazetteer_names": "gazetteer",
    "ENTITY_TYPES": "pipeline", "NerConfig": "pipeline", "build_pipeline": "pipeline", "load_pipeline": "pipeline",
    "WeakLabelConfig": "training", "weak_training_set": "training", "train_ner": "training",
    "LabelledText": "evaluation", "evaluate": "evaluation", "regex_baseline": "evaluation",
    "load_evalset": "evaluation", "score_entities": "evaluation", "flatten_metrics": "evaluation",
    "NameFinder": "extract", "NAME_ROW_FIELDS": "extract",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"astroray.text.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'astroray.text' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
