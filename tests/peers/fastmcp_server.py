#!/usr/bin/env python3
"""A FastMCP server (the `mcp` SDK's v1 line, `mcp<2`) over Streamable HTTP,
as an MCP target for the tests: a few tools, a prompt and a resource.

Usage: fastmcp_server.py PORT [--slow-tools] [--require-token TOKEN]

--slow-tools adds `slow` (sleeps, and counts the calls cancelled while it
slept) and `calls` (those counts), for the cancellation test.
--require-token makes the server an OAuth resource server (the SDK's own
bearer-token check): every request needs `Authorization: Bearer TOKEN`.
"""

import asyncio
import sys

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP

PORT = int(sys.argv[1])


class OneToken(TokenVerifier):
    def __init__(self, token):
        self.token = token

    async def verify_token(self, token):
        if token != self.token:
            return None
        return AccessToken(token=token, client_id="wardgate", scopes=[])


auth = {}
if "--require-token" in sys.argv:
    auth = {
        "token_verifier": OneToken(sys.argv[sys.argv.index("--require-token") + 1]),
        "auth": AuthSettings(issuer_url="http://127.0.0.1:9", required_scopes=[],
                             resource_server_url="http://127.0.0.1:%d/mcp" % PORT),
    }
mcp = FastMCP("calc", host="127.0.0.1", port=PORT, stateless_http=False, **auth)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@mcp.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@mcp.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Say hello to {name}."


@mcp.resource("calc://constants/pi")
def pi() -> str:
    """The value of pi."""
    return "3.14159"


calls = {"started": 0, "finished": 0, "cancelled": 0}


async def slow(seconds: float) -> str:
    """Sleep, then say so; counts cancellations."""
    calls["started"] += 1
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        calls["cancelled"] += 1
        raise
    calls["finished"] += 1
    return "slept"


def slow_calls() -> dict:
    """How many `slow` calls started, finished and were cancelled."""
    return calls


if "--slow-tools" in sys.argv:
    mcp.tool(name="slow")(slow)
    mcp.tool(name="calls")(slow_calls)


if __name__ == "__main__":
    mcp.run(transport="streamable-http")
