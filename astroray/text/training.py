"""Weakly labelled training text, and training of the statistical tagger.

Three sources of labels, none of them the evaluation sets:

* **simulated reports** (:func:`astroray.datasets.simulate_documents`): ATel-
  and abstract-like text with exact spans (``TRANSIENT`` becomes ``EVENT``);
* **WIESP 2022** (ADS full-text fragments labelled by people): the
  ``CelestialObject`` spans filtered to actual names (not "solar", "Earth",
  "Galactic", single letters), and ``Telescope``/``Instrument``/``Mission`` as
  ``FACILITY``; split by paper (bibcode) into training and a held-out part;
* **GCN circular subjects** labelled by the rules (naming conventions,
  facility phrases, gazetteer), leaving out the subjects of the evaluation set.

:func:`train_ner` trains the tagger of :func:`~astroray.text.pipeline.build_pipeline`
on them, in plain Python: no Ray, no MLflow.  Its ``on_epoch(epoch, metrics)``
callback receives flat float metrics after each epoch (for logging and for
reporting to a tuner).
"""
from __future__ import annotations

import json
import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import Field

from astroray.config import AstrorayConfig
from astroray.errors import ConfigError
from astroray.text.conventions import CONVENTIONS, convention_of
from astroray.text.evaluation import LabelledText, evaluate, flatten_metrics, load_evalset
from astroray.text.pipeline import NerConfig, build_pipeline
from astroray.text.readers import InvalidTextError

__all__ = [
    "WeakLabelConfig",
    "WeakLabelledData",
    "simulated_examples",
    "wiesp_examples",
    "wiesp_name_label",
    "gcn_subject_examples",
    "rule_labels",
    "weak_training_set",
    "train_ner",
]

_LABEL_MAP = {"TRANSIENT": "EVENT"}


class WeakLabelConfig(AstrorayConfig):
    """How much of each weakly labelled source to use.

    Parameters
    ----------
    n_simulated : int
        Simulated documents.
    simulated_seed : int
    gazetteer_fraction : float
        Fraction of simulated names drawn from the gazetteer (when given).
    n_gcn_subjects : int
        GCN subjects labelled by the rules (0: none).
    n_wiesp : int or None
        WIESP training fragments (None: all but the held-out papers).
    wiesp_repeat : int
        Times each WIESP fragment is in the training set (its names are the
        ones without a naming convention, rare elsewhere).
    wiesp_holdout : float
        Fraction of WIESP papers (by bibcode) held out for evaluation.
    dev_fraction : float
        Fraction of the training texts kept for the dev set (early stopping).
    seed : int
    """

    n_simulated: int = Field(3000, ge=0)
    simulated_seed: int = 1
    gazetteer_fraction: float = Field(0.5, ge=0.0, le=1.0)
    n_gcn_subjects: int = Field(6000, ge=0)
    n_wiesp: int | None = Field(None, ge=0)
    wiesp_holdout: float = Field(0.15, ge=0.0, lt=1.0)
    wiesp_repeat: int = Field(2, ge=1, le=10)
    dev_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 0


@dataclass
class WeakLabelledData:
    """Training and dev texts, and the held-out WIESP papers (human labels, for evaluation)."""

    train: list[LabelledText]
    dev: list[LabelledText]
    wiesp_heldout: list[LabelledText]


# --------------------------------------------------------------------------- simulated text


def simulated_examples(n: int, *, seed: int = 1, gazetteer_dir: str | Path | None = None,
                       gazetteer_fraction: float = 0.5) -> list[LabelledText]:
    """``n`` simulated ATel/abstract texts with their spans (TRANSIENT -> EVENT)."""
    from astroray.datasets.text import TextConfig, simulate_documents

    cfg = TextConfig(gazetteer=None if gazetteer_dir is None else str(gazetteer_dir),
                     gazetteer_fraction=gazetteer_fraction)
    out = []
    for doc in simulate_documents(n, config=cfg, seed=seed):
        # the simulator also names regions ("Galactic Centre") as sources: not names here
        ents = tuple((e["start"], e["end"], _LABEL_MAP.get(e["label"], e["label"])) for e in doc.entities
                     if e["text"].lower() not in _NOT_SOURCES)
        out.append(LabelledText(doc.doc_id, doc.text, ents, {"source": "simulated", "kind": doc.kind}))
    return out


# --------------------------------------------------------------------------- WIESP 2022

# CelestialObject spans that are not names of sources in our sense
_NOT_SOURCES = frozenset(w.lower() for w in (
    "Sun", "Earth", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto", "Charon",
    "Galaxy", "Galactic", "Milky Way", "MW", "MWG", "Universe", "Solar System", "solar system", "CMB", "Local Group",
    "Local Bubble", "Local Universe", "Titan", "Europa", "Io", "Enceladus", "Ganymede", "Callisto", "Phobos",
    "Deimos", "Ceres", "Vesta", "Triton", "heliosphere", "Heliosphere", "Sgr", "Martian", "Jovian", "Saturnian",
    "Earth-Moon", "Earth–Moon", "Sun-like", "Milky Way-like", "MW-like", "Galactic Centre", "Galactic Center",
    "Galactic centre", "Galactic center", "Galactic plane", "Galactic bulge", "Galactic halo", "Galactic disc",
    "Galactic disk", "inner Galaxy", "outer Galaxy",
))
_SOLAR_SYSTEM_SMALL = re.compile(r"^(?:\d+P(?:/\w+)?|\d{4} [A-Z]{2} ?\d*|\(\d+\) \w+|67P.*)$")  # comets, asteroids
_TRAIL = ".,;:)]’'\""
_LEAD = "([‘'\""


def wiesp_name_label(text: str) -> str:
    """Our type for a WIESP ``CelestialObject`` span: ``SOURCE``/``EVENT``, ``O`` (not a name) or ``-`` (unsure)."""
    if not text:
        return "-"
    if text.lower() in _NOT_SOURCES or text.endswith(("-like", "’s", "'s")) or _SOLAR_SYSTEM_SMALL.match(text):
        return "O"
    if len(text) <= 2 and not any(ch.isdigit() for ch in text):
        return "-"  # "B", "e", "d": components and planets by letter, unclear alone
    key = convention_of(text)
    if key is not None:
        return CONVENTIONS[key].label
    if text[0].islower() and not re.match(r"^[\u03b1-\u03c9]|^(?:alpha|beta|gamma|delta|epsilon|zeta|eta|theta|kappa|"
                                           r"lambda|mu|nu|xi|omicron|pi|rho|sigma|tau|upsilon|phi|chi|psi|omega) ",
                                           text):
        return "O"  # "solar", "quiet-Sun": adjectives and common nouns
    return "SOURCE"


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _LEAD:
        start += 1
    while end > start and text[end - 1] in _TRAIL:
        if text[end - 1] == ")" and "(" in text[start:end - 1]:
            break  # "DDO 154 (UGC 8024)"
        end -= 1
    return start, end


_WIESP_FACILITY = {"Telescope", "Instrument", "Mission"}
_WIESP_UNSURE = {"Observatory", "Survey"}  # facilities mixed with organisations and catalogues


def wiesp_examples(path: str | Path, *, sections: Sequence[str] = ("fulltext", "acknowledgments")) -> list[LabelledText]:
    """The WIESP 2022 training split (Parquet, one row per token) as labelled texts.

    Tokens are joined by single spaces.  ``CelestialObject`` spans get
    :func:`wiesp_name_label`; ``Telescope``/``Instrument``/``Mission`` become
    ``FACILITY``; ``Observatory`` and ``Survey`` spans are marked unknown
    (``-``); everything else is outside any entity.

    Raises
    ------
    InvalidTextError
        The file is missing or lacks the columns ``unique_id``, ``tokens``, ``ner_tags``.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InvalidTextError("WIESP parquet file not found", source=str(path))
    table = pd.read_parquet(path)
    missing = {"unique_id", "tokens", "ner_tags", "bibcode", "section"} - set(table.columns)
    if missing:
        raise InvalidTextError(f"WIESP parquet lacks columns {sorted(missing)}", source=str(path))
    out = []
    for uid, group in table.groupby("unique_id", sort=True):
        if group["section"].iloc[0] not in sections:
            continue
        tokens, tags = group["tokens"].tolist(), group["ner_tags"].tolist()
        starts, pos = [], 0
        for tok in tokens:
            starts.append(pos)
            pos += len(tok) + 1
        text = " ".join(tokens)
        spans, k = [], 0
        while k < len(tags):
            tag = tags[k]
            if tag.startswith("B-"):
                kind, j = tag[2:], k + 1
                while j < len(tags) and tags[j] == "I-" + kind:
                    j += 1
                s, e = _trim(text, starts[k], starts[j - 1] + len(tokens[j - 1]))
                if e > s:
                    if kind == "CelestialObject":
                        label = wiesp_name_label(text[s:e])
                    elif kind in _WIESP_FACILITY:
                        label = "FACILITY"
                    elif kind in _WIESP_UNSURE:
                        label = "-"
                    else:
                        label = "O"
                    if label != "O":
                        spans.append((s, e, label))
                k = j
            else:
                k += 1
        out.append(LabelledText(str(uid), text, tuple(spans),
                                {"source": "wiesp2022", "bibcode": str(group["bibcode"].iloc[0])}))
    return out


# --------------------------------------------------------------------------- GCN subjects, rule labels


def rule_labels(texts: Sequence[tuple[str, str]], *, gazetteer_dir: str | Path | None = None,
                source: str = "rules") -> list[LabelledText]:
    """Texts labelled by the rules alone (conventions, facility phrases, gazetteer): ``(doc_id, text)`` pairs."""
    nlp = build_pipeline(NerConfig(model=False), gazetteer_dir=gazetteer_dir)
    out = []
    for (doc_id, text), doc in zip(texts, nlp.pipe([t for _, t in texts], batch_size=256)):
        ents = tuple((e.start_char, e.end_char, e.label_) for e in doc.ents)
        out.append(LabelledText(doc_id, text, ents, {"source": source}))
    return out


def gcn_subject_examples(path: str | Path, *, n: int | None = None, seed: int = 0,
                         exclude: Iterable[str] = (), gazetteer_dir: str | Path | None = None) -> list[LabelledText]:
    """GCN circular subjects (``{id: {"subject": ...}}``) labelled by the rules.

    ``exclude``: circular ids left out (those of the evaluation set); ``n``:
    a seeded random sample of that many.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidTextError("GCN subjects file not found", source=str(path))
    subjects = json.loads(path.read_text(encoding="utf-8"))
    excluded = set(str(e) for e in exclude)
    ids = sorted((k for k in subjects if k not in excluded and isinstance(subjects[k], dict)
                  and str(subjects[k].get("subject", "")).strip()), key=float)
    if n is not None and n < len(ids):
        ids = random.Random(seed).sample(ids, n)
    pairs = [(f"gcn-{k}", subjects[k]["subject"]) for k in ids]
    return rule_labels(pairs, gazetteer_dir=gazetteer_dir, source="gcn_subject_rules")


def weak_training_set(shared_data: str | Path, config: WeakLabelConfig | None = None, *,
                      gazetteer_dir: str | Path | None = None) -> WeakLabelledData:
    """Training and dev texts from the three weak sources, and WIESP's held-out papers.

    Parameters
    ----------
    shared_data : path-like
        The shared data folder (``text/wiesp2022``, ``text/gcn_circular_subjects.json``).
    config : WeakLabelConfig, optional
    gazetteer_dir : path-like, optional
        Gazetteer folder for the simulated names and the rule labels (default
        ``<shared_data>/text/gazetteer`` when it exists).
    """
    config = WeakLabelConfig() if config is None else config
    root = Path(shared_data) / "text"
    if gazetteer_dir is None and (root / "gazetteer").is_dir():
        gazetteer_dir = root / "gazetteer"
    rng = random.Random(config.seed)
    texts = simulated_examples(config.n_simulated, seed=config.simulated_seed, gazetteer_dir=gazetteer_dir,
                               gazetteer_fraction=config.gazetteer_fraction)
    heldout: list[LabelledText] = []
    wiesp_file = next(iter(sorted((root / "wiesp2022").glob("*TRAINING*.parquet"))), None)
    if wiesp_file is not None:
        wiesp = wiesp_examples(wiesp_file)
        papers = sorted({t.meta["bibcode"] for t in wiesp})
        held = set(random.Random(config.seed + 1).sample(papers, int(round(config.wiesp_holdout * len(papers)))))
        heldout = [t for t in wiesp if t.meta["bibcode"] in held]
        keep = [t for t in wiesp if t.meta["bibcode"] not in held]
        if config.n_wiesp is not None and config.n_wiesp < len(keep):
            keep = rng.sample(keep, config.n_wiesp)
        texts += keep
    if config.n_gcn_subjects:
        eval_ids = {d.meta.get("circular") for name in ("gcn_subjects_dev", "gcn_subjects_test")
                    for d in load_evalset(name)}
        texts += gcn_subject_examples(root / "gcn_circular_subjects.json", n=config.n_gcn_subjects, seed=config.seed,
                                      exclude=eval_ids, gazetteer_dir=gazetteer_dir)
    rng.shuffle(texts)
    n_dev = max(1, int(round(config.dev_fraction * len(texts))))
    train, dev = texts[n_dev:], texts[:n_dev]
    if config.wiesp_repeat > 1:  # repeated after the split: no fragment is in both
        train += [t for t in train if t.meta.get("source") == "wiesp2022"] * (config.wiesp_repeat - 1)
    return WeakLabelledData(train, dev, heldout)


# --------------------------------------------------------------------------- training


def _example(nlp, item: LabelledText, labels: Sequence[str]):
    from spacy.training import Example, offsets_to_biluo_tags

    doc = nlp.make_doc(item.text)
    known = [(s, e, _LABEL_MAP.get(lab, lab)) for s, e, lab in item.entities if lab != "-"]
    known = [(s, e, lab if lab in labels else "O") for s, e, lab in known]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # misaligned spans become "-" (unknown), as intended
        tags = offsets_to_biluo_tags(doc, [x for x in known if x[2] != "O"], missing="O")
    unknown = [(s, e) for s, e, lab in item.entities if lab == "-"]
    if unknown:
        for i, token in enumerate(doc):
            if any(token.idx < e and s < token.idx + len(token) for s, e in unknown):
                tags[i] = "-"
    return Example.from_dict(doc, {"entities": tags})


def train_ner(config: NerConfig, train_docs: Iterable, dev_docs: Iterable, *,
              on_epoch: Callable[[int, dict[str, float]], Any] | None = None,
              gazetteer_dir: str | Path | None = None):
    """Train the statistical tagger of a new pipeline; the rules stay as they are.

    Parameters
    ----------
    config : NerConfig
        Pipeline and training settings (``model`` must be True).
    train_docs, dev_docs : iterables of LabelledText (or simulated Documents, or dicts)
        Labelled texts; dev is scored with the whole pipeline after each epoch.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, metrics)`` after each epoch with flat float
        metrics: ``loss``, ``seconds``, ``words_per_second`` and the dev scores
        (``dev_names_f1``, ``dev_names_p``, ``dev_names_r``,
        ``dev_per_type_SOURCE_f1``, ...).  Epoch 0 is the untrained start.
    gazetteer_dir : path-like, optional
        Passed to :func:`~astroray.text.pipeline.build_pipeline`.

    Returns
    -------
    nlp : spacy.language.Language
        The pipeline with the tagger of the best dev names-F1 epoch.
    metrics : dict
        ``best_epoch``, ``best_dev_names_f1``, ``epochs_run``, ``train_seconds``,
        ``n_train``, ``n_dev``, ``stopped`` (``"epochs"``, ``"patience"`` or
        ``"time"``), ``history`` (the per-epoch dicts), ``dev`` (full scores of
        the best epoch).
    """
    from spacy.training.batchers import minibatch_by_words
    from spacy.util import fix_random_seed
    from thinc.api import Adam

    if not isinstance(config, NerConfig):
        raise TypeError(f"config must be a NerConfig, got {type(config).__name__}")
    if not config.model:
        raise ConfigError("train_ner needs config.model = True (there is no statistical model to train)")
    train = [LabelledText.from_any(d) for d in train_docs]
    dev = [LabelledText.from_any(d) for d in dev_docs]
    if not train or not dev:
        raise ValueError(f"need training and dev texts (got {len(train)} and {len(dev)})")
    fix_random_seed(config.seed)
    rng = random.Random(config.seed)
    nlp = build_pipeline(config, gazetteer_dir=gazetteer_dir)
    tagger = nlp.get_pipe("astroray_ner")
    examples = [_example(nlp, t, config.labels) for t in train]
    tagger.initialize(lambda: examples, nlp=nlp, labels=list(config.labels))
    optimizer = Adam(config.learning_rate, L2=config.l2)
    n_words = sum(len(eg.predicted) for eg in examples)

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    scores = evaluate(nlp, dev)
    first = {"epoch": 0.0, "loss": 0.0, "seconds": 0.0, "words_per_second": 0.0,
             **flatten_metrics(scores, prefix="dev_")}
    history.append(first)
    if on_epoch is not None:
        on_epoch(0, dict(first))
    best_f1, best_epoch, best_bytes, best_scores = -1.0, 0, tagger.to_bytes(), scores
    stopped = "epochs"
    for epoch in range(1, config.epochs + 1):
        rng.shuffle(examples)
        losses: dict[str, float] = {}
        t0 = time.perf_counter()
        words = 0
        out_of_time = False
        for batch in minibatch_by_words(examples, size=config.batch_words, tolerance=0.2, discard_oversize=False):
            tagger.update(batch, drop=config.dropout, sgd=optimizer, losses=losses)
            words += sum(len(eg.predicted) for eg in batch)
            if config.max_train_seconds is not None and time.perf_counter() - start > config.max_train_seconds:
                out_of_time = True
                break
        seconds = time.perf_counter() - t0
        scores = evaluate(nlp, dev)
        row = {"epoch": float(epoch), "loss": float(losses.get(tagger.name, 0.0)) / max(words, 1),
               "seconds": seconds, "words_per_second": words / seconds if seconds else 0.0,
               **flatten_metrics(scores, prefix="dev_")}
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, dict(row))
        if scores["names"]["f1"] > best_f1:
            best_f1, best_epoch, best_bytes, best_scores = scores["names"]["f1"], epoch, tagger.to_bytes(), scores
        if out_of_time:
            stopped = "time"
            break
        if epoch - best_epoch >= config.patience:
            stopped = "patience"
            break
    tagger.from_bytes(best_bytes)
    return nlp, {"best_epoch": best_epoch, "best_dev_names_f1": best_f1, "epochs_run": len(history) - 1,
                 "train_seconds": time.perf_counter() - start, "n_train": len(train), "n_dev": len(dev),
                 "n_train_words": n_words, "stopped": stopped, "history": history, "dev": best_scores}
