#!/usr/bin/env python3
"""The `mcp` Python SDK's client against an MCP endpoint (Wardgate's):
initialize, list tools, then call each `NAME=JSON` given, printing one JSON
line per step: {"tools": [...]}, then {"call": NAME, "isError": bool,
"text": ...} or {"call": NAME, "error": {"code", "message"}}.

Usage: mcp_client.py URL [NAME=JSON ...]
"""

import asyncio
import json
import sys

from mcp import ClientSession
try:  # the v2 line
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # the v1 line: yields (read, write, get_session_id)
    from mcp.client.streamable_http import streamablehttp_client as streamable_http_client
try:  # the v2 line
    from mcp import MCPError as McpError
except ImportError:  # the v1 line
    from mcp.shared.exceptions import McpError


async def main(url, calls):
    async with streamable_http_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
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
                    r = await session.call_tool(name, json.loads(args or "{}"))
                    text = "".join(getattr(c, "text", "") for c in r.content)
                    is_error = getattr(r, "is_error", None)
                    if is_error is None:
                        is_error = r.isError
                    print(json.dumps({"call": name, "isError": bool(is_error), "text": text}), flush=True)
                except McpError as e:
                    print(json.dumps({"call": name, "error": {"code": e.error.code,
                                                              "message": e.error.message}}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
