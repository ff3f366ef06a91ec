from __future__ import annotations

from pathlib import Path

import pytest

from connectors.documents import DocumentFile, list_documents, parse_document, read_bytes
from core.errors import DocumentError
from tests.conftest import SAMPLES


def parse(tmp_path: Path, name: str, raw: bytes):
    path = tmp_path / name
    path.write_bytes(raw)
    (file,) = list_documents(path).files
    return parse_document(file, raw)


def test_atx_markdown_takes_the_h1_as_title_and_nests_headings(tmp_path: Path) -> None:
    text = (
        b"---\ntitle: Kube API Down\nweight: 20\n---\n\n# KubeAPIDown\n\nIntro.\n\n"
        b"## Diagnosis\n\nCheck.\n\n### Network\n\nPing.\n\n## Mitigation\n\nFix.\n"
    )
    doc = parse(tmp_path, "KubeAPIDown.md", text)
    assert doc.title == "KubeAPIDown"
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        ((), "Intro."),
        (("Diagnosis",), "Check."),
        (("Diagnosis", "Network"), "Ping."),
        (("Mitigation",), "Fix."),
    ]


def test_front_matter_title_is_used_when_there_is_no_h1(tmp_path: Path) -> None:
    doc = parse(tmp_path, "x.md", b"---\ntitle: 'Disk full'\n---\n## Meaning\n\nFull.\n")
    assert doc.title == "Disk full"
    assert doc.sections[0].heading_path == ("Meaning",)


def test_setext_headings_are_headings_but_rules_tables_and_lists_are_not(tmp_path: Path) -> None:
    text = (
        "etcdNoLeader\n============\n\nMeaning\n-------\n\nNo leader.\n\n"
        "- a list item\n---\n\n| a | b |\n|---|---|\n\n"
        "Diagnosis\n---------\n\n```shell\n# a comment, not a heading\n```\n"
    )
    doc = parse(tmp_path, "etcdNoLeader.md", text.encode())
    assert doc.title == "etcdNoLeader"
    assert [s.heading_path for s in doc.sections] == [("Meaning",), ("Diagnosis",)]
    assert "# a comment, not a heading" in doc.sections[1].text


def test_html_headings_paragraphs_lists_and_code(tmp_path: Path) -> None:
    html = b"""<html><head><title>T</title><script>x()</script></head><body>
    <h1>TLSCertificateExpiringSoon</h1><p>Cert expires.</p>
    <h2>Diagnosis</h2><ul><li>Check the <b>endpoint</b></li></ul>
    <pre><code>openssl s_client</code></pre></body></html>"""
    doc = parse(tmp_path, "tls.html", html)
    assert doc.title == "TLSCertificateExpiringSoon"
    assert doc.sections[0].text == "Cert expires."
    assert doc.sections[1].heading_path == ("Diagnosis",)
    assert "- Check the endpoint" in doc.sections[1].text
    assert "```\nopenssl s_client\n```" in doc.sections[1].text


def test_html_nested_lists_tables_and_notes_reach_the_same_model(tmp_path: Path) -> None:
    html = b"""<h1>DiskFull</h1><h2>Runbook</h2><ol><li>Open the dashboard<ol><li>Is usage above 90%?</li></ol></li>
    <li>Rotate the logs</li></ol><blockquote><p>Note: keep a day of logs.</p></blockquote>
    <table><tr><th>metric</th><th>meaning</th></tr><tr><td>used</td><td>bytes used</td></tr></table>"""
    doc = parse(tmp_path, "disk.html", html)
    from core.document import parse as parse_blocks

    blocks = parse_blocks(doc.sections[0].text).blocks
    assert [(b.kind, b.level, b.ordered) for b in blocks] == [
        ("item", 0, True), ("item", 1, True), ("item", 0, True), ("quote", 0, False), ("table", 0, False)
    ]  # fmt: skip
    assert blocks[3].info == "note" and blocks[4].text == "metric | meaning\nused | bytes used"
    assert "x()" not in str(doc.sections)


def test_the_sample_pdf_is_read_into_sections() -> None:
    (file,) = list_documents(SAMPLES / "messaging" / "KafkaConsumerGroupLagHigh.pdf").files
    doc = parse_document(file, file.path.read_bytes())
    assert doc.kind == "pdf"
    assert "KafkaConsumerGroupLagHigh" in doc.title
    assert {"Meaning", "Diagnosis", "Mitigation"} <= {s.heading_path[0] for s in doc.sections if s.heading_path}


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("empty.md", b"  \n\n", "empty"),
        ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content"),
        ("latin1.txt", "Störung café".encode("latin-1"), "not UTF-8 text"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj <</Type /Catalog>> garbage", "unreadable PDF"),
        ("headings-only.md", b"# Title\n\n## Empty\n", "no text"),
    ],
)
def test_bad_input_raises_a_short_reason(tmp_path: Path, name: str, raw: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse(tmp_path, name, raw)
    assert info.value.reason.startswith(reason)


def test_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_bytes(b"x" * 2048)
    file = DocumentFile(doc_id="big.md", path=path, source=str(tmp_path), kind="markdown")
    with pytest.raises(DocumentError, match="oversized"):
        read_bytes(file, max_bytes=1024)


def test_listing_uses_paths_relative_to_the_root_and_skips_hidden_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "PgLag.md").write_text("# PgLag\n\nx\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.md").write_text("x")
    (tmp_path / "LICENSE").write_text("Apache")
    (tmp_path / "guide.HTML").write_text("<p>x</p>")
    listing = list_documents(tmp_path)
    assert [(f.doc_id, f.kind) for f in listing.files] == [("db/PgLag.md", "markdown"), ("guide.HTML", "html")]
    assert listing.ignored == [("LICENSE", "unsupported type (no extension)")]
    assert {f.source for f in listing.files} == {str(tmp_path.resolve())}


def test_listing_a_missing_path_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list_documents(tmp_path / "nope")
