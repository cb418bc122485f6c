"""NameFinder: rows with offsets into the whole document, long documents in pieces, bad input."""
from __future__ import annotations

import pytest

from astroray.text.extract import NAME_ROW_FIELDS, NameFinder
from astroray.text.pipeline import NerConfig, build_pipeline
from astroray.text.readers import InvalidTextError, TextDocument, parse_atel_html


@pytest.fixture(scope="module")
def finder():
    return NameFinder(build_pipeline(NerConfig(model=False)), max_chunk_chars=5_000)


def test_rows_name_document_type_offsets_and_normalised_name(finder):
    doc = TextDocument("atel-1", "Title\n\nSwift/XRT observed GRB221009A and SN2023ixf.", "Title", "atel")
    rows = finder.run([doc, {"doc_id": "d2", "text": "EP 240414a"}, "nothing here", ""])
    assert all(set(r) == set(NAME_ROW_FIELDS) for r in rows)
    got = [(r["doc_id"], r["text"], r["label"], r["normalised"], r["source"]) for r in rows]
    assert got == [("atel-1", "Swift/XRT", "FACILITY", "Swift/XRT", "facility"),
                   ("atel-1", "GRB221009A", "EVENT", "GRB 221009A", "rule:grb"),
                   ("atel-1", "SN2023ixf", "EVENT", "SN 2023ixf", "rule:tns"),
                   ("d2", "EP 240414a", "EVENT", "EP240414a", "rule:ep")]
    assert all(doc.text[r["start"]:r["end"]] == r["text"] for r in rows if r["doc_id"] == "atel-1")


def test_a_megabyte_document_is_processed_in_pieces(finder):
    sentence = "Swift/XRT saw GRB 221009A fade while PSR J0437-4715 pulsed.\n"
    text = (sentence * (1_000_000 // len(sentence) + 1))[:1_000_000]
    rows = finder.run([TextDocument("big", text)])
    names = [r for r in rows if r["label"] != "FACILITY"]
    assert len(names) >= 2 * (1_000_000 // len(sentence)) - 2
    assert all(text[r["start"]:r["end"]] == r["text"] for r in rows)


def test_real_atel_page_end_to_end(shared_data, finder):
    page = shared_data / "text" / "atel" / "thespacedoctor_atelParser__tests__atel_00012500.html"
    rows = finder.run([parse_atel_html(page.read_bytes())])
    assert {(r["text"], r["label"]) for r in rows if r["label"] != "FACILITY"} == {("Gaia19amg", "EVENT"),
                                                                                  ("AT2019aox", "EVENT")}


def test_bad_documents_raise_typed_errors(finder):
    with pytest.raises(InvalidTextError):
        finder.run([42])
    with pytest.raises(InvalidTextError):
        finder.run([{"doc_id": "x"}])
    with pytest.raises(ValueError):
        NameFinder(finder.nlp, batch_size=0)


def test_html_view(finder):
    html = finder.html("GRB 221009A seen by Swift/XRT.")
    assert "GRB 221009A" in html and "EVENT" in html and "FACILITY" in html
