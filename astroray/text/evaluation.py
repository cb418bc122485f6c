"""Entity-level scores, the regex-only baseline, and the hand-labelled evaluation sets.

Scores are exact-span matches.  Per type, a prediction counts when its start,
end and type equal a gold entity's.  For **names** (SOURCE and EVENT together,
:data:`~astroray.text.conventions.NAME_TYPES`) a predicted name counts when its
span equals a gold name's span, whichever of the two name types each has: the
question is whether the name was found, and whether a magnetar is a source or
an event is a separate one (the per-type scores answer it).

The evaluation sets (``astroray/text/evalsets/*.jsonl``, described in the
README there) are labelled by hand: real GCN circular subjects and the shared
ATel pages.  :func:`load_evalset` reads them.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from astroray.text.conventions import NAME_TYPES, convention_of, find_designations
from astroray.text.readers import InvalidTextError

__all__ = [
    "LabelledText",
    "EVALSETS",
    "EVALSET_DIR",
    "load_evalset",
    "load_labelled_jsonl",
    "score_entities",
    "evaluate",
    "predict_entities",
    "regex_entities",
    "regex_baseline",
    "flatten_metrics",
]

EVALSET_DIR = Path(__file__).resolve().parent / "evalsets"
EVALSETS = {"gcn_subjects_dev": "gcn_subjects_dev.jsonl", "gcn_subjects_test": "gcn_subjects_test.jsonl",
            "atel_pages": "atel_pages.jsonl"}


@dataclass(frozen=True)
class LabelledText:
    """A text with entity spans ``(start, end, label)``; label ``"-"`` marks a span of unknown type.

    ``meta`` holds where it came from (``source``, file, circular number).
    """

    doc_id: str
    text: str
    entities: tuple[tuple[int, int, str], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_any(cls, item) -> "LabelledText":
        """From a LabelledText, a simulated :class:`~astroray.datasets.text.Document`, or a dict
        ``{"doc_id", "text", "entities": [{"start", "end", "label"}, ...]}``."""
        if isinstance(item, LabelledText):
            return item
        if isinstance(item, dict):
            doc_id, text, ents, meta = item.get("doc_id", ""), item["text"], item.get("entities", []), item.get("meta", {})
        else:
            doc_id, text, ents, meta = getattr(item, "doc_id", ""), item.text, item.entities, {}
        spans = []
        for e in ents:
            if isinstance(e, dict):
                spans.append((int(e["start"]), int(e["end"]), str(e["label"])))
            else:
                spans.append((int(e[0]), int(e[1]), str(e[2])))
        return cls(str(doc_id), text, tuple(sorted(spans)), dict(meta))

    def to_dict(self) -> dict:
        return {"doc_id": self.doc_id, "text": self.text,
                "entities": [{"start": s, "end": e, "label": lab, "text": self.text[s:e]}
                             for s, e, lab in self.entities], "meta": dict(self.meta)}


def load_labelled_jsonl(path: str | Path) -> list[LabelledText]:
    """Labelled texts from a JSON Lines file (one :meth:`LabelledText.to_dict` per line).

    Raises
    ------
    InvalidTextError
        A line that is not JSON, lacks ``text``, or has a span outside the
        text or whose ``text`` field differs from the text at its offsets.
    """
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            item = LabelledText.from_any(record)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidTextError(f"line {lineno}: not a labelled text ({exc})", source=str(path)) from None
        for ent in record.get("entities", []):
            s, e = int(ent["start"]), int(ent["end"])
            if not 0 <= s < e <= len(item.text) or ("text" in ent and item.text[s:e] != ent["text"]):
                raise InvalidTextError(f"line {lineno}: span {s}-{e} {ent.get('text')!r} does not match the text",
                                       source=str(path))
        out.append(item)
    return out


def load_evalset(name: str) -> list[LabelledText]:
    """A hand-labelled evaluation set kept in the repository: ``"gcn_subjects"`` or ``"atel_pages"``."""
    if name not in EVALSETS:
        raise KeyError(f"unknown evaluation set {name!r}; one of {sorted(EVALSETS)}")
    return load_labelled_jsonl(EVALSET_DIR / EVALSETS[name])


# --------------------------------------------------------------------------- scoring


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


def score_entities(gold: Sequence[LabelledText], predicted: Sequence[Iterable[tuple[int, int, str]]], *,
                   types: Sequence[str] | None = None) -> dict[str, Any]:
    """Entity-level precision, recall and F1.

    Parameters
    ----------
    gold : sequence of LabelledText
    predicted : sequence of iterables of (start, end, label)
        One per gold text, same order.
    types : sequence of str, optional
        Types scored per type and overall (default: those in gold or predicted).

    Returns
    -------
    dict
        ``names`` (SOURCE+EVENT spans), ``overall`` (all types, exact),
        ``per_type`` {type: scores}, ``names_without_convention`` (recall on
        gold names no naming convention matches, with ``n``), ``n_docs``.
        Each score dict holds p, r, f1, tp, fp, fn.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold texts but {len(predicted)} predictions")
    counts: dict[str, Counter] = {}
    names = Counter()
    overall = Counter()
    nc_total = nc_found = 0
    seen_types = set(types or ())
    for doc, pred in zip(gold, predicted):
        g = {(s, e, lab) for s, e, lab in doc.entities if lab != "-"}
        p = {(int(s), int(e), str(lab)) for s, e, lab in pred}
        if types is None:
            seen_types |= {lab for _, _, lab in g | p}
        g_names = {(s, e) for s, e, lab in g if lab in NAME_TYPES}
        p_names = {(s, e) for s, e, lab in p if lab in NAME_TYPES}
        names.update(tp=len(g_names & p_names), fp=len(p_names - g_names), fn=len(g_names - p_names))
        for s, e in g_names:
            if convention_of(doc.text[s:e]) is None:
                nc_total += 1
                nc_found += (s, e) in p_names
        for t in seen_types:
            gt = {x for x in g if x[2] == t}
            pt = {x for x in p if x[2] == t}
            c = counts.setdefault(t, Counter())
            c.update(tp=len(gt & pt), fp=len(pt - gt), fn=len(gt - pt))
        g_all = {x for x in g if x[2] in seen_types}
        p_all = {x for x in p if x[2] in seen_types}
        overall.update(tp=len(g_all & p_all), fp=len(p_all - g_all), fn=len(g_all - p_all))
    return {
        "names": _prf(names["tp"], names["fp"], names["fn"]),
        "overall": _prf(overall["tp"], overall["fp"], overall["fn"]),
        "per_type": {t: _prf(c["tp"], c["fp"], c["fn"]) for t, c in sorted(counts.items())},
        "names_without_convention": {"n": nc_total, "recall": nc_found / nc_total if nc_total else 0.0,
                                     "found": nc_found},
        "n_docs": len(gold),
    }


def predict_entities(nlp, texts: Sequence[str], *, batch_size: int = 64) -> list[list[tuple[int, int, str]]]:
    """The pipeline's entities of each text as (start, end, label)."""
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents]
            for doc in nlp.pipe(list(texts), batch_size=batch_size)]


def evaluate(nlp, docs: Iterable, *, batch_size: int = 64, types: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a pipeline on labelled texts (see :func:`score_entities` for the result).

    Parameters
    ----------
    nlp : spacy.language.Language
    docs : iterable of LabelledText (or what :meth:`LabelledText.from_any` takes)
    """
    gold = [LabelledText.from_any(d) for d in docs]
    return score_entities(gold, predict_entities(nlp, [d.text for d in gold], batch_size=batch_size), types=types)


def regex_entities(text: str) -> list[tuple[int, int, str]]:
    """The regex-only baseline's entities: every name a naming convention matches, nothing else."""
    return [(d.start, d.end, d.label) for d in find_designations(text)]


def regex_baseline(docs: Iterable, *, types: Sequence[str] | None = None) -> dict[str, Any]:
    """Scores of the naming conventions alone (no gazetteer, no model) on labelled texts."""
    gold = [LabelledText.from_any(d) for d in docs]
    return score_entities(gold, [regex_entities(d.text) for d in gold], types=types)


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"names": {"f1": 0.9}}`` -> ``{"names_f1": 0.9}``: numbers only, for logging (MLflow)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_metrics(value, prefix=name + "_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
