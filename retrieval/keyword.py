"""The embedded keyword index: BM25 by tantivy, on disk and updated in place, one entry per chunk and per runbook.

Chunk entries hold a chunk's heading (title and heading path, boosted) and body; runbook entries
hold a document's names (title, file name, the alert and incident names and aliases of its
candidates) and what it is about (their descriptions), so a question can match a runbook by what
it is called. Text is analysed in Python (``retrieval.lexical.index_terms``: identifiers split,
stop words dropped, Snowball stems) and handed to tantivy's whitespace tokenizer, so queries and
documents are always analysed alike.

Chunk entries also keep their distinct lower-cased words unstemmed (``words``), the vocabulary
against which a question's misspelt words are corrected (``spelling``).

Nothing is rebuilt when a process starts: the index opens in milliseconds (an index of an older
schema is dropped and rebuilt from SQLite by its owner). One process writes at a
time (tantivy's directory lock): a second writer waits for the first.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tantivy
from rapidfuzz import process
from rapidfuzz.distance import OSA
from spellchecker import SpellChecker
from tantivy import Occur, Query

from core.errors import RetrievalUnavailable
from retrieval.lexical import STOP_WORDS, index_terms

ANALYSIS = 3  # version of ``index_terms``' output (2: identifiers' digits apart, 3: NotReady); see runbook_hashes
HEADING_BOOST = 3.0
NAME_BOOST = 2.0
_HEAP = 15_000_000  # tantivy's minimum writer memory budget
_LOCK_WAIT_S = 30.0
_WORD = re.compile(r"[A-Za-z]+")
MIN_SPELLED = 5  # shorter words lie within one edit of too many others to be corrected


@dataclass(frozen=True)
class ChunkText:
    """What the keyword index needs of a chunk."""

    chunk_id: str
    heading: str
    body: str


@dataclass(frozen=True)
class RunbookText:
    """What the keyword index needs of a document: its names and what it is about."""

    doc_id: str
    content_hash: str
    names: tuple[str, ...]
    about: str


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=True, tokenizer_name="raw")  # chunk id or doc id
    builder.add_text_field("doc_id", tokenizer_name="raw")
    builder.add_text_field("runbook", stored=True, tokenizer_name="raw")  # its content hash, on runbook entries
    for field in ("heading", "body", "names", "about"):
        builder.add_text_field(field, tokenizer_name="whitespace", index_option="freq")
    builder.add_text_field("words", tokenizer_name="whitespace", index_option="basic")
    return builder.build()


@lru_cache(maxsize=1)
def _english() -> SpellChecker:
    """pyspellchecker's English word list (160k words; loads in about 0.5 s, once)."""
    return SpellChecker(language="en", distance=1)


def _words(text: str) -> str:
    return " ".join({w.lower() for w in _WORD.findall(text)})


def analysed(text: str) -> str:
    """``text`` as the whitespace-separated terms the index stores."""
    return " ".join(index_terms(text))


class KeywordIndex:
    """BM25 over chunk and runbook entries in a tantivy directory; thread-safe, blocking calls.

    Writes go to one open writer and are committed together (a tantivy commit syncs to disk, about
    0.1 s here), before the next search, by ``flush`` or every ``COMMIT_EVERY`` documents; the
    writer is then closed, so other processes can write between batches.
    """

    COMMIT_EVERY = 256

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._schema = _schema()
        try:
            self._index = tantivy.Index(self._schema, path=str(path))
        except ValueError:  # written with an older schema: derived data, rebuilt from SQLite by the owner
            shutil.rmtree(path)
            path.mkdir(parents=True)
            self._index = tantivy.Index(self._schema, path=str(path))
        self._lock = threading.Lock()
        self._writer: tantivy.IndexWriter | None = None
        self._pending = 0

    def replace(self, doc_id: str, chunks: Sequence[ChunkText], runbook: RunbookText) -> None:
        """Replace every entry of ``doc_id`` with these."""
        entries = [
            tantivy.Document(
                key=c.chunk_id,
                doc_id=doc_id,
                heading=analysed(c.heading),
                body=analysed(c.body),
                words=_words(f"{c.heading} {c.body}"),
            )
            for c in chunks
        ]
        entries.append(
            tantivy.Document(
                key=doc_id,
                doc_id=doc_id,
                runbook=f"{ANALYSIS}:{runbook.content_hash}",
                names=analysed("\n".join(runbook.names)),
                about=analysed(runbook.about),
            )
        )
        with self._lock:
            writer = self._open_writer()
            writer.delete_documents_by_term("doc_id", doc_id)
            for entry in entries:
                writer.add_document(entry)
            self._written(1)

    def remove(self, doc_ids: Collection[str]) -> None:
        """Remove every entry of these documents; unknown ids are ignored."""
        if not doc_ids:
            return
        with self._lock:
            writer = self._open_writer()
            for doc_id in doc_ids:
                writer.delete_documents_by_term("doc_id", doc_id)
            self._written(len(doc_ids))

    def flush(self) -> None:
        """Commit what was written; readers see it from now on."""
        with self._lock:
            self._commit()

    def search_chunks(self, query: str, k: int) -> list[tuple[str, float]]:
        """(chunk_id, BM25 score) of at most ``k`` chunks, best first; heading terms count more."""
        return self._search(query, k, (("heading", HEADING_BOOST), ("body", 1.0)))

    def search_runbooks(self, query: str, k: int) -> list[tuple[str, float]]:
        """(doc_id, BM25 score) of at most ``k`` runbooks by their names (boosted) and descriptions."""
        return self._search(query, k, (("names", NAME_BOOST), ("about", 1.0)))

    def spelling(self, query: str) -> str:
        """``query`` with each word no chunk holds replaced by the most frequent indexed word within
        one edit (two from 8 letters on) that starts with the same letter; ``query`` itself if none.

        Edits are optimal-string-alignment distance (swapping two neighbours is one edit), so
        "migarted" becomes "migrated". The first letter is kept because typos rarely hit it, and it
        keeps the candidates few. Words under ``MIN_SPELLED`` letters, stop words and words of
        pyspellchecker's English dictionary are left alone."""
        if self._pending:
            self.flush()
        searcher = self._index.searcher()

        def corrected(match: re.Match[str]) -> str:
            word = match.group(0).lower()
            if len(word) < MIN_SPELLED or word in STOP_WORDS or searcher.doc_freq("words", word):
                return match.group(0)
            if any(searcher.doc_freq("body", stem) for stem in index_terms(word)):  # another form of a known word
                return match.group(0)
            if _english().known([word]):  # a real word no runbook uses ("sealed") is no typo of one that does
                return match.group(0)
            known = [w for w, _ in searcher.terms_with_prefix("words", word[0])]  # most frequent first
            best = process.extractOne(word, known, scorer=OSA.distance, score_cutoff=1 if len(word) < 8 else 2)
            return best[0] if best else match.group(0)

        return _WORD.sub(corrected, query)

    def runbook_hashes(self) -> dict[str, str]:
        """doc_id → content hash of every runbook entry (to check the index against its source of truth);
        "" for a document analysed by another version of ``index_terms`` (``ANALYSIS``), so that its owner
        re-indexes it as if its content had changed."""
        self.flush()
        searcher = self._index.searcher()
        every = Query.regex_query(self._schema, "runbook", ".*")
        docs = (searcher.doc(address) for _, address in searcher.search(every, max(searcher.num_docs, 1)).hits)
        hashes = {}
        for doc in docs:
            version, _, content_hash = doc["runbook"][0].partition(":")
            hashes[doc["key"][0]] = content_hash if version == str(ANALYSIS) else ""
        return hashes

    def _search(self, query: str, k: int, fields: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
        terms = list(dict.fromkeys(index_terms(query)))
        if not terms or k <= 0:
            return []
        if self._pending:
            self.flush()
        clauses = [
            (Occur.Should, Query.boost_query(Query.term_query(self._schema, field, term), boost))
            for term in terms
            for field, boost in fields
        ]
        searcher = self._index.searcher()
        hits = searcher.search(Query.boolean_query(clauses), k).hits
        return [(searcher.doc(address)["key"][0], float(score)) for score, address in hits]

    def _written(self, documents: int) -> None:
        self._pending += documents
        if self._pending >= self.COMMIT_EVERY:
            self._commit()

    def _commit(self) -> None:
        if self._writer is None:
            return
        writer, self._writer, self._pending = self._writer, None, 0
        writer.commit()
        writer.wait_merging_threads()  # also closes it, releasing the directory lock
        self._index.reload()

    def _open_writer(self) -> tantivy.IndexWriter:
        if self._writer is not None:
            return self._writer
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                self._writer = self._index.writer(heap_size=_HEAP, num_threads=1)
                return self._writer
            except ValueError as exc:  # another process holds the directory lock
                if time.monotonic() > deadline:
                    raise RetrievalUnavailable(
                        f"keyword index is locked by another writer: {exc}", backend="keyword index"
                    ) from exc
                time.sleep(0.1)
