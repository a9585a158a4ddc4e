#!/usr/bin/env python3
"""The `mcp` Python SDK's client against an MCP endpoint (Wardgate's):
initialize, list tools, then call each `NAME=JSON` given, printing one JSON
line per step: {"tools": [...]}, then {"call": NAME, "isError": bool,
"text": ...} or {"call": NAME, "error": {"code", "message"}}.

With --sample TEXT the client answers the servers' sampling requests with
TEXT; with --elicit JSON it accepts their elicitations with that content
(each prints {"sampled": prompt} or {"elicited": message} when asked);
--progress prints {"progress": n} for each progress notification.

A URL ending in /sse uses the legacy HTTP+SSE transport. --bearer TOKEN
sends `Authorization: Bearer TOKEN` with every request.

Usage: mcp_client.py URL [--sample TEXT] [--elicit JSON] [--progress] [--bearer TOKEN] [NAME=JSON ...]
"""

import asyncio
import contextlib
import inspect
import json
import sys

from mcp import ClientSession
try:  # the v2 line
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # the v1 line: yields (read, write, get_session_id)
    from mcp.client.streamable_http import streamablehttp_client as streamable_http_client
from mcp.client.sse import sse_client
from mcp.shared._httpx_utils import create_mcp_http_client
try:  # the v2 line
    from mcp import MCPError as McpError
except ImportError:  # the v1 line
    from mcp.shared.exceptions import McpError


from mcp import types


def callbacks(sample, elicit):
    async def sampling(context, params):
        prompt = "".join(getattr(m.content, "text", "") for m in params.messages)
        print(json.dumps({"sampled": prompt}), flush=True)
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text=sample))

    async def elicitation(context, params):
        print(json.dumps({"elicited": params.message}), flush=True)
        return types.ElicitResult(action="accept", content=json.loads(elicit))

    out = {}
    if sample is not None:
        out["sampling_callback"] = sampling
    if elicit is not None:
        out["elicitation_callback"] = elicitation
    return out


@contextlib.asynccontextmanager
async def connect(url, headers):
    # A URL ending in /sse speaks the legacy HTTP+SSE transport.
    if url.rstrip("/").endswith("/sse"):
        async with sse_client(url, headers=headers) as streams:
            yield streams
        return
    if "headers" in inspect.signature(streamable_http_client).parameters:  # v1
        async with streamable_http_client(url, headers=headers) as streams:
            yield streams
        return
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


async def main(url, calls, sample=None, elicit=None, progress=False, bearer=None):
    async def on_progress(p, total, message):
        print(json.dumps({"progress": p}), flush=True)

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    async with connect(url, headers) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, **callbacks(sample, elicit)) as session:
            init = await session.initialize()
            # v2 names fields in snake_case, v1 as on the wire.
            info = getattr(init, "server_info", None) or init.serverInfo
            version = getattr(init, "protocol_version", None) or init.protocolVersion
            print(json.dumps({"server": info.name, "version": version}), flush=True)
            tools = await session.list_tools()
            print(json.dumps({"tools": sorted(t.name for t in tools.tools)}), flush=True)
            for call in calls:
                name, _, args = call.partition("=")
                try:
                    r = await session.call_tool(name, json.loads(args or "{}"),
                                                progress_callback=on_progress if progress else None)
                    text = "".join(getattr(c, "text", "") for c in r.content)
                    is_error = getattr(r, "is_error", None)
                    if is_error is None:
                        is_error = r.isError
                    print(json.dumps({"call": name, "isError": bool(is_error), "text": text}), flush=True)
                except McpError as e:
                    print(json.dumps({"call": name, "error": {"code": e.error.code,
                                                              "message": e.error.message}}), flush=True)


if __name__ == "__main__":
    args, opts = sys.argv[2:], {}
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--progress":
            opts["progress"] = True
        else:
            opts[flag[2:]] = args.pop(0)
    asyncio.run(main(sys.argv[1], args, **opts))
