"""Scores of a pipeline on the kept evaluation sets, beside the regex baseline and the rules alone.

What ``jobs/train_ner.py`` logs and ``bench_ner.py`` reports:

* ``gcn_subjects_test`` (labelled after the rules were frozen) and
  ``gcn_subjects_dev``;
* ``atel_pages`` given as **raw HTML** when the shared pages are at hand
  (read by :func:`~astroray.text.readers.parse_atel_html`, whose text must be
  the labelled text), else the labelled text itself (``input`` says which);
  plus the naming conventions run over the raw HTML without a reader,
  scored by normalised names (what a regex over the page gets);
* ``overall``: GCN test subjects and ATel pages together;
* ``names_without_convention``: recall on gold names no naming convention
  matches (the regex finds none of them by construction), for the pipeline
  and the rules alone; ``added_by_model`` is the difference.

No Ray, no MLflow.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from astroray.text.conventions import NAME_TYPES, find_designations, normalise_name
from astroray.text.evaluation import LabelledText, evaluate, flatten_metrics, load_evalset, regex_baseline

__all__ = ["atel_raw_pages", "regex_over_raw_html", "kept_set_scores", "kept_set_metrics"]

_SHORT = {"gcn_subjects_test": "gcn_test", "gcn_subjects_dev": "gcn_dev", "atel_pages": "atel"}


def atel_raw_pages(shared_data: str | Path | None) -> dict[str, bytes] | None:
    """Raw HTML of the labelled ATel pages (doc id -> bytes) from ``<shared_data>/text/atel``, or None."""
    if shared_data is None:
        return None
    folder = Path(shared_data) / "text" / "atel"
    gold = load_evalset("atel_pages")
    files = {d.doc_id: folder / d.meta["file"] for d in gold}
    if not all(p.is_file() for p in files.values()):
        return None
    return {doc_id: p.read_bytes() for doc_id, p in files.items()}


def _prf(gold: Counter, found: Counter) -> dict[str, float]:
    tp = sum((gold & found).values())
    fp, fn = sum(found.values()) - tp, sum(gold.values()) - tp
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"p": p, "r": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "tp": tp, "fp": fp, "fn": fn}


def regex_over_raw_html(pages: dict[str, bytes], gold: list[LabelledText]) -> dict[str, float]:
    """The naming conventions over each raw page (no reader), scored by normalised names against its gold names."""
    want, found = Counter(), Counter()
    for item in gold:
        want += Counter(normalise_name(item.text[s:e]) for s, e, lab in item.entities if lab in NAME_TYPES)
        found += Counter(normalise_name(d.text) for d in find_designations(pages[item.doc_id].decode("utf-8",
                                                                                                    "replace")))
    return _prf(want, found)


def _short(scores: dict) -> dict:
    keep = {k: scores[k] for k in ("names", "per_type", "names_without_convention", "n_docs")}
    return json.loads(json.dumps(keep, default=float))


def kept_set_scores(nlp, *, shared_data: str | Path | None = None, rules=None) -> dict[str, Any]:
    """Scores of ``nlp`` on the kept evaluation sets (see the module docstring).

    Parameters
    ----------
    nlp : spacy.language.Language
        The pipeline to score.
    shared_data : path-like, optional
        The shared data folder (for the raw ATel HTML pages).
    rules : spacy.language.Language, optional
        The rules-only pipeline, scored beside (its gazetteer should be the one
        ``nlp`` was built with).

    Raises
    ------
    InvalidTextError
        The reader's text of an ATel page is not the labelled text (the labels
        would not fit the page any more).
    """
    from astroray.errors import InvalidTextError
    from astroray.text.readers import parse_atel_html

    sets = {name: load_evalset(name) for name in ("gcn_subjects_test", "gcn_subjects_dev", "atel_pages")}
    pages = atel_raw_pages(shared_data)
    atel_input = "labelled_text"
    if pages is not None:
        read = []
        for item in sets["atel_pages"]:
            doc = parse_atel_html(pages[item.doc_id], source=item.meta["file"])
            if doc.text != item.text:
                raise InvalidTextError("the reader's text differs from the labelled text; fix the reader or relabel",
                                       source=item.meta["file"])
            read.append(LabelledText(item.doc_id, doc.text, item.entities, item.meta))
        sets["atel_pages"] = read  # scored on what the reader found in the raw page
        atel_input = "raw_html"
    out: dict[str, Any] = {}
    for name, gold in sets.items():
        row = {"pipeline": _short(evaluate(nlp, gold)), "regex": _short(regex_baseline(gold))}
        if rules is not None:
            row["rules"] = _short(evaluate(rules, gold))
        out[name] = row
    out["atel_pages"]["input"] = atel_input
    if pages is not None:
        out["atel_pages"]["regex_over_raw_html"] = regex_over_raw_html(pages, sets["atel_pages"])
    pooled = sets["gcn_subjects_test"] + sets["atel_pages"]
    out["overall"] = {"pipeline": _short(evaluate(nlp, pooled)), "regex": _short(regex_baseline(pooled))}
    if rules is not None:
        out["overall"]["rules"] = _short(evaluate(rules, pooled))
    every = pooled + sets["gcn_subjects_dev"]
    nc = {"pipeline": evaluate(nlp, every)["names_without_convention"]}
    if rules is not None:
        nc["rules"] = evaluate(rules, every)["names_without_convention"]
    out["names_without_convention"] = {
        "n": nc["pipeline"]["n"], "pipeline_recall": nc["pipeline"]["recall"], "regex_recall": 0.0,
        **({"rules_recall": nc["rules"]["recall"],
            "added_by_model": nc["pipeline"]["recall"] - nc["rules"]["recall"]} if "rules" in nc else {}),
        "sets": "gcn_subjects_test + gcn_subjects_dev + atel_pages",
    }
    return out


def kept_set_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """:func:`kept_set_scores` as flat float metrics for MLflow: ``gcn_test_names_f1``,
    ``gcn_test_regex_names_f1``, ``atel_names_f1``, ``atel_regex_over_raw_html_f1``, ``overall_names_f1``,
    ``names_without_convention_pipeline_recall``, ..."""
    out: dict[str, float] = {}
    for name, short in (*_SHORT.items(), ("overall", "overall")):
        for who, scores_ in scores[name].items():
            if not isinstance(scores_, dict) or "names" not in scores_:
                continue
            prefix = short + ("" if who == "pipeline" else f"_{who}")
            out.update(flatten_metrics({"names": scores_["names"], "per_type": scores_["per_type"]},
                                       prefix=prefix + "_"))
    raw = scores["atel_pages"].get("regex_over_raw_html")
    if raw is not None:
        out.update(flatten_metrics(raw, prefix="atel_regex_over_raw_html_"))
    out["atel_raw_html"] = float(scores["atel_pages"]["input"] == "raw_html")
    out.update(flatten_metrics({k: v for k, v in scores["names_without_convention"].items() if k != "sets"},
                               prefix="names_without_convention_"))
    return {k: v for k, v in out.items() if not k.endswith(("_tp", "_fp", "_fn"))}
