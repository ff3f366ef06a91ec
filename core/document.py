"""The document model: Markdown as a flat list of blocks (headings, paragraphs, list items with their
nesting, code, tables, quotes and admonitions), parsed by markdown-it-py (CommonMark with GFM tables,
YAML front matter and ``!!! note`` admonitions; mdit-py-plugins).

Ingest renders each section back to canonical Markdown (``render``) and chunks it at block
boundaries, so the planner and the knowledge-base extractor read a chunk with the same ``parse``
and get the same blocks. HTML reaches this model as Markdown (markdownify, in connectors). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.admon import admon_plugin
from mdit_py_plugins.front_matter import front_matter_plugin

BlockKind = Literal["heading", "paragraph", "item", "code", "table", "quote"]

_MD = MarkdownIt("commonmark", {"html": True}).enable("table").use(front_matter_plugin).use(admon_plugin)
# A quote that is a note: GitHub's "> [!NOTE]" alerts and "> Note: …" / "> **Warning:** …" quotes.
_QUOTE_KIND = re.compile(
    r"^(?:\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]|(note|tip|important|warning|caution|danger):)\s*", re.I
)
_INDENT = "    "
# A paragraph that starts like a list item, heading or quote must stay a paragraph when read again.
_LOOKS_LIKE_BLOCK = re.compile(r"^(\d*)([#>*+=-]|(?<=\d)[.)])")


@dataclass(frozen=True)
class Block:
    """One block of a document, in reading order.

    ``text`` is one line of inline Markdown (code spans in backticks, links as ``[text](url)``,
    emphasis and images dropped); for code it is the code, for a table its rows (cells joined by
    `` | ``, one row a line, the header first). ``level`` is a heading's level, else the number of
    list items the block sits in (a top-level item: 0; its nested items: 1). ``info`` is a code
    fence's language, or the kind of an admonition or GitHub alert quote (``note``, ``warning``…).
    """

    kind: BlockKind
    text: str
    level: int = 0
    ordered: bool = False
    info: str = ""


@dataclass
class Parsed:
    """A parsed Markdown text: its front matter (a mapping, empty if none or unreadable) and blocks."""

    front_matter: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


def parse(text: str) -> Parsed:
    """Blocks of a Markdown ``text``. Raw HTML blocks are dropped (``<details>`` wrappers and the like);
    the Markdown inside them is kept."""
    out = Parsed()
    lists: list[bool] = []  # ordered? per open list
    items = 0  # open list items
    pending_item = False  # an item opened whose first paragraph is still to come
    quote: str | None = None  # inside a blockquote or admonition: its kind ("" for a plain quote)
    rows: list[str] = []
    cells: list[str] = []
    heading_level = 0
    for token in _MD.parse(text.replace("\r\n", "\n")):
        match token.type:
            case "front_matter":
                out.front_matter = _yaml(token.content)
            case "heading_open":
                heading_level = int(token.tag[1:])
            case "bullet_list_open" | "ordered_list_open":
                lists.append(token.type == "ordered_list_open")
            case "bullet_list_close" | "ordered_list_close":
                lists.pop()
            case "list_item_open":
                items += 1
                pending_item = True
            case "list_item_close":
                items -= 1
                pending_item = False
            case "blockquote_open":
                quote = ""
            case "admonition_open":
                quote = (token.meta.get("tag") or token.info.split(" ", 1)[0] or "note").lower()
            case "blockquote_close" | "admonition_close":
                quote = None
            case "tr_open":
                cells = []
            case "tr_close":
                rows.append(" | ".join(cells))
            case "table_close":
                out.blocks.append(Block("table", "\n".join(rows), level=items))
                rows = []
            case "fence" | "code_block":
                out.blocks.append(Block("code", token.content.rstrip("\n"), level=items, info=token.info.strip()))
            case "inline":
                inline = _inline_text(token.children or [])
                if token.level and _parent(token) in ("th", "td"):
                    cells.append(inline)
                elif _parent(token) == "heading":
                    out.blocks.append(Block("heading", inline, level=heading_level))
                elif _parent(token) == "title":
                    continue  # an admonition's title repeats its kind
                elif not inline:
                    continue
                elif quote is not None:
                    kind, inline = _alert_kind(quote, inline)
                    out.blocks.append(Block("quote", inline, level=items, info=kind))
                    quote = kind  # the rest of a GitHub alert quote is of its kind too
                elif pending_item:
                    out.blocks.append(Block("item", inline, level=items - 1, ordered=lists[-1] if lists else False))
                    pending_item = False
                else:
                    out.blocks.append(Block("paragraph", inline, level=items))
    return out


def _parent(token: Token) -> str:
    """What an inline token sits in, from the markup that markdown-it-py gives it (set in ``_tag``)."""
    return str(token.meta.get("parent", "")) if token.meta else ""


def _alert_kind(quote: str, text: str) -> tuple[str, str]:
    match = _QUOTE_KIND.match(text)
    return ((match.group(1) or match.group(2)).lower(), text[match.end() :]) if match else (quote, text)


def _yaml(text: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def _inline_text(children: Sequence[Token]) -> str:
    """One line of inline Markdown from markdown-it-py's inline tokens."""
    parts: list[str] = []
    link: list[str] | None = None
    href = ""
    for child in children:
        target = link if link is not None else parts
        match child.type:
            case "text":
                target.append(child.content)
            case "code_inline":
                target.append(f"`{child.content}`")
            case "softbreak" | "hardbreak":
                target.append(" ")
            case "link_open":
                link, href = [], str(child.attrs.get("href", ""))
            case "link_close" if link is not None:
                label = "".join(link).strip()
                parts.append(f"[{label}]({href})" if label and href != label else href or label)
                link = None
    return " ".join("".join(parts).split())


def _annotate(tokens: list[Token]) -> None:
    """Mark each inline token with the block it sits in (heading, table cell, admonition title)."""
    for i, token in enumerate(tokens):
        if token.type != "inline" or i == 0:
            continue
        opener = tokens[i - 1].type
        parent = (
            "heading"
            if opener == "heading_open"
            else tokens[i - 1].tag
            if opener in ("th_open", "td_open")
            else "title"
            if opener == "admonition_title_open"
            else ""
        )
        token.meta = {**(token.meta or {}), "parent": parent}


def _annotate_rule(state: Any) -> None:
    _annotate(state.tokens)


_MD.core.ruler.push("opsflow_parent", _annotate_rule)


def render(blocks: Sequence[Block]) -> str:
    """Canonical Markdown for ``blocks``, one blank line between blocks, nesting by four spaces;
    ``parse(render(b)) == b`` for blocks that ``parse`` made (headings excepted: sections hold none)."""
    return "\n\n".join(_render(b) for b in blocks)


def _render(block: Block) -> str:
    pad = _INDENT * block.level
    match block.kind:
        case "heading":
            return "#" * block.level + " " + block.text
        case "item":
            return pad + ("1. " if block.ordered else "- ") + block.text
        case "code":
            fence = "~~~" if "```" in block.text else "```"
            return "\n".join(
                pad + line if line else line for line in (fence + block.info, *block.text.split("\n"), fence)
            )
        case "table":
            rows = [f"| {row} |" for row in block.text.split("\n")]
            width = rows[0].count(" | ") + 1
            rows.insert(1, "|" + " --- |" * width)
            return "\n".join(pad + row for row in rows)
        case "quote":
            return pad + "> " + (f"{block.info.capitalize()}: " if block.info else "") + block.text
        case _:
            return pad + _LOOKS_LIKE_BLOCK.sub(lambda m: m.group(1) + "\\" + m.group(2), block.text)


def split_blocks(text: str) -> Iterator[str]:
    """The top-level pieces of canonical Markdown (``render``'s output): where a chunk may start."""
    piece: list[str] = []
    fence = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if not fence and stripped[:3] in ("```", "~~~"):
            fence = stripped[:3]
        elif fence and stripped.startswith(fence):
            fence = ""
        if not fence and line and not line[0].isspace() and piece and not piece[-1].strip():
            yield "\n".join(piece).strip("\n")
            piece = []
        piece.append(line)
    if "\n".join(piece).strip():
        yield "\n".join(piece).strip("\n")
