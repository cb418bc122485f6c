"""Readers for astronomy text: ATel pages and RSS, GCN circulars, abstracts, plain text.

Every reader gives :class:`TextDocument` records: an id, the text names are
looked for in, its title, the kind of source and a ``meta`` dict (authors,
subjects, dates, numbers).  Where a source has a title it starts the text,
followed by a blank line (``text == title + "\\n\\n" + body``), so character
offsets of entities refer to one string.

* ATel web pages (:func:`parse_atel_html`): title, authors, subjects and the
  telegram body alone; the site's header, sidebar ("Related"), navigation,
  adverts, scripts and tweet buttons are left out.
* the ATel RSS 2.0 feed (:func:`parse_atel_rss`): one document per item.
* GCN circulars as JSON (:func:`parse_gcn_json`: one circular with
  ``subject`` and ``body``, a list of them, or the ``{id: {"subject": ...}}``
  archive of subjects) and in their plain-text e-mail form
  (:func:`parse_gcn_text`).
* abstracts as JSON Lines (:func:`parse_jsonl`) and plain text
  (:func:`parse_plain_text`).

:func:`read_documents` reads a file or a folder of them, choosing the reader
from the file name and contents.  Bad input (empty, not UTF-8, not the format,
too large) raises :class:`InvalidTextError` naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator, Literal

from astroray.errors import InvalidTextError

__all__ = [
    "InvalidTextError",
    "TextDocument",
    "DOCUMENT_KINDS",
    "MAX_DOCUMENT_BYTES",
    "decode_text",
    "html_to_text",
    "parse_atel_html",
    "parse_atel_rss",
    "parse_gcn_json",
    "parse_gcn_text",
    "parse_jsonl",
    "parse_plain_text",
    "read_documents",
]

DOCUMENT_KINDS = ("atel", "gcn", "abstract", "text")
MAX_DOCUMENT_BYTES = 20_000_000
"""Largest input the readers accept (20 MB); larger files raise :class:`InvalidTextError`."""


@dataclass(frozen=True)
class TextDocument:
    """One document to look for names in.

    Attributes
    ----------
    doc_id : str
        Stable id (``atel-12500``, ``gcn-32632``, the abstract's id, or the
        file name).
    text : str
        The text entities' character offsets refer to; starts with ``title``
        and a blank line where there is a title.
    title : str
        Title or subject ("" if none).
    kind : str
        ``"atel"``, ``"gcn"``, ``"abstract"`` or ``"text"``.
    meta : dict
        Anything else the source says (authors, subjects, dates, URL, file).
    """

    doc_id: str
    text: str
    title: str = ""
    kind: str = "text"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def body_start(self) -> int:
        """Offset in ``text`` where the body starts (after the title and blank line)."""
        return len(self.title) + 2 if self.title and self.text.startswith(self.title + "\n\n") else 0

    def to_dict(self) -> dict:
        return {"doc_id": self.doc_id, "text": self.text, "title": self.title, "kind": self.kind,
                "meta": dict(self.meta)}


def _join(title: str, body: str) -> str:
    return f"{title}\n\n{body}" if title and body else (title or body)


# --------------------------------------------------------------------------- bytes -> str


def decode_text(data: bytes | str, *, source: str | None = None, encoding: str = "utf-8",
                max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """Decode ``data`` strictly, refusing what is empty, too large or not in ``encoding``.

    Raises
    ------
    InvalidTextError
        Empty (or only white space), larger than ``max_bytes``, or bytes that
        are not valid ``encoding``; the message gives the offset of the first
        bad byte.
    """
    if isinstance(data, str):
        text = data
        size = len(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        size = len(data)
        if size > max_bytes:
            raise InvalidTextError(f"{size:,} bytes is more than the {max_bytes:,} bytes a document may have; "
                                   "split it first", source=source)
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InvalidTextError(f"not valid {encoding} text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                   "re-encode the file as UTF-8 or pass its encoding", source=source) from None
        except LookupError:
            raise InvalidTextError(f"unknown text encoding {encoding!r}", source=source) from None
    else:
        raise InvalidTextError(f"expected bytes or str, got {type(data).__name__}", source=source)
    if size > max_bytes:
        raise InvalidTextError(f"{size:,} characters is more than the {max_bytes:,} a document may have; "
                               "split it first", source=source)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise InvalidTextError("empty document (no text)", source=source)
    return text


# --------------------------------------------------------------------------- HTML -> text

_BLOCK = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "tr", "ul", "ol", "li", "dl", "dt",
                    "dd", "center", "blockquote", "hr", "section", "article", "header", "footer", "form", "address"})
_SKIP = frozenset({"script", "style", "iframe", "noscript", "ins", "object", "embed", "svg", "head", "button",
                   "select", "textarea", "template"})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "wbr", "source", "param"})
_BR, _PARA = "\x00BR\x00", "\x00PARA\x00"


class _TextCollector:
    """Collects text pieces and line/paragraph breaks, then joins them tidily."""

    def __init__(self):
        self.parts: list[str] = []
        self.pre = 0

    def data(self, text: str):
        if self.pre:
            self.parts.append(text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", _BR))
        else:
            self.parts.append(text)

    def br(self):
        self.parts.append(_BR)

    def para(self):
        self.parts.append(_PARA)

    def text(self) -> str:
        raw = "".join(self.parts)
        paragraphs = []
        for para in raw.split(_PARA):
            lines = [re.sub(r"\s+", " ", line).strip() for line in para.split(_BR)]
            # keep single line breaks (tables, addresses); runs of empty lines become one paragraph break
            block, out = [], []
            for line in lines:
                if line:
                    block.append(line)
                elif block:
                    out.append("\n".join(block))
                    block = []
            if block:
                out.append("\n".join(block))
            paragraphs.extend(out)
        return "\n\n".join(paragraphs)


class _Skipper:
    """Tracks subtrees whose text is not wanted (scripts, frames, adverts, tweet buttons)."""

    def __init__(self):
        self.stack: list[str] = []

    def start(self, tag: str, attrs: dict) -> bool:
        """True if this start tag is inside, or begins, a skipped subtree."""
        if self.stack:
            if tag == self.stack[-1] or (tag in _SKIP and tag not in _VOID):
                self.stack.append(tag)
            return True
        if (tag in _SKIP and tag not in _VOID) or (tag == "a" and "twitter" in (attrs.get("class") or "")):
            self.stack.append(tag)
            return True
        return False

    def end(self, tag: str) -> bool:
        """True if this end tag is inside, or closes, a skipped subtree."""
        if not self.stack:
            return False
        if tag == self.stack[-1]:
            self.stack.pop()
        return True

    @property
    def active(self) -> bool:
        return bool(self.stack)


class _HTMLText(HTMLParser):
    """Visible text of an HTML fragment, paragraphs separated by blank lines."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = _TextCollector()
        self.skipper = _Skipper()

    def handle_starttag(self, tag, attrs):
        if self.skipper.start(tag, dict(attrs)):
            return
        if tag == "br":
            self.out.br()
        elif tag in _BLOCK:
            self.out.para()
        if tag == "pre":
            self.out.pre += 1

    def handle_endtag(self, tag):
        if self.skipper.end(tag):
            return
        if tag in _BLOCK:
            self.out.para()
        if tag == "pre":
            self.out.pre = max(0, self.out.pre - 1)

    def handle_data(self, data):
        if not self.skipper.active:
            self.out.data(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML fragment: scripts, styles and frames left out,
    paragraphs separated by a blank line, runs of white space made one space."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.out.text()


class _AtelPage(HTMLParser):
    """Walks an ATel page.

    The telegram is ``<div id="telegram">``: a navigation ``div#tnav``, the
    ``h1`` title, an author paragraph (``ATel #N; <strong>authors</strong> on
    <strong>date</strong> ...``), ``div#subjects``, a tweet button, then the
    body up to the div's end.  Everything outside it (site header, the
    "Related" sidebar, adverts, footer) is site furniture.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skipper = _Skipper()
        self.page_title: list[str] = []
        self.in_page_title = False
        self.depth = 0  # divs open inside div#telegram (0: outside it)
        self.found_telegram = False
        self.section = ""  # "header" -> "title" -> "author" -> "body"; "nav", "subjects" in between
        self.section_depth = 0
        self.title: list[str] = []
        self.header: list[str] = []
        self.strong: list[list[str]] = []
        self.in_strong = 0
        self.subjects: list[str] = []
        self.body = _TextCollector()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title" and not self.found_telegram:
            self.in_page_title = True
        if self.skipper.start(tag, attrs):
            return
        if not self.depth:
            if tag == "div" and attrs.get("id") == "telegram" and not self.found_telegram:
                self.depth = 1
                self.found_telegram = True
                self.section = "header"
            return
        if tag == "div":
            self.depth += 1
            if attrs.get("id") in ("tnav", "subjects"):
                if attrs["id"] == "subjects":
                    self.body = _TextCollector()  # only white space (or nothing) came before it
                self.section = "nav" if attrs["id"] == "tnav" else "subjects"
                self.section_depth = self.depth
                return
        if tag == "h1" and self.section == "header":
            self.section = "title"
            return
        if self.section in ("header", "author") and tag == "strong":
            self.in_strong += 1
            self.strong.append([])
        if self.section == "body":
            if tag == "br":
                self.body.br()
            elif tag in _BLOCK:
                self.body.para()
            if tag == "pre":
                self.body.pre += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_page_title = False
        if self.skipper.end(tag) or not self.depth:
            return
        if tag == "div":
            if self.section in ("nav", "subjects") and self.depth == self.section_depth:
                self.section = "body" if self.section == "subjects" else "header"
            self.depth -= 1
            if self.depth == 0:
                self.section = ""
            return
        if tag == "h1" and self.section == "title":
            self.section = "author"
            return
        if tag == "strong" and self.in_strong:
            self.in_strong -= 1
        if tag == "p" and self.section == "author":
            self.section = "body"  # pages without a subjects line go straight on to the body
            return
        if self.section == "body":
            if tag in _BLOCK:
                self.body.para()
            if tag == "pre":
                self.body.pre = max(0, self.body.pre - 1)

    def handle_data(self, data):
        if self.in_page_title:
            self.page_title.append(data)
        if self.skipper.active or not self.depth:
            return
        if self.section == "title":
            self.title.append(data)
        elif self.section in ("header", "author"):
            self.header.append(data)
            if self.in_strong:
                self.strong[-1].append(data)
        elif self.section == "subjects":
            self.subjects.append(data)
        elif self.section == "body":
            self.body.data(data)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_atel_html(html: bytes | str, *, source: str | None = None, encoding: str = "utf-8") -> TextDocument:
    """One ATel web page as a :class:`TextDocument`.

    ``text`` is the telegram's title, a blank line and its body; the body's
    paragraphs are separated by blank lines.  ``meta`` holds ``atel`` (the
    number), ``authors``, ``posted``, ``subjects`` (list) and ``page_title``.

    Raises
    ------
    InvalidTextError
        Not decodable, empty, or no telegram in the page (an HTML page without
        ATel's ``<div id="telegram">``, or one whose telegram has no body).
    """
    text = decode_text(html, source=source, encoding=encoding)
    page = _AtelPage()
    try:
        page.feed(text)
        page.close()
    except Exception as exc:  # html.parser is lenient; anything it still refuses is bad input
        raise InvalidTextError(f"unreadable HTML ({exc})", source=source) from None
    if not page.found_telegram:
        raise InvalidTextError("no ATel telegram in this HTML (no <div id=\"telegram\">); "
                               "use html_to_text for other pages", source=source)
    title = _squash("".join(page.title))
    page_title = _squash("".join(page.page_title))
    if not title and page_title:
        title = re.sub(r"^ATel\s*#\s*\d+\s*:\s*", "", page_title)
    body = page.body.text()
    if not body:
        raise InvalidTextError("the ATel page has no telegram body", source=source)
    header = _squash("".join(page.header))
    number = re.search(r"ATel\s*#\s*(\d+)", header) or re.search(r"ATel\s*#\s*(\d+)", page_title)
    strongs = [_squash("".join(s)) for s in page.strong if _squash("".join(s))]
    subjects_text = _squash("".join(page.subjects))
    subjects = [s.strip() for s in re.sub(r"^Subjects?:\s*", "", subjects_text).split(",") if s.strip()]
    meta: dict[str, Any] = {"page_title": page_title, "subjects": subjects}
    if number:
        meta["atel"] = int(number.group(1))
    if strongs:
        meta["authors"] = strongs[0]
    if len(strongs) > 1:
        meta["posted"] = strongs[1]
    credential = re.search(r"Credential Certification:\s*(.+)$", header)
    if credential:
        meta["credential"] = credential.group(1).strip()
    if source:
        meta["source"] = str(source)
    doc_id = f"atel-{meta['atel']}" if "atel" in meta else _fallback_id("atel", source, text)
    return TextDocument(doc_id, _join(title, body), title, "atel", meta)


def _fallback_id(kind: str, source: str | None, text: str) -> str:
    if source:
        return f"{kind}-{Path(str(source)).stem}"
    return f"{kind}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


# --------------------------------------------------------------------------- ATel RSS

_DOCTYPE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def _parse_xml(text: str, *, source: str | None) -> ET.Element:
    if _DOCTYPE.search(text[:4096]) or "<!ENTITY" in text:
        raise InvalidTextError("XML with a DOCTYPE or entity declarations is refused (entity expansion)",
                               source=source)
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise InvalidTextError(f"not well-formed XML ({exc})", source=source) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_atel_rss(feed: bytes | str, *, source: str | None = None, encoding: str = "utf-8") -> list[TextDocument]:
    """The items of the ATel RSS 2.0 feed, one :class:`TextDocument` each.

    ``text`` is the item's title (``ATel #N:`` prefix taken off), a blank line
    and its description as plain text (the feed carries it as escaped HTML).
    ``meta`` holds ``atel``, ``link``, ``published``, ``authors`` (from
    ``dc:creator`` or ``author``) and ``subjects`` (the ``category`` elements).

    Raises
    ------
    InvalidTextError
        Not decodable, not XML, not RSS 2.0 (no ``channel``), or an item
        without title and description.
    """
    text = decode_text(feed, source=source, encoding=encoding)
    root = _parse_xml(text.lstrip(), source=source)
    if _local(root.tag) != "rss":
        raise InvalidTextError(f"not an RSS feed (root element <{_local(root.tag)}>, expected <rss>)", source=source)
    channel = next((child for child in root if _local(child.tag) == "channel"), None)
    if channel is None:
        raise InvalidTextError("RSS feed without a <channel>", source=source)
    docs = []
    for k, item in enumerate(child for child in channel if _local(child.tag) == "item"):
        fields: dict[str, list[str]] = {}
        for child in item:
            fields.setdefault(_local(child.tag), []).append((child.text or "").strip())
        raw_title = _squash(fields.get("title", [""])[0])
        description = html_to_text(fields.get("description", [""])[0])
        if not raw_title and not description:
            raise InvalidTextError(f"item {k} has neither title nor description", source=source)
        number = re.match(r"ATel\s*#\s*(\d+)\s*:?\s*", raw_title)
        title = raw_title[number.end():] if number else raw_title
        link = fields.get("link", [""])[0]
        if number is None:
            number = re.search(r"read=(\d+)", link)
        meta: dict[str, Any] = {"link": link, "subjects": fields.get("category", [])}
        if number:
            meta["atel"] = int(number.group(1))
        if fields.get("pubDate"):
            meta["published"] = fields["pubDate"][0]
        authors = fields.get("creator") or fields.get("author")
        if authors:
            meta["authors"] = authors[0]
        if source:
            meta["source"] = str(source)
        guid = fields.get("guid", [""])[0]
        doc_id = f"atel-{meta['atel']}" if "atel" in meta else (guid or f"{_fallback_id('atel', source, text)}-{k}")
        docs.append(TextDocument(doc_id, _join(title, description), title, "atel", meta))
    return docs


# --------------------------------------------------------------------------- GCN circulars

_GCN_HEADER = re.compile(r"^(TITLE|NUMBER|SUBJECT|DATE|FROM):[ \t]*(.*)$")


def _gcn_document(record: dict, *, source: str | None, where: str) -> TextDocument:
    if not isinstance(record, dict):
        raise InvalidTextError(f"{where}: a circular must be a JSON object, got {type(record).__name__}",
                               source=source)
    subject = record.get("subject")
    body = record.get("body", "")
    if subject is None and not body:
        raise InvalidTextError(f"{where}: a circular needs 'subject' or 'body' (keys: {sorted(record)[:8]})",
                               source=source)
    if not isinstance(subject or "", str) or not isinstance(body or "", str):
        raise InvalidTextError(f"{where}: 'subject' and 'body' must be strings", source=source)
    subject = _squash(subject or "")
    body = (body or "").replace("\r\n", "\n").strip()
    number = record.get("circularId", record.get("id"))
    meta = {k: record[k] for k in ("circularId", "eventId", "submitter", "createdOn", "submittedHow", "format")
            if k in record}
    if source:
        meta["source"] = str(source)
    doc_id = f"gcn-{number}" if number is not None else _fallback_id("gcn", source, subject + body)
    return TextDocument(doc_id, _join(subject, body), subject, "gcn", meta)


def parse_gcn_json(data: bytes | str, *, source: str | None = None, encoding: str = "utf-8") -> list[TextDocument]:
    """GCN circulars from JSON.

    Accepts one circular (``{"circularId": .., "subject": .., "body": ..}``,
    the form of the GCN archive), a list of them, or a mapping of circular
    number to circular (``{"32632": {"subject": ...}}``, as in the archive of
    subjects).  ``text`` is the subject, a blank line and the body.

    Raises
    ------
    InvalidTextError
        Not decodable, not JSON, or a record with neither subject nor body.
    """
    text = decode_text(data, source=source, encoding=encoding)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTextError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                               source=source) from None
    if isinstance(value, list):
        return [_gcn_document(v, source=source, where=f"record {k}") for k, v in enumerate(value)]
    if isinstance(value, dict) and ("subject" in value or "body" in value):
        return [_gcn_document(value, source=source, where="record 0")]
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return [_gcn_document({"circularId": key, **v} if "circularId" not in v else v, source=source,
                              where=f"circular {key}") for key, v in value.items()]
    raise InvalidTextError("JSON is not a GCN circular, a list of circulars or a mapping of number to circular",
                           source=source)


def parse_gcn_text(data: bytes | str, *, source: str | None = None, encoding: str = "utf-8") -> TextDocument:
    """A GCN circular in its plain-text (e-mail) form.

    The header lines (``TITLE:``, ``NUMBER:``, ``SUBJECT:``, ``DATE:``,
    ``FROM:``) end at the first blank line; the rest is the body.

    Raises
    ------
    InvalidTextError
        Not decodable, empty, or no ``SUBJECT:`` line in the header.
    """
    text = decode_text(data, source=source, encoding=encoding).replace("\r\n", "\n")
    lines = text.lstrip("\n").split("\n")
    header: dict[str, str] = {}
    k = 0
    last = None
    for k, line in enumerate(lines):
        if not line.strip():
            break
        m = _GCN_HEADER.match(line)
        if m:
            last = m.group(1)
            header[last] = m.group(2).strip()
        elif last == "SUBJECT" and line[:1].isspace():
            header["SUBJECT"] += " " + line.strip()  # a wrapped subject line
        else:
            break
    else:
        k = len(lines)
    if "SUBJECT" not in header:
        raise InvalidTextError("no 'SUBJECT:' line in the header: not a GCN circular in text form", source=source)
    body = "\n".join(lines[k:]).strip()
    record: dict[str, Any] = {"subject": header["SUBJECT"], "body": body}
    if header.get("NUMBER", "").strip().isdigit():
        record["circularId"] = int(header["NUMBER"])
    doc = _gcn_document(record, source=source, where="circular")
    meta = dict(doc.meta)
    if "DATE" in header:
        meta["date"] = header["DATE"]
    if "FROM" in header:
        meta["submitter"] = header["FROM"]
    return TextDocument(doc.doc_id, doc.text, doc.title, doc.kind, meta)


# --------------------------------------------------------------------------- abstracts, plain text

_ID_KEYS = ("doc_id", "id", "bibcode", "arxiv_id", "circularId")
_TEXT_KEYS = ("abstract", "text", "body")


def parse_jsonl(data: bytes | str, *, source: str | None = None, encoding: str = "utf-8",
                kind: str = "abstract") -> list[TextDocument]:
    """JSON Lines, one document per line: ``title`` (optional) and ``abstract``/``text``/``body``.

    The id comes from ``doc_id``, ``id``, ``bibcode`` or ``arxiv_id`` (else
    the line number).  A line with ``subject`` (GCN) is read as a circular.
    Other keys go to ``meta``.  Blank lines are skipped.

    Raises
    ------
    InvalidTextError
        Not decodable, empty, a line that is not a JSON object, or one with
        no text field.
    """
    text = decode_text(data, source=source, encoding=encoding)
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidTextError(f"line {lineno} is not valid JSON ({exc.msg})", source=source) from None
        if not isinstance(record, dict):
            raise InvalidTextError(f"line {lineno} is not a JSON object", source=source)
        if "subject" in record and not any(k in record for k in ("abstract", "text")):
            docs.append(_gcn_document(record, source=source, where=f"line {lineno}"))
            continue
        body_key = next((k for k in _TEXT_KEYS if k in record), None)
        if body_key is None:
            raise InvalidTextError(f"line {lineno} has no text field (one of {list(_TEXT_KEYS)}); "
                                   f"keys: {sorted(record)[:8]}", source=source)
        title, body = record.get("title") or "", record.get(body_key) or ""
        if isinstance(title, list):  # ADS gives titles as lists
            title = title[0] if title else ""
        if not isinstance(title, str) or not isinstance(body, str):
            raise InvalidTextError(f"line {lineno}: 'title' and '{body_key}' must be strings", source=source)
        title, body = _squash(title), body.strip()
        id_key = next((k for k in _ID_KEYS if record.get(k) not in (None, "")), None)
        doc_id = str(record[id_key]) if id_key else f"{_fallback_id(kind, source, text)}-{lineno}"
        meta = {k: v for k, v in record.items() if k not in (body_key, "title", id_key)}
        if source:
            meta["source"] = str(source)
        docs.append(TextDocument(doc_id, _join(title, body), title, kind, meta))
    if not docs:
        raise InvalidTextError("no JSON lines in the file", source=source)
    return docs


def parse_plain_text(data: bytes | str, *, source: str | None = None, encoding: str = "utf-8",
                     doc_id: str | None = None, kind: str = "text") -> TextDocument:
    """A plain-text document: its whole content (line ends made ``\\n``), no title.

    Raises
    ------
    InvalidTextError
        Not decodable or empty.
    """
    text = decode_text(data, source=source, encoding=encoding).replace("\r\n", "\n").replace("\r", "\n")
    meta = {"source": str(source)} if source else {}
    return TextDocument(doc_id or _fallback_id(kind, source, text), text, "", kind, meta)


# --------------------------------------------------------------------------- files and folders

Format = Literal["auto", "atel_html", "atel_rss", "gcn_json", "gcn_text", "jsonl", "text"]


def _sniff(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    start = head.lstrip()[:512].lower()
    if suffix in (".html", ".htm") or start.startswith((b"<!doctype html", b"<html")):
        return "atel_html"
    if suffix in (".rss", ".xml") or start.startswith(b"<?xml") or start.startswith(b"<rss"):
        return "atel_rss"
    if suffix == ".jsonl" or suffix == ".ndjson":
        return "jsonl"
    if suffix == ".json":
        return "gcn_json"
    if re.match(rb"\s*(TITLE|NUMBER|SUBJECT):", head[:200]):
        return "gcn_text"
    return "text"


def read_documents(path: str | Path, *, format: Format = "auto", encoding: str = "utf-8",
                   max_bytes: int = MAX_DOCUMENT_BYTES) -> list[TextDocument]:
    """Read a file, or every file of a folder (sorted, not recursive, hidden files skipped).

    Parameters
    ----------
    path : path-like
    format : str
        ``"auto"`` picks the reader from the suffix (``.html``, ``.rss``/``.xml``,
        ``.json``, ``.jsonl``) and, for other files, the first bytes (a GCN
        ``SUBJECT:`` header, else plain text).
    encoding : str
    max_bytes : int
        Files larger than this raise :class:`InvalidTextError`.

    Raises
    ------
    InvalidTextError
        The path does not exist, or a file is bad (its path is in the message).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise InvalidTextError("no such file or folder", source=str(path))
    docs: list[TextDocument] = []
    for file in files:
        docs.extend(_read_file(file, format=format, encoding=encoding, max_bytes=max_bytes))
    return docs


def iter_documents(paths, **kwargs) -> Iterator[TextDocument]:
    """The documents of several files or folders, in order (see :func:`read_documents`)."""
    for p in paths:
        yield from read_documents(p, **kwargs)


def _read_file(file: Path, *, format: str, encoding: str, max_bytes: int) -> list[TextDocument]:
    source = str(file)
    size = file.stat().st_size
    if size > max_bytes:
        raise InvalidTextError(f"{size:,} bytes is more than the {max_bytes:,} bytes a document may have; "
                               "split it first", source=source)
    data = file.read_bytes()
    fmt = _sniff(file, data[:1024]) if format == "auto" else format
    kw = {"source": source, "encoding": encoding}
    if fmt == "atel_html":
        return [parse_atel_html(data, **kw)]
    if fmt == "atel_rss":
        return parse_atel_rss(data, **kw)
    if fmt == "gcn_json":
        return parse_gcn_json(data, **kw)
    if fmt == "gcn_text":
        return [parse_gcn_text(data, **kw)]
    if fmt == "jsonl":
        return parse_jsonl(data, **kw)
    if fmt == "text":
        return [parse_plain_text(data, **kw)]
    raise InvalidTextError(f"unknown format {fmt!r}; one of auto, atel_html, atel_rss, gcn_json, gcn_text, jsonl, "
                           "text", source=source)
