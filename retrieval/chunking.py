"""Section-aware chunking: one chunk per section, long sections cut into overlapping windows of
top-level blocks (``core.document.split_blocks``), so every chunk parses into the blocks it holds."""

from __future__ import annotations

from core.document import split_blocks
from core.types import Chunk, SourceDocument


def chunk_document(doc: SourceDocument, *, window_words: int = 160, overlap_words: int = 40) -> list[Chunk]:
    """Chunks of ``doc`` in document order; ids are ``<doc_id>#<ordinal>``; empty sections are dropped."""
    chunks: list[Chunk] = []
    for section in doc.sections:
        for text in _windows(section.text, window_words, overlap_words):
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}#{ordinal}",
                    doc_id=doc.doc_id,
                    ordinal=ordinal,
                    title=doc.title,
                    heading_path=section.heading_path,
                    text=text,
                )
            )
    return chunks


def _windows(text: str, size: int, overlap: int) -> list[str]:
    lines = [piece for block in split_blocks(text.strip()) for piece in _split_long_block(block, size)]
    if not any(line.strip() for line in lines):
        return []
    windows: list[str] = []
    current: list[str] = []
    words = fresh = 0  # fresh: lines not carried over from the previous window
    for line in lines:
        n = len(line.split())
        if words + n > size and fresh:
            windows.append("\n\n".join(current).strip())
            current, words = _tail(current, overlap)
            fresh = 0
        if words + n > size:  # the carried overlap does not fit with this line: drop it
            current, words = [], 0
        current.append(line)
        words += n
        fresh += 1
    if fresh and any(line.strip() for line in current):
        windows.append("\n\n".join(current).strip())
    return windows


def _tail(lines: list[str], overlap: int) -> tuple[list[str], int]:
    """The last lines of a window holding at most ``overlap`` words, carried into the next one."""
    kept: list[str] = []
    words = 0
    for line in reversed(lines):
        n = len(line.split())
        if words + n > overlap:
            break
        kept.insert(0, line)
        words += n
    return kept, words


def _split_long_block(block: str, size: int) -> list[str]:
    """A block over ``size`` words (a long list item with its nested items, a long code block) cut at lines."""
    if len(block.split()) <= size:
        return [block]
    pieces: list[str] = []
    for line in block.split("\n"):
        words = line.split()
        pieces.extend(
            [line] if len(words) <= size else (" ".join(words[i : i + size]) for i in range(0, len(words), size))
        )
    return pieces
