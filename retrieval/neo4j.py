"""The Neo4j incident graph, through the official async driver (the ``[neo4j]`` extra, imported lazily).

Owns the graph model, the Cypher (module constants and pure row builders, unit-tested without a
server) and the mapping of driver errors onto ``RetrievalUnavailable``::

    (:Incident {node_id, body, keys, chunk_ids})   body: the node's JSON without node_id
    (:Incident)-[:RELATED {reason}]->(:Incident)    stored src -> dst, followed both ways
    (:Incident)-[:AFFECTS]->(:Component {name})
    (:Meta {key: 'built_from', value})

``keys`` (normalised names) and ``chunk_ids`` are list properties searched with ``any(...)``: one
label scan over the incidents, which number in the hundreds to thousands. Chunk nodes would make
``for_chunks`` indexable on Neo4j, but only with an idempotent index, and FalkorDB's Cypher has no
``CREATE INDEX ... IF NOT EXISTS`` (nor constraints); so there are no schema statements at all.

Every call is one explicit transaction: ``replace_all``'s is the only write, and reads run in READ
mode with a shared bookmark manager, so a cluster follower sees the last rebuild. Each has a
deadline, ``asyncio.timeout`` plus the same server-side transaction timeout (``graph.timeout_s``
for reads, longer for the rebuild), and the driver's connection timeouts are ``graph.timeout_s``.

FalkorDB's Bolt endpoint (``tests/falkordb.py``) runs this code in CI, and shaped two choices: the
Cypher avoids what its subset lacks (label expressions ``:A|B``, ``COUNT {}``, ``IF NOT EXISTS``), and
nothing is auto-commit, because FalkorDB 4.16 picks the graph from the first *key* of a RUN's
metadata (``db``, ``mode``, ``tx_timeout``...), which inside an explicit transaction is always
empty, i.e. the graph ``falkordb``. It is a smoke target, not a backend: it ignores
BEGIN/COMMIT/ROLLBACK (``replace_all`` is not atomic there) and splices parameters into the query
text: a ``'`` in a string breaks the query, backslash escapes are interpreted (so a body with ``\\"``
or ``\\n`` comes back altered), and a query text past 4 KB crashes the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import ConfigError, RetrievalUnavailable
from core.settings import GraphSettings
from core.types import IncidentNode, Relation

if TYPE_CHECKING:
    from neo4j import AsyncDriver, AsyncTransaction

T = TypeVar("T")
SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
BATCH = 1_000  # rows per UNWIND statement, so no single message grows with the graph

# Only opsflow's labels: the database may hold other data.
DELETE_ALL = "MATCH (n) WHERE n:Incident OR n:Component OR n:Meta DETACH DELETE n"
CREATE_COMPONENTS = "UNWIND $names AS name CREATE (:Component {name: name})"
CREATE_INCIDENTS = """
UNWIND $rows AS row
CREATE (n:Incident {node_id: row.node_id, body: row.body, keys: row.keys, chunk_ids: row.chunk_ids})
WITH n, row
UNWIND row.components AS name
MATCH (c:Component {name: name})
CREATE (n)-[:AFFECTS]->(c)
"""
CREATE_RELATIONS = """
UNWIND $rows AS row
MATCH (src:Incident {node_id: row.src})
MATCH (dst:Incident {node_id: row.dst})
CREATE (src)-[:RELATED {reason: row.reason}]->(dst)
"""
SET_BUILT_FROM = "CREATE (:Meta {key: 'built_from', value: $value})"

BUILT_FROM = "MATCH (m:Meta {key: 'built_from'}) RETURN m.value AS value"
NAMED = """
MATCH (n:Incident) WHERE any(name IN n.keys WHERE name IN $keys)
RETURN n.node_id AS node_id, n.body AS body ORDER BY node_id
"""
FOR_CHUNKS = """
MATCH (n:Incident) WHERE any(chunk_id IN n.chunk_ids WHERE chunk_id IN $chunk_ids)
RETURN n.node_id AS node_id, n.body AS body ORDER BY node_id
"""
NEIGHBOURS = """
MATCH (n:Incident)-[:RELATED]-(m:Incident)
WHERE n.node_id IN $node_ids AND NOT m.node_id IN $node_ids
RETURN DISTINCT m.node_id AS node_id, m.body AS body ORDER BY node_id
"""
COUNTS = """
OPTIONAL MATCH (n:Incident) WITH count(n) AS nodes
OPTIONAL MATCH (:Incident)-[r:RELATED]->(:Incident) WITH nodes, count(r) AS relations
OPTIONAL MATCH (c:Component) RETURN nodes, relations, count(c) AS components
"""


def incident_rows(nodes: Sequence[IncidentNode]) -> list[dict[str, Any]]:
    """``$rows`` for ``CREATE_INCIDENTS``: the JSON body plus the lookup lists, sorted and de-duplicated."""
    return [
        {
            "node_id": node.node_id,
            "body": node.model_dump_json(exclude={"node_id"}),
            "keys": sorted(node.lookup_keys()),
            "chunk_ids": sorted(set(node.chunk_ids)),
            "components": sorted(set(node.components)),
        }
        for node in nodes
    ]


def component_names(nodes: Sequence[IncidentNode]) -> list[str]:
    """``$names`` for ``CREATE_COMPONENTS``: every component once."""
    return sorted({c for node in nodes for c in node.components})


def relation_rows(relations: Sequence[Relation]) -> list[dict[str, str]]:
    """``$rows`` for ``CREATE_RELATIONS``; only "related" exists, and it is the relationship type."""
    return [{"src": r.src, "dst": r.dst, "reason": r.reason} for r in relations]


def batches(rows: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def nodes_from_records(records: Sequence[dict[str, Any]]) -> list[IncidentNode]:
    return [IncidentNode.model_validate_json(record["body"]) for record in records]


@contextlib.contextmanager  # a sync CM is fine around awaits
def map_neo4j_errors(action: str) -> Iterator[None]:
    """Turn "the server is down, slow, restarting or refusing us" into ``RetrievalUnavailable``."""
    from neo4j.exceptions import AuthError, ServiceUnavailable, SessionExpired, TransientError

    try:
        yield
    except TimeoutError as exc:  # asyncio.timeout; before OSError, of which it is a subclass
        raise RetrievalUnavailable(f"Neo4j timed out ({action})", backend="neo4j") from exc
    except (ServiceUnavailable, SessionExpired, TransientError, OSError) as exc:
        raise RetrievalUnavailable(f"Neo4j unreachable ({action}): {exc}", backend="neo4j") from exc
    except AuthError as exc:
        raise RetrievalUnavailable(f"Neo4j refused the credentials ({action}): {exc}", backend="neo4j") from exc


class Neo4jGraphStore:
    """The incident graph in a Neo4j 5 database (``graph.neo4j_database``, default: the server's)."""

    def __init__(self, settings: GraphSettings) -> None:
        from neo4j import AsyncGraphDatabase
        from neo4j.exceptions import ConfigurationError

        uri = settings.neo4j_uri or ""
        if uri.partition("://")[0] not in SCHEMES:  # the driver's http(s) transport is a preview
            raise ConfigError(f"graph.neo4j_uri must be one of {', '.join(s + '://' for s in SCHEMES)}; got {uri!r}")
        auth = (settings.neo4j_user, settings.neo4j_password.get_secret_value())
        try:
            self._driver: AsyncDriver = AsyncGraphDatabase.driver(
                uri, auth=auth, connection_timeout=settings.timeout_s, connection_acquisition_timeout=settings.timeout_s
            )
        except (ConfigurationError, ValueError) as exc:
            raise ConfigError(f"graph.neo4j_uri {uri!r}: {exc}") from exc
        self._bookmarks = AsyncGraphDatabase.bookmark_manager()
        self._database = settings.neo4j_database
        self._timeout = settings.timeout_s
        # timeout_s is a lookup deadline; a rebuild writes the whole graph and needs longer.
        self._write_timeout = max(30.0, 6 * settings.timeout_s)

    async def built_from(self) -> str | None:
        records = await self._read("reading the fingerprint", BUILT_FROM)
        return records[0]["value"] if records else None

    async def replace_all(self, nodes: Sequence[IncidentNode], relations: Sequence[Relation], built_from: str) -> None:
        async def write(tx: AsyncTransaction) -> None:
            await _consume(tx, DELETE_ALL)
            for names in batches(component_names(nodes), BATCH):
                await _consume(tx, CREATE_COMPONENTS, names=names)
            for rows in batches(incident_rows(nodes), BATCH):
                await _consume(tx, CREATE_INCIDENTS, rows=rows)
            for rows in batches(relation_rows(relations), BATCH):
                await _consume(tx, CREATE_RELATIONS, rows=rows)
            await _consume(tx, SET_BUILT_FROM, value=built_from)

        await self._transaction("replacing the graph", write, write=True)

    async def named(self, keys: Collection[str]) -> list[IncidentNode]:
        return await self._nodes("looking up names", NAMED, "keys", keys)

    async def for_chunks(self, chunk_ids: Collection[str]) -> list[IncidentNode]:
        return await self._nodes("looking up chunks", FOR_CHUNKS, "chunk_ids", chunk_ids)

    async def neighbours(self, node_ids: Collection[str]) -> list[IncidentNode]:
        return await self._nodes("following relations", NEIGHBOURS, "node_ids", node_ids)

    async def counts(self) -> dict[str, int]:
        (record,) = await self._read("counting", COUNTS)
        return {key: int(record[key]) for key in ("nodes", "relations", "components")}

    async def aclose(self) -> None:
        await self._driver.close()

    async def _nodes(self, action: str, query: str, param: str, values: Collection[str]) -> list[IncidentNode]:
        if not values:
            return []
        return nodes_from_records(await self._read(action, query, **{param: sorted(set(values))}))

    async def _read(self, action: str, query: str, **params: Any) -> list[dict[str, Any]]:
        async def read(tx: AsyncTransaction) -> list[dict[str, Any]]:
            return await (await tx.run(query, params)).data()

        return await self._transaction(action, read)

    async def _transaction(
        self, action: str, work: Callable[[AsyncTransaction], Awaitable[T]], *, write: bool = False
    ) -> T:
        from neo4j import READ_ACCESS, WRITE_ACCESS

        mode = WRITE_ACCESS if write else READ_ACCESS
        deadline = self._write_timeout if write else self._timeout
        with map_neo4j_errors(action):
            async with (
                asyncio.timeout(deadline),
                self._driver.session(
                    database=self._database, default_access_mode=mode, bookmark_manager=self._bookmarks
                ) as session,
                # Committed when the block ends normally, rolled back when work raises.
                await session.begin_transaction(timeout=deadline) as tx,
            ):
                return await work(tx)


async def _consume(tx: AsyncTransaction, query: str, **params: Any) -> None:
    await (await tx.run(query, params)).consume()
