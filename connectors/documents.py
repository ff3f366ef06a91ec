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


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


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


_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_FRONT_TITLE = re.compile(r"^title:\s*['\"]?(.+?)['\"]?\s*$", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


class _Sections:
    """Accumulates lines under the current heading path; the first level-1 heading is the title."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []
        self._lines: list[str] = []
        self._seen_heading = False

    def heading(self, level: int, text: str) -> None:
        self._flush()
        text = text.strip().strip("`*_ ")
        if level == 1 and not self._seen_heading and not self.sections:
            self.title = text
        else:
            self._stack = [(lvl, t) for lvl, t in self._stack if lvl < level] + [(level, text)]
        self._seen_heading = True

    def line(self, text: str) -> None:
        self._lines.append(text)

    def _flush(self) -> None:
        body = "\n".join(self._lines).strip()
        if body:
            self.sections.append(Section(heading_path=tuple(t for _, t in self._stack), text=body))
        self._lines = []

    def done(self) -> tuple[str, list[Section]]:
        self._flush()
        return self.title, self.sections


def _parse_markdown(text: str) -> tuple[str, list[Section]]:
    text = text.replace("\r\n", "\n")
    front_title = ""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            match = _FRONT_TITLE.search(text[4:end])
            front_title = match.group(1) if match else ""
            text = text[end + 4 :].lstrip("-").lstrip("\n")
    out = _Sections(front_title)
    lines = text.split("\n")
    in_code = False
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
            out.line(line)
        elif in_code:
            out.line(line)
        elif match := _ATX.match(line):
            out.heading(len(match.group(1)), match.group(2))
        elif line.strip() and _SETEXT.match(nxt) and len(nxt.strip()) >= 2 and not _is_block(line):
            out.heading(1 if nxt.strip().startswith("=") else 2, line)
            i += 1
        else:
            out.line(line)
        i += 1
    return out.done()


def _is_block(line: str) -> bool:
    """Lines that cannot be a setext heading's text."""
    return bool(_LIST_ITEM.match(line)) or line.lstrip().startswith(("|", ">", "    ")) or line.startswith("\t")


def _parse_html(text: str) -> tuple[str, list[Section]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for junk in soup(["script", "style", "nav", "header", "footer"]):
        junk.decompose()
    head_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    out = _Sections()
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "dt", "dd"]):
        if el.name[0] == "h" and el.name[1:].isdigit():
            out.heading(int(el.name[1]), el.get_text(" ", strip=True))
        elif el.name == "pre":
            out.line("```\n" + el.get_text().strip("\n") + "\n```")
        elif el.find_parent("pre") is None and (el.name != "p" or el.find_parent("li") is None):
            text_ = el.get_text(" ", strip=True)
            if text_:
                out.line(("- " if el.name == "li" else "") + text_)
                out.line("")
    title, sections = out.done()
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
    out = _Sections()
    lines = [line.rstrip() for line in text.splitlines()]
    first = next((n for n, line in enumerate(lines) if line.strip()), 0)
    out.heading(1, lines[first])
    for line in lines[first + 1 :]:
        if _PDF_HEADING.match(line.strip()):
            out.heading(2, line.strip().rstrip(":"))
        else:
            out.line(line)
    return out.done()
