from __future__ import annotations

from core.types import Section, SourceDocument
from retrieval.chunking import chunk_document


def doc(*sections: Section) -> SourceDocument:
    return SourceDocument(
        doc_id="k8s/X.md", source="/r", title="X", kind="markdown", content_hash="h", sections=sections
    )


def test_one_chunk_per_section_with_its_heading_path() -> None:
    chunks = chunk_document(doc(Section(heading_path=("Diagnosis",), text="check"), Section(text="intro")))
    assert [(c.chunk_id, c.heading_path, c.text) for c in chunks] == [
        ("k8s/X.md#0", ("Diagnosis",), "check"),
        ("k8s/X.md#1", (), "intro"),
    ]
    assert chunks[0].context == "X > Diagnosis"


def test_long_sections_become_overlapping_windows_of_whole_lines() -> None:
    lines = [f"line {i}" + " word" * 8 for i in range(30)]  # 10 words a line
    chunks = chunk_document(
        doc(Section(heading_path=("Mitigation",), text="\n".join(lines))), window_words=50, overlap_words=20
    )
    assert len(chunks) > 1
    assert all(len(c.text.split()) <= 50 for c in chunks)
    assert all(c.heading_path == ("Mitigation",) for c in chunks)
    first, second = chunks[0].text.splitlines(), chunks[1].text.splitlines()
    assert first[-2:] == second[:2]  # 20 words of overlap = two lines
    covered = {line for c in chunks for line in c.text.splitlines()}
    assert covered == {line.strip() for line in lines}


def test_a_line_longer_than_the_window_is_cut() -> None:
    chunks = chunk_document(doc(Section(text="w " * 130)), window_words=50, overlap_words=10)
    assert [len(c.text.split()) for c in chunks] == [50, 50, 30]


def test_blank_sections_make_no_chunks() -> None:
    assert chunk_document(doc(Section(text="  \n\n "))) == []
