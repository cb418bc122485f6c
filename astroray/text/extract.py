"""Names found in documents, as rows: document id, entity text, type, offsets, normalised name.

::

    from astroray.text import NameFinder, load_pipeline, read_documents
    finder = NameFinder(load_pipeline("ner-model"))
    rows = finder.run(read_documents("atel_pages/"))
    # {"doc_id": "atel-12502", "text": "Swift J1728.9-3613", "label": "SOURCE", "start": 76,
    #  "end": 94, "normalised": "Swift J1728.9-3613", "source": "rule:swift"}

Documents longer than ``max_chunk_chars`` are cut at paragraph (else line,
else space) boundaries and processed piece by piece, offsets kept relative to
the whole text, so a 1 MB document is no special case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from astroray.text.conventions import normalise_name
from astroray.text.readers import InvalidTextError, TextDocument

__all__ = ["NameFinder", "NAME_ROW_FIELDS"]

NAME_ROW_FIELDS = ("doc_id", "text", "label", "start", "end", "normalised", "source")
"""Keys of every row :meth:`NameFinder.run` returns."""


@dataclass(frozen=True)
class _Piece:
    index: int  # which input document
    offset: int  # where the piece starts in that document's text
    text: str


def _as_pair(item: Any, index: int) -> tuple[str, str]:
    if isinstance(item, str):
        return f"doc-{index}", item
    if isinstance(item, TextDocument):
        return item.doc_id, item.text
    if isinstance(item, dict):
        if "text" not in item or not isinstance(item["text"], str):
            raise InvalidTextError(f"document {index} has no 'text' string (keys: {sorted(item)[:8]})")
        return str(item.get("doc_id", item.get("id", f"doc-{index}"))), item["text"]
    text = getattr(item, "text", None)
    if not isinstance(text, str):
        raise InvalidTextError(f"document {index} is a {type(item).__name__}, not text, a dict with 'text' "
                               "or a TextDocument")
    return str(getattr(item, "doc_id", f"doc-{index}")), text


def _chunks(text: str, limit: int) -> list[tuple[int, str]]:
    """(offset, piece) pieces of at most ``limit`` characters, cut where a name cannot be."""
    if len(text) <= limit:
        return [(0, text)]
    out = []
    start = 0
    while start < len(text):
        end = min(start + limit, len(text))
        if end < len(text):
            cut = -1
            for sep in ("\n\n", "\n", " "):
                cut = text.rfind(sep, start + limit // 2, end)
                if cut != -1:
                    end = cut + len(sep)
                    break
        out.append((start, text[start:end]))
        start = end
    return out


class NameFinder:
    """Finds source, event and facility names in documents with a pipeline.

    Parameters
    ----------
    nlp : spacy.language.Language
        From :func:`~astroray.text.pipeline.build_pipeline` (trained or not) or
        :func:`~astroray.text.pipeline.load_pipeline`.
    batch_size : int
        Documents per ``nlp.pipe`` batch.
    max_chunk_chars : int
        Longer texts are processed in pieces of at most this many characters.
    labels : sequence of str, optional
        Entity types to report (default: all).
    """

    def __init__(self, nlp, *, batch_size: int = 64, max_chunk_chars: int = 100_000,
                 labels: Sequence[str] | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 1_000 <= max_chunk_chars <= getattr(nlp, "max_length", 1_000_000):
            raise ValueError(f"max_chunk_chars must be within 1,000 and nlp.max_length ({nlp.max_length:,})")
        self.nlp = nlp
        self.batch_size = batch_size
        self.max_chunk_chars = max_chunk_chars
        self.labels = None if labels is None else frozenset(labels)

    def run(self, documents: Iterable) -> list[dict[str, Any]]:
        """Rows (dicts with :data:`NAME_ROW_FIELDS`) for every entity in ``documents``.

        Parameters
        ----------
        documents : iterable of TextDocument, str, or dict with ``text`` (and ``doc_id``)
            Empty texts give no rows.

        Raises
        ------
        InvalidTextError
            A document that is none of those.
        """
        pairs = [_as_pair(item, i) for i, item in enumerate(documents)]
        pieces = [_Piece(i, offset, piece) for i, (_, text) in enumerate(pairs) if text.strip()
                  for offset, piece in _chunks(text, self.max_chunk_chars)]
        rows: list[dict[str, Any]] = []
        docs = self.nlp.pipe((p.text for p in pieces), batch_size=self.batch_size)
        for piece, doc in zip(pieces, docs):
            doc_id = pairs[piece.index][0]
            for ent in doc.ents:
                if self.labels is not None and ent.label_ not in self.labels:
                    continue
                rows.append({"doc_id": doc_id, "text": ent.text, "label": ent.label_,
                             "start": piece.offset + ent.start_char, "end": piece.offset + ent.end_char,
                             "normalised": normalise_name(ent.text), "source": ent.ent_id_ or "model"})
        return rows

    __call__ = run

    def html(self, document, *, page: bool = False) -> str:
        """displaCy's entity view of one document, as HTML (``page``: a whole page)."""
        from spacy import displacy

        _, text = _as_pair(document, 0)
        doc = self.nlp(text[: self.max_chunk_chars])
        colors = {"SOURCE": "#7aecec", "EVENT": "#feca74", "FACILITY": "#c887fb"}
        return displacy.render(doc, style="ent", page=page, jupyter=False, options={"colors": colors})
