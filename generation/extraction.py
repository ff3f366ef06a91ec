"""The LLM incident extractor: a chat model fills FlowXpert's five fields for each chunk.

Satisfies ``retrieval.ports.IncidentExtractor`` structurally. A reply that is not valid JSON of the
schema yields no candidates for that chunk (logged): one bad reply must not stop an ingest.
"""

from __future__ import annotations

import json
import logging

from pydantic import BaseModel, ValidationError

from core.types import Chunk, IncidentNode, SourceDocument
from generation.ports import ChatModel
from generation.prompts import EXTRACTION_SCHEMA, extraction_messages

logger = logging.getLogger(__name__)


class _Extracted(BaseModel):
    name: str
    description: str = ""
    mitigation: list[str] = []
    typical_cases: list[str] = []
    note: str = ""
    aliases: list[str] = []
    components: list[str] = []


class _Reply(BaseModel):
    incidents: list[_Extracted]


class LlmIncidentExtractor:
    """Asks ``model`` for the incidents a chunk describes."""

    def __init__(self, model: ChatModel, *, max_tokens: int = 1024) -> None:
        self._model = model
        self._max_tokens = max_tokens

    async def extract(self, doc: SourceDocument, chunk: Chunk) -> list[IncidentNode]:
        raw = await self._model.complete(
            extraction_messages(doc.title, chunk), schema=EXTRACTION_SCHEMA, max_tokens=self._max_tokens
        )
        try:
            reply = _Reply.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            logger.warning("%s: unusable extraction from %s: %s", chunk.chunk_id, self._model.name, exc)
            return []
        return [
            IncidentNode(
                name=found.name.strip(),
                description=found.description.strip(),
                mitigation=tuple(s.strip() for s in found.mitigation if s.strip()),
                typical_cases=tuple(s.strip() for s in found.typical_cases if s.strip()),
                note=found.note.strip(),
                aliases=tuple(a.strip() for a in found.aliases if a.strip()),
                components=tuple(c.strip().lower() for c in found.components if c.strip()),
                domain=doc.doc_id.split("/", 1)[0] if "/" in doc.doc_id else "",
                chunk_ids=(chunk.chunk_id,),
                doc_ids=(doc.doc_id,),
            )
            for found in reply.incidents
            if found.name.strip()
        ]
