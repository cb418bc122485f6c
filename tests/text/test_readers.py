"""Readers: the real ATel pages (telegram body only), RSS, GCN JSON and text, JSONL, and bad input."""
from __future__ import annotations

import json

import pytest

from astroray.errors import InvalidInputError
from astroray.text.evaluation import load_evalset
from astroray.text.readers import (
    InvalidTextError,
    decode_text,
    html_to_text,
    parse_atel_html,
    parse_atel_rss,
    parse_gcn_json,
    parse_gcn_text,
    parse_jsonl,
    parse_plain_text,
    read_documents,
)

PAGE_12502 = "thespacedoctor_atelParser__tests__atel_00012502.html"

# A small RSS 2.0 feed written for these tests in the form of the ATel feed (items with an
# "ATel #N:" title, a read= link, the telegram as escaped HTML, categories and dc:creator).
RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>The Astronomer's Telegram</title>
  <link>https://www.astronomerstelegram.org</link>
  <description>Recent telegrams</description>
  <item>
    <title>ATel #99901: NICER observations of the outburst of MAXI J1820+070</title>
    <link>https://www.astronomerstelegram.org/?read=99901</link>
    <description>&lt;p&gt;We observed MAXI J1820+070 with &lt;b&gt;NICER&lt;/b&gt; on 2018 March 14.&lt;/p&gt;
&lt;p&gt;The source is bright.&lt;script&gt;tweet()&lt;/script&gt;&lt;/p&gt;</description>
    <category>X-ray</category><category>Black Hole</category>
    <dc:creator>A. Author (Somewhere)</dc:creator>
    <pubDate>Wed, 14 Mar 2018 12:00:00 GMT</pubDate>
    <guid>https://www.astronomerstelegram.org/?read=99901</guid>
  </item>
  <item>
    <title>ATel #99902: Classification of SN 2023ixf</title>
    <link>https://www.astronomerstelegram.org/?read=99902</link>
    <description>SN 2023ixf in M101 is a Type II supernova.</description>
  </item>
</channel>
</rss>
"""

# A GCN circular in the archive's JSON form and in its e-mail text form, both written for these tests.
GCN_JSON = {"circularId": 99001, "subject": "GRB 990101A: Swift-XRT afterglow detection",
            "body": "Swift-XRT observed GRB 990101A and found a fading source.\n\nThis circular is a test.",
            "submitter": "A. Author at Somewhere", "eventId": "GRB 990101A", "createdOn": 915148800000}
GCN_TEXT = """TITLE:   GCN CIRCULAR
NUMBER:  99002
SUBJECT: EP240315a: NOT optical observations of the
         fast X-ray transient
DATE:    24/03/16 01:02:03 GMT
FROM:    A. Author at Somewhere  <someone@example.org>

We observed EP240315a with the NOT.

Nothing else.
"""


@pytest.fixture(scope="module")
def atel_dir(shared_data):
    return shared_data / "text" / "atel"


def test_atel_pages_give_the_telegram_body_only(atel_dir):
    doc = parse_atel_html((atel_dir / PAGE_12502).read_bytes(), source=PAGE_12502)
    assert doc.doc_id == "atel-12502" and doc.kind == "atel"
    assert doc.title == ("INTEGRAL observations of the on-going outburst from the new X-ray transient "
                         "Swift J1728.9-3613")
    assert doc.text.startswith(doc.title + "\n\nThe new X-ray transient source Swift J1728.9-3613")
    assert doc.text.endswith("A more complete analysis will be carried on the consolidated INTEGRAL data.")
    assert doc.meta["subjects"] == ["X-ray", "Black Hole", "Transient"]
    assert doc.meta["authors"].startswith("L. Ducci (IAAT, Germany")
    assert doc.meta["posted"] == "13 Feb 2019; 19:45 UT"
    # the sidebar ("Related"), navigation, tweet button, header and footer are not in the text
    for furniture in ("Related", "MeerKAT discovery", "Previous", "Tweet", "Telegram Index", "Rutledge",
                      "Credential", "Subjects:", "adsbygoogle", "This space for free"):
        assert furniture not in doc.text, furniture
    assert doc.text.count("Swift J1728.9-3613") == 2  # title and body, not the 7 sidebar titles
    assert "27 \u03c3" in doc.text and "\u00b1" in doc.text  # entities decoded


def test_atel_1000_body_matches_the_extraction_shipped_with_it(atel_dir):
    doc = parse_atel_html((atel_dir / "rohankhayech_ATel-Lookup__test_res__atel1000.html").read_bytes())
    reference = (atel_dir / "rohankhayech_ATel-Lookup__test_res__atel1000_body.txt").read_text()
    body = doc.text[doc.body_start:]
    assert " ".join(body.split()) == " ".join(reference.split())
    assert doc.meta["atel"] == 1000 and doc.title.startswith("INTEGRAL observations of GX339-4")


def test_reader_output_is_the_text_of_the_evaluation_set(atel_dir):
    for item in load_evalset("atel_pages"):
        doc = parse_atel_html((atel_dir / item.meta["file"]).read_bytes())
        assert doc.doc_id == item.doc_id
        assert doc.text == item.text  # so the hand-made spans hold for raw HTML read now


def test_read_documents_reads_a_folder(atel_dir):
    docs = read_documents(atel_dir)
    kinds = sorted(d.kind for d in docs)
    assert kinds == ["atel", "atel", "atel", "text"]  # three pages and the plain-text body


def test_rss_feed():
    docs = parse_atel_rss(RSS.encode())
    assert [d.doc_id for d in docs] == ["atel-99901", "atel-99902"]
    first = docs[0]
    assert first.title == "NICER observations of the outburst of MAXI J1820+070"
    assert first.text == (first.title + "\n\nWe observed MAXI J1820+070 with NICER on 2018 March 14.\n\n"
                          "The source is bright.")
    assert first.meta["subjects"] == ["X-ray", "Black Hole"]
    assert first.meta["authors"] == "A. Author (Somewhere)"
    assert docs[1].text.endswith("SN 2023ixf in M101 is a Type II supernova.")


def test_gcn_json_forms():
    one = parse_gcn_json(json.dumps(GCN_JSON))
    assert len(one) == 1 and one[0].doc_id == "gcn-99001"
    assert one[0].text == GCN_JSON["subject"] + "\n\n" + GCN_JSON["body"]
    assert one[0].meta["eventId"] == "GRB 990101A"
    many = parse_gcn_json(json.dumps([GCN_JSON, {**GCN_JSON, "circularId": 99003}]))
    assert [d.doc_id for d in many] == ["gcn-99001", "gcn-99003"]
    archive = parse_gcn_json(json.dumps({"99004": {"subject": "GRB 990102B: optical limit"}}))
    assert archive[0].doc_id == "gcn-99004" and archive[0].text == "GRB 990102B: optical limit"


def test_gcn_text_form():
    doc = parse_gcn_text(GCN_TEXT)
    assert doc.doc_id == "gcn-99002"
    assert doc.title == "EP240315a: NOT optical observations of the fast X-ray transient"
    assert doc.text == doc.title + "\n\nWe observed EP240315a with the NOT.\n\nNothing else."
    assert doc.meta["date"].startswith("24/03/16")


def test_jsonl_abstracts_and_plain_text():
    lines = [{"bibcode": "2099ApJ...1..1A", "title": ["A study of GX 339-4"], "abstract": "GX 339-4 is bright."},
             {"id": "x2", "text": "No title here."}]
    docs = parse_jsonl("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert [d.doc_id for d in docs] == ["2099ApJ...1..1A", "x2"]
    assert docs[0].text == "A study of GX 339-4\n\nGX 339-4 is bright." and docs[0].kind == "abstract"
    assert docs[1].text == "No title here." and docs[1].title == ""
    doc = parse_plain_text(b"Line one.\r\nLine two.", doc_id="p1")
    assert doc.text == "Line one.\nLine two." and doc.doc_id == "p1"


def test_html_to_text_drops_scripts_and_keeps_paragraphs():
    assert html_to_text("<p>A <b>b</b></p><script>x()</script><p>c<br>d</p>") == "A b\n\nc\nd"


@pytest.mark.parametrize("call", [
    lambda: parse_plain_text(b""),
    lambda: parse_plain_text(b"   \n\t "),
    lambda: parse_plain_text(b"caf\xe9 au lait"),  # Latin-1, not UTF-8
    lambda: parse_atel_html(b"\xff\xfe<html>"),
    lambda: parse_atel_html("<html><head><title>t</title></head></html>"),  # no body at all
    lambda: parse_atel_html("<html><body><p>Just a page.</p></body></html>"),  # not an ATel page
    lambda: parse_atel_html('<html><body><div id="telegram"><h1>T</h1><div id="subjects">S</div></div></body>'),
    lambda: parse_atel_rss("<notrss/>"),
    lambda: parse_atel_rss("<rss version='2.0'></rss>"),
    lambda: parse_atel_rss("<rss><channel><item>"),  # not well-formed
    lambda: parse_atel_rss('<!DOCTYPE r [<!ENTITY a "aaaa">]><rss><channel/></rss>'),
    lambda: parse_gcn_json("{not json"),
    lambda: parse_gcn_json("[1, 2]"),
    lambda: parse_gcn_json('{"title": "no subject or body"}'),
    lambda: parse_gcn_text("Dear all, no header here."),
    lambda: parse_jsonl('{"abstract": "ok"}\n[1, 2]\n'),
    lambda: parse_jsonl('{"title": "no text field"}'),
    lambda: decode_text(b"x" * 11, max_bytes=10),  # larger than allowed
])
def test_bad_input_raises_a_typed_error(call):
    with pytest.raises(InvalidTextError) as info:
        call()
    assert isinstance(info.value, InvalidInputError) and str(info.value)


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "page.html"
    bad.write_bytes(b"\x80\x81 not utf-8")
    with pytest.raises(InvalidTextError, match="page.html.*not valid utf-8"):
        read_documents(bad)
    with pytest.raises(InvalidTextError, match="no such file"):
        read_documents(tmp_path / "missing")


def test_a_megabyte_document_is_read():
    text = ("GRB 221009A was observed by Swift/XRT. " * 30_000)[:1_000_000]
    doc = parse_plain_text(text.encode())
    assert len(doc.text) == 1_000_000
