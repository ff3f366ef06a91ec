"""Document sources: find operation documents under a path, read them, parse them into sections.

Markdown (ATX ``## Heading`` and setext ``Heading\\n----``), HTML, plain text and PDF. Bad input
(binary, empty, not UTF-8, oversized, unreadable PDF) raises ``DocumentError`` with a short reason;
the caller reports it and goes on.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from core.document import Block, parse, render
from core.errors import DocumentError
from core.types import DocumentKind, Section, SourceDocument

KINDS: dict[str, DocumentKind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
}


@dataclass(frozen=True)
class DocumentFile:
    """A file found under an ingest root; ``doc_id`` is its path relative to the root."""

    doc_id: str
    path: Path
    source: str
    kind: DocumentKind


@dataclass(frozen=True)
class Listing:
    source: str  # the resolved root
    files: list[DocumentFile]
    ignored: list[tuple[str, str]]  # (path relative to the root, reason)


def list_documents(root: Path) -> Listing:
    """Supported files under ``root`` (or ``root`` itself), sorted; hidden paths are not visited."""
    root = root.resolve()
    if root.is_file():
        candidates, base = [root], root.parent
    elif root.is_dir():
        candidates, base = sorted(p for p in root.rglob("*") if p.is_file()), root
    else:
        raise FileNotFoundError(f"no such file or directory: {root}")
    files, ignored = [], []
    for path in candidates:
        rel = path.relative_to(base).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        kind = KINDS.get(path.suffix.lower())
        if kind is None:
            ignored.append((rel, f"unsupported type {path.suffix or '(no extension)'}"))
        else:
            files.append(DocumentFile(doc_id=rel, path=path, source=str(root), kind=kind))
    return Listing(source=str(root), files=files, ignored=ignored)


# Part of every content hash: a knowledge base built by an older reader is read again on the next
# ingest, once, instead of keeping sections the current reader would cut differently.
READER_VERSION = b"commonmark-1\n"


def content_hash(raw: bytes) -> str:
    """sha256 of the reader version and the raw bytes (hex): equal hashes are skipped on re-ingest."""
    return hashlib.sha256(READER_VERSION + raw).hexdigest()


def read_bytes(file: DocumentFile, max_bytes: int) -> bytes:
    """The file's bytes, refusing oversized files before reading them."""
    size = file.path.stat().st_size
    if size > max_bytes:
        raise DocumentError(f"oversized ({size:,} bytes, limit {max_bytes:,})")
    return file.path.read_bytes()


def parse_document(file: DocumentFile, raw: bytes) -> SourceDocument:
    """Parse raw bytes of ``file`` into a titled document of sections."""
    if not raw.strip():
        raise DocumentError("empty")
    if file.kind == "pdf":
        title, sections = _parse_pdf(raw)
    else:
        if b"\x00" in raw[:8192]:
            raise DocumentError("binary content")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"not UTF-8 text (bad byte at offset {exc.start})") from exc
        title, sections = _parse_html(text) if file.kind == "html" else _parse_markdown(text)
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise DocumentError("no text")
    stem = Path(file.doc_id).stem
    return SourceDocument(
        doc_id=file.doc_id,
        source=file.source,
        title=title or stem,
        kind=file.kind,
        content_hash=content_hash(raw),
        sections=tuple(sections),
    )


class _Sections:
    """Accumulates blocks under the current heading path; the first level-1 heading is the title."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []
        self._blocks: list[Block] = []
        self._seen_heading = False

    def heading(self, level: int, text: str) -> None:
        self._flush()
        text = text.strip().strip("`*_ ")
        if level == 1 and not self._seen_heading and not self.sections:
            self.title = text
        else:
            self._stack = [(lvl, t) for lvl, t in self._stack if lvl < level] + [(level, text)]
        self._seen_heading = True

    def block(self, block: Block) -> None:
        self._blocks.append(block)

    def _flush(self) -> None:
        if self._blocks:
            heading_path = tuple(t for _, t in self._stack)
            self.sections.append(Section(heading_path=heading_path, text=render(self._blocks)))
        self._blocks = []

    def done(self) -> tuple[str, list[Section]]:
        self._flush()
        return self.title, self.sections


def _parse_markdown(text: str) -> tuple[str, list[Section]]:
    parsed = parse(text)
    title = parsed.front_matter.get("title")
    out = _Sections(title if isinstance(title, str) else "")
    for block in parsed.blocks:
        if block.kind == "heading":
            out.heading(block.level, block.text)
        else:
            out.block(block)
    return out.done()


def _parse_html(text: str) -> tuple[str, list[Section]]:
    """HTML into the same model as Markdown: converted by markdownify (ATX headings, fenced code)."""
    from bs4 import BeautifulSoup
    from markdownify import markdownify

    soup = BeautifulSoup(text, "html.parser")
    for junk in soup(["script", "style", "nav", "header", "footer"]):
        junk.decompose()
    head_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    markdown = markdownify(str(soup.body or soup), heading_style="ATX", code_language="", bullets="-")
    title, sections = _parse_markdown(markdown)
    return title or head_title, sections


_PDF_HEADING = re.compile(
    r"^(meaning|impact|diagnosis|mitigation|summary|description|symptoms|causes|typical causes|resolution|"
    r"remediation|troubleshooting|notes?|prevention|escalation|overview|steps)\s*:?$",
    re.IGNORECASE,
)


def _parse_pdf(raw: bytes) -> tuple[str, list[Section]]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(raw))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as exc:  # pypdf raises nearly anything (struct, index, key errors) on broken files
        raise DocumentError(f"unreadable PDF ({type(exc).__name__}: {exc})") from exc
    if not text.strip():
        raise DocumentError("PDF has no extractable text (scanned?)")
    lines = [line.rstrip() for line in text.splitlines()]
    first = next((n for n, line in enumerate(lines) if line.strip()), 0)
    # PDF text has no markup: known section names become headings, the rest is read as Markdown.
    body = "\n".join(
        f"## {line.strip().rstrip(':')}" if _PDF_HEADING.match(line.strip()) else line for line in lines[first + 1 :]
    )
    _, sections = _parse_markdown(body)
    return lines[first].strip(), sections
