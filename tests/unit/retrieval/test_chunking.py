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


def test_long_sections_become_overlapping_windows_of_whole_blocks() -> None:
    items = [f"- item {i}" + " word" * 7 + "\n\n    - nested under it" for i in range(30)]  # 13 words a block
    chunks = chunk_document(
        doc(Section(heading_path=("Mitigation",), text="\n\n".join(items))), window_words=60, overlap_words=20
    )
    assert len(chunks) > 1
    assert all(len(c.text.split()) <= 60 for c in chunks)
    assert all(c.heading_path == ("Mitigation",) for c in chunks)
    first, second = chunks[0].text.split("\n\n- "), chunks[1].text.split("\n\n- ")
    assert first[-1] == second[0].removeprefix("- ")  # 20 words of overlap = one whole item with its nested one
    assert all(c.text.startswith("- item") for c in chunks)  # every window starts at a top-level block
    covered = {block for c in chunks for block in c.text.split("\n\n")}
    assert covered == {block for item in items for block in item.split("\n\n")}


def test_a_line_longer_than_the_window_is_cut() -> None:
    chunks = chunk_document(doc(Section(text="w " * 130)), window_words=50, overlap_words=10)
    assert [len(c.text.split()) for c in chunks] == [50, 50, 30]


def test_blank_sections_make_no_chunks() -> None:
    assert chunk_document(doc(Section(text="  \n\n "))) == []
