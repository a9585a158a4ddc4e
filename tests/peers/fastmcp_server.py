#!/usr/bin/env python3
"""A FastMCP server (the `mcp` SDK's v1 line, `mcp<2`) over Streamable HTTP,
as an MCP target for the tests: a few tools, a prompt and a resource.

Usage: fastmcp_server.py PORT [--slow-tools] [--require-token TOKEN | --accept-jwts]

--slow-tools adds `slow` (sleeps, and counts the calls cancelled while it
slept) and `calls` (those counts), for the cancellation test.
--require-token makes the server an OAuth resource server (the SDK's own
bearer-token check): every request needs `Authorization: Bearer TOKEN`. --accept-jwts takes any
JWT (the gateway verified it) whose `sub` is not "mallory", as that `sub`;
the `whoami` tool names it, and `deleted` lists the subjects whose sessions
were ended by a DELETE. The SDK binds a session to the token that opened it.
"""

import base64
import json

import asyncio
import sys

from mcp.server.auth.middleware.auth_context import get_access_token
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


class AnyJwt(TokenVerifier):
    async def verify_token(self, token):
        try:
            payload = token.split(".")[1]
            sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
        except (IndexError, ValueError, KeyError):
            return None
        if sub == "mallory":
            return None
        return AccessToken(token=token, client_id=sub, scopes=[])


auth = {}
if "--accept-jwts" in sys.argv:
    auth = {
        "token_verifier": AnyJwt(),
        "auth": AuthSettings(issuer_url="http://127.0.0.1:9", required_scopes=[],
                             resource_server_url="http://127.0.0.1:%d/mcp" % PORT),
    }
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


def whoami() -> str:
    """The caller's identity (the token's subject)."""
    return get_access_token().client_id


deleted = []


def deleted_sessions() -> str:
    """The subjects whose sessions a DELETE ended, in order (JSON)."""
    return json.dumps(deleted)


def count_deletes(app):
    async def counted(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "DELETE":
            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
            verified = await AnyJwt().verify_token(token)
            deleted.append(verified.client_id if verified else None)
        await app(scope, receive, send)
    return counted


if __name__ == "__main__":
    if "--accept-jwts" in sys.argv:
        import uvicorn
        mcp.tool(name="whoami")(whoami)
        mcp.tool(name="deleted")(deleted_sessions)
        uvicorn.run(count_deletes(mcp.streamable_http_app()), host="127.0.0.1", port=PORT,
                    log_level="warning")
    else:
        mcp.run(transport="streamable-http")
