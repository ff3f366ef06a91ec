"""Reading HTTP bodies within an output budget."""

from __future__ import annotations

import aiohttp


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """At most ``cap`` bytes of the body, and whether there was more (the rest is not read)."""
    body = bytearray()
    while len(body) <= cap:
        chunk = await response.content.read(cap + 1 - len(body))
        if not chunk:
            return bytes(body), False
        body += chunk
    return bytes(body[:cap]), True
