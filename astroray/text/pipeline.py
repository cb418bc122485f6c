"""The spaCy pipeline that finds source and event names: tokenizer, rules, statistical tagger.

Built from ``spacy.blank("en")`` (no downloaded model):

1. **tokenizer** (``astroray.designation_tokenizer.v1``): spaCy's English
   tokenizer, except that every name following a naming convention
   (:mod:`astroray.text.conventions`) is one token, spaces included:
   ``"GRB 221009A."`` -> ``["GRB 221009A", "."]``,
   ``"Swift J1727.8-1613"`` and ``"Sgr A*"`` stay whole.
2. **astroray_designations**: those names become entities (``SOURCE`` or
   ``EVENT``, span id ``rule:<convention>``).
3. **entity_ruler**: phrase patterns for facilities (``FACILITY``, id
   ``facility``) and, given a gazetteer folder, the real names in it
   (``SOURCE``/``EVENT``, id ``gazetteer``); it keeps the entities of step 2.
4. **astroray_ner**: a small statistical tagger (hash embeddings of NORM,
   PREFIX, SUFFIX and SHAPE, a CNN, a softmax over BILUO tags) that adds the
   names the rules miss (named stars, galaxies, clusters, catalogue names
   without a survey prefix) where no rule entity is.  A per-token tagger, not
   spaCy's transition-based ``ner``: at these sizes the transition system
   costs more than the tok2vec under it (measured on one core, 500-token
   documents, width 32, depth 1: the tok2vec alone 508 docs/s, with ``ner``
   145 docs/s), and the target is 200 ATel telegrams/s.

``nlp.to_disk(path)`` / ``spacy.load(path)`` round-trip once this module is
imported (it registers the tokenizer and the two factories).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import spacy
import srsly
from pydantic import Field, field_validator
from spacy.attrs import IDX, SPACY
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples
from spacy.util import registry
from thinc.api import Model, SequenceCategoricalCrossentropy

from astroray.config import AstrorayConfig
from astroray.text.conventions import CONVENTIONS, find_designations
from astroray.text.facilities import FACILITIES

__all__ = [
    "ENTITY_TYPES",
    "NerConfig",
    "DesignationTokenizer",
    "DesignationRuler",
    "TaggerNER",
    "build_pipeline",
    "load_pipeline",
    "tagger_model_config",
]

ENTITY_TYPES = ("SOURCE", "EVENT", "FACILITY")
"""Entity types of the pipeline; SOURCE and EVENT are names (:data:`~astroray.text.conventions.NAME_TYPES`)."""

_DESIGNATIONS_KEY = "astroray_designations"  # doc.user_data: the names the tokenizer found


class NerConfig(AstrorayConfig):
    """Settings of the name-finding pipeline and of its training.

    Parameters
    ----------
    labels : tuple of str
        Entity types the statistical tagger learns.
    rules : bool
        Mark names that follow a naming convention (step 2).
    facility_phrases : bool
        Mark facility names from :data:`~astroray.text.facilities.FACILITIES`.
    model : bool
        Add the statistical tagger (step 4).
    width, depth, embed_rows, window_size, maxout_pieces : int
        Size of the tagger's tok2vec: embedding/CNN width, CNN layers, hash
        rows per feature, CNN window (tokens each side), maxout pieces.
    min_score : float
        The tagger's entities are kept when the mean probability of their
        tags is at least this.
    epochs, batch_words, learning_rate, dropout, l2 : training settings
        Passes over the training set; tokens per minibatch; Adam's learning
        rate; dropout; L2 weight decay.
    patience : int
        Stop when the dev names-F1 has not improved for this many epochs.
    max_train_seconds : float or None
        Stop training after this much wall time (checked after each batch).
    seed : int
        Seed for initialisation and shuffling.
    """

    labels: tuple[str, ...] = ENTITY_TYPES
    rules: bool = True
    facility_phrases: bool = True
    model: bool = True
    width: int = Field(32, ge=8, le=512)
    depth: int = Field(2, ge=1, le=8)
    embed_rows: int = Field(4000, ge=100, le=200_000)
    window_size: int = Field(1, ge=1, le=3)
    maxout_pieces: int = Field(2, ge=1, le=4)
    min_score: float = Field(0.5, ge=0.0, le=1.0)
    epochs: int = Field(6, ge=1, le=1000)
    batch_words: int = Field(2000, ge=16)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    l2: float = Field(1e-6, ge=0.0)
    patience: int = Field(3, ge=1)
    max_train_seconds: float | None = Field(None, gt=0.0)
    seed: int = 0

    @field_validator("labels")
    @classmethod
    def _labels(cls, value):
        if not value or len(set(value)) != len(value) or any(not v or not v.isupper() for v in value):
            raise ValueError("labels must be distinct upper-case entity types, e.g. ('SOURCE', 'EVENT', 'FACILITY')")
        return value


def tagger_model_config(config: NerConfig) -> dict:
    """The thinc model config of the statistical tagger for ``config``."""
    attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
    return {
        "@architectures": "spacy.Tagger.v2",
        "nO": None,
        "normalize": True,  # probabilities at inference too, for min_score
        "tok2vec": {
            "@architectures": "spacy.Tok2Vec.v2",
            "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": config.width, "attrs": attrs,
                      "rows": [config.embed_rows] * len(attrs), "include_static_vectors": False},
            "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": config.width,
                       "depth": config.depth, "window_size": config.window_size,
                       "maxout_pieces": config.maxout_pieces},
        },
    }


# --------------------------------------------------------------------------- tokenizer


class DesignationTokenizer:
    """spaCy's tokenizer, with every convention-following name kept as one token.

    Parameters
    ----------
    vocab : Vocab
    base : callable
        The tokenizer for the text between names (spaCy's English one).
    conventions : list of str or None
        Keys of :data:`~astroray.text.conventions.CONVENTIONS` (None: all).
    """

    def __init__(self, vocab, base, conventions: list[str] | None = None):
        self.vocab = vocab
        self.base = base
        self.conventions = None if conventions is None else list(conventions)

    def __call__(self, text: str) -> Doc:
        found = find_designations(text, conventions=self.conventions)
        doc = self.base(text)
        if not found:
            return doc
        spans = [doc.char_span(d.start, d.end, alignment_mode="strict") for d in found]
        if all(span is not None for span in spans):  # the usual case: names are whole base tokens
            with doc.retokenize() as retokenizer:
                for span in spans:
                    if len(span) > 1:
                        retokenizer.merge(span)
            doc.user_data[_DESIGNATIONS_KEY] = [(d.start, d.end, d.label, d.convention) for d in found]
            return doc
        # Start from the base tokens' character spans; each name becomes one token.  Tokens
        # inside a name go; a token cut by a name's edge ("221009A." at "GRB 221009A.") keeps
        # its part outside the name, tokenized again as a fragment.
        arr = doc.to_array([IDX, SPACY]).tolist()
        n = len(arr)
        tokens = []  # [start, end, space after, fragment]
        for i, (start, space) in enumerate(arr):
            end = (arr[i + 1][0] if i + 1 < n else len(text)) - space
            tokens.append([start, end, bool(space), False])
        words: list[str] = []
        spaces: list[bool] = []
        k = 0
        for name in found:
            while k < n and tokens[k][1] <= name.start:  # before the name
                self._emit(text, tokens[k], words, spaces)
                k += 1
            if k < n and tokens[k][0] < name.start:  # running into the name
                self._emit(text, [tokens[k][0], name.start, False, True], words, spaces)
            while k < n and tokens[k][1] <= name.end:  # inside the name
                k += 1
            words.append(name.text)
            if k < n and tokens[k][0] < name.end:  # running out of the name
                spaces.append(False)
                tokens[k] = [name.end, tokens[k][1], tokens[k][2], True]
            else:
                spaces.append(text.startswith(" ", name.end))
        for token in tokens[k:]:
            self._emit(text, token, words, spaces)
        out = Doc(self.vocab, words=words, spaces=spaces)
        out.user_data[_DESIGNATIONS_KEY] = [(d.start, d.end, d.label, d.convention) for d in found]
        return out

    def _emit(self, text: str, token, words: list[str], spaces: list[bool]):
        start, end, space, fragment = token
        if not fragment or end - start == 1:
            words.append(text[start:end])
            spaces.append(space)
        else:
            self._pieces(text[start:end], words, spaces)
            spaces[-1] = space

    def _pieces(self, piece: str, words: list[str], spaces: list[bool]):
        """The base tokenizer's tokens of a piece of a token (no spaces inside)."""
        if len(piece) == 1:
            words.append(piece)
            spaces.append(False)
            return
        for token in self.base(piece):
            words.append(token.text)
            spaces.append(bool(token.whitespace_))

    def pipe(self, texts: Iterable[str], batch_size: int = 1000):
        for text in texts:
            yield self(text)

    # serialisation: the base tokenizer's rules and the conventions used
    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return srsly.msgpack_dumps({"base": self.base.to_bytes(exclude=exclude), "conventions": self.conventions})

    def from_bytes(self, data: bytes, *, exclude=tuple()):
        msg = srsly.msgpack_loads(data)
        self.base.from_bytes(msg["base"], exclude=exclude)
        self.conventions = msg["conventions"]
        return self

    def to_disk(self, path, *, exclude=tuple()):
        Path(path).write_bytes(self.to_bytes(exclude=exclude))

    def from_disk(self, path, *, exclude=tuple()):
        return self.from_bytes(Path(path).read_bytes(), exclude=exclude)


@registry.tokenizers("astroray.designation_tokenizer.v1")
def create_designation_tokenizer(conventions: list[str] | None = None) -> Callable[[Language], DesignationTokenizer]:
    """Registered tokenizer factory (``[nlp.tokenizer] @tokenizers = "astroray.designation_tokenizer.v1"``)."""
    default = registry.tokenizers.get("spacy.Tokenizer.v1")()

    def make(nlp: Language) -> DesignationTokenizer:
        return DesignationTokenizer(nlp.vocab, default(nlp), conventions)

    return make


# --------------------------------------------------------------------------- rule component


class DesignationRuler:
    """Marks every convention-following name as an entity (``rule:<convention>`` span id).

    Keeps entities already set; names overlapping them are skipped.
    """

    def __init__(self, nlp: Language, name: str = "astroray_designations", *, conventions: list[str] | None = None):
        self.name = name
        self.conventions = None if conventions is None else list(conventions)
        for key in self.conventions or ():
            if key not in CONVENTIONS:
                raise ValueError(f"unknown naming convention {key!r}; known: {sorted(CONVENTIONS)}")

    def __call__(self, doc: Doc) -> Doc:
        found = doc.user_data.get(_DESIGNATIONS_KEY)
        if found is None or self.conventions is not None:
            found = [(d.start, d.end, d.label, d.convention)
                     for d in find_designations(doc.text, conventions=self.conventions)]
        if not found:
            return doc
        spans = []
        for start, end, label, convention in found:
            span = doc.char_span(start, end, label=label, alignment_mode="strict")
            if span is not None:
                spans.append(Span(doc, span.start, span.end, label=label, span_id=f"rule:{convention}"))
        doc.ents = _merge(doc.ents, spans)
        return doc


@Language.factory("astroray_designations", default_config={"conventions": None}, assigns=["doc.ents"])
def make_designation_ruler(nlp: Language, name: str, conventions: list[str] | None) -> DesignationRuler:
    return DesignationRuler(nlp, name, conventions=conventions)


def _merge(kept: Iterable[Span], extra: Iterable[Span]) -> list[Span]:
    """``kept`` spans, plus those of ``extra`` that overlap none of them (nor each other)."""
    kept = list(kept)
    taken = set()
    for span in kept:
        taken.update(range(span.start, span.end))
    out = list(kept)
    for span in extra:
        if not taken.intersection(range(span.start, span.end)):
            out.append(span)
            taken.update(range(span.start, span.end))
    return sorted(out, key=lambda s: s.start)


# --------------------------------------------------------------------------- statistical tagger


class TaggerNER(TrainablePipe):
    """Named entities from a per-token BILUO tagger, added where no entity is yet.

    Parameters
    ----------
    vocab : Vocab
    model : thinc Model
        Docs -> per-token tag probabilities (``spacy.Tagger.v2``).
    name : str
    min_score : float
        An entity is kept when the mean probability of its tokens' tags is at
        least this.
    scorer : callable
    """

    def __init__(self, vocab, model: Model, name: str = "astroray_ner", *, min_score: float = 0.5, scorer=None):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg = {"labels": [], "min_score": float(min_score)}
        self.scorer = scorer

    # -- labels: the entity types; the tags are O and B/I/L/U of each
    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def tags(self) -> tuple[str, ...]:
        return ("O",) + tuple(f"{p}-{label}" for label in self.labels for p in "BILU")

    @property
    def label_data(self):
        return self.labels

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError("an entity label must be a non-empty string")
        if label in self.cfg["labels"]:
            return 0
        self._allow_extra_label()
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp=None, labels=None):
        """Set the labels (given, or the entity types in the examples) and the model's shapes."""
        if labels is not None:
            for label in labels:
                self.add_label(label)
        else:
            for label in sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents}):
                self.add_label(label)
        self._require_labels()
        sample = [eg.predicted for eg, _ in zip(get_examples(), range(16))]
        if not sample:
            raise ValueError(f"{self.name}: no examples to initialise from")
        tags = self.tags
        truth = []
        for doc in sample:
            y = np.zeros((len(doc), len(tags)), dtype="float32")
            y[:, 0] = 1.0
            truth.append(self.model.ops.asarray(y))
        self.model.initialize(X=sample, Y=truth)

    def predict(self, docs):
        docs = list(docs)
        if not self.labels or not self.model.has_dim("nO") or not self.model.get_dim("nO"):
            return [None] * len(docs)  # not trained: add nothing
        if not any(len(doc) for doc in docs):
            return [None] * len(docs)
        scores = self.model.predict(docs)
        out = []
        for doc_scores in scores:
            doc_scores = self.model.ops.to_numpy(doc_scores)
            out.append((doc_scores.argmax(axis=1), doc_scores.max(axis=1)))
        return out

    def set_annotations(self, docs, predictions):
        if isinstance(docs, Doc):
            docs = [docs]
        tags = self.tags
        min_score = self.cfg["min_score"]
        for doc, pred in zip(docs, predictions):
            if pred is None:
                continue
            best, prob = pred
            if not best.any():
                continue
            spans = [Span(doc, s, e, label=label, span_id="model")
                     for s, e, label, score in _decode(best, prob, tags) if score >= min_score]
            if spans:
                doc.ents = _merge(doc.ents, spans)

    def get_loss(self, examples: Iterable[Example], scores):
        validate_examples(examples, "TaggerNER.get_loss")
        loss_func = SequenceCategoricalCrossentropy(names=self.tags, normalize=False, missing_value=None)
        truths = [_gold_tags(eg) for eg in examples]
        d_scores, loss = loss_func(scores, truths)
        if self.model.ops.xp.isnan(loss):
            raise ValueError(f"{self.name}: the loss is NaN (learning rate too high?)")
        return float(loss), d_scores


def _decode(best: np.ndarray, prob: np.ndarray, tags: tuple[str, ...]) -> list[tuple[int, int, str, float]]:
    """Spans (start, end, label, mean tag probability) from per-token tag indices (0 is O).

    Lenient: an I or L tag without an open entity of its label starts one; an
    O tag, or the start of another entity, ends the open one.
    """
    spans: list[tuple[int, int, str, float]] = []
    label, start, prev = None, 0, -2
    for i in np.flatnonzero(best).tolist():
        if label is not None and i != prev + 1:  # an O token came between
            spans.append((start, prev + 1, label, float(prob[start:prev + 1].mean())))
            label = None
        prefix, tag_label = tags[int(best[i])].split("-", 1)
        if prefix == "U":
            if label is not None:
                spans.append((start, i, label, float(prob[start:i].mean())))
            spans.append((i, i + 1, tag_label, float(prob[i])))
            label = None
        elif prefix == "B" or tag_label != label:
            if label is not None:
                spans.append((start, i, label, float(prob[start:i].mean())))
            label, start = tag_label, i
            if prefix == "L":
                spans.append((i, i + 1, label, float(prob[i])))
                label = None
        elif prefix == "L":
            spans.append((start, i + 1, label, float(prob[start:i + 1].mean())))
            label = None
        prev = i
    if label is not None:
        spans.append((start, prev + 1, label, float(prob[start:prev + 1].mean())))
    return spans


def _gold_tags(eg: Example) -> list[str | None]:
    """BILUO tags of the reference entities on the predicted tokens (None: unknown)."""
    pred, ref = eg.predicted, eg.reference
    if len(pred) == len(ref) and pred.text == ref.text and (pred.to_array(IDX) == ref.to_array(IDX)).all():
        iob = ref.to_array("ENT_IOB").tolist()  # 0 missing, 1 I, 2 O, 3 B
        types = [t.ent_type_ for t in ref]
        out: list[str | None] = []
        n = len(iob)
        for i, code in enumerate(iob):
            if code == 0:
                out.append(None)
            elif code == 2:
                out.append("O")
            else:
                inside_next = i + 1 < n and iob[i + 1] == 1
                if code == 3:
                    out.append(("B-" if inside_next else "U-") + types[i])
                else:
                    out.append(("I-" if inside_next else "L-") + types[i])
        return out
    return [t if t != "-" else None for t in eg.get_aligned_ner()]


@Language.factory("astroray_ner", default_config={
    "model": {"@architectures": "spacy.Tagger.v2", "nO": None, "normalize": True,
              "tok2vec": {"@architectures": "spacy.HashEmbedCNN.v2", "pretrained_vectors": None, "width": 32,
                          "depth": 2, "embed_size": 4000, "window_size": 1, "maxout_pieces": 2,
                          "subword_features": True}},
    "min_score": 0.5,
    "scorer": {"@scorers": "spacy.ner_scorer.v1"},
}, assigns=["doc.ents"], default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0})
def make_tagger_ner(nlp: Language, name: str, model: Model, min_score: float, scorer) -> TaggerNER:
    return TaggerNER(nlp.vocab, model, name, min_score=min_score, scorer=scorer)


# --------------------------------------------------------------------------- building


def _phrase_patterns(gazetteer_dir) -> list[dict]:
    patterns = [{"label": "FACILITY", "pattern": name, "id": "facility"} for name in FACILITIES]
    if gazetteer_dir is not None:
        from astroray.text.gazetteer import load_gazetteer_names

        names = load_gazetteer_names(str(Path(gazetteer_dir).resolve()))
        patterns += [{"label": "SOURCE", "pattern": name, "id": "gazetteer"} for name in names.sources]
        patterns += [{"label": "EVENT", "pattern": name, "id": "gazetteer"} for name in names.transients]
    return patterns


def build_pipeline(config: NerConfig | None = None, gazetteer_dir: str | Path | None = None) -> Language:
    """A new, untrained name-finding pipeline.

    Parameters
    ----------
    config : NerConfig, optional
    gazetteer_dir : path-like, optional
        Folder of real names (see :mod:`astroray.text.gazetteer`), read now and
        kept in the pipeline's entity ruler (saved with it by ``to_disk``).

    Returns
    -------
    spacy.language.Language
        Tokenizer, then ``astroray_designations`` (if ``config.rules``),
        ``entity_ruler`` (if facility phrases or a gazetteer), and
        ``astroray_ner`` (if ``config.model``; it adds nothing until trained by
        :func:`astroray.text.training.train_ner`).

    Raises
    ------
    InvalidTextError
        The gazetteer folder is missing or holds no name list.
    """
    config = NerConfig() if config is None else config
    if not isinstance(config, NerConfig):
        raise TypeError(f"config must be a NerConfig, got {type(config).__name__}")
    nlp = spacy.blank("en", config={"nlp": {"tokenizer": {"@tokenizers": "astroray.designation_tokenizer.v1"}}})
    if config.rules:
        nlp.add_pipe("astroray_designations")
    if config.facility_phrases or gazetteer_dir is not None:
        ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": None, "overwrite_ents": False,
                                                    "validate": False})
        patterns = _phrase_patterns(gazetteer_dir)
        if not config.facility_phrases:
            patterns = [p for p in patterns if p["label"] != "FACILITY"]
        with nlp.select_pipes(enable=[]):
            ruler.add_patterns(patterns)
    if config.model:
        nlp.add_pipe("astroray_ner", config={"model": tagger_model_config(config), "min_score": config.min_score})
    return nlp


def load_pipeline(path: str | Path) -> Language:
    """``spacy.load(path)`` with astroray's components registered (this module imported)."""
    return spacy.load(Path(path))
