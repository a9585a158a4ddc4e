#!/usr/bin/env python3
"""The `mcp` SDK's (v2) high-level Client against an MCP endpoint: it probes
`server/discover` and, when the server speaks the stateless revision
(2026-07-28), uses it (no initialize, no session). Prints one JSON line per
step: {"version": ...}, {"tools": [...]}, then {"call": NAME, "isError",
"text"} or {"call": NAME, "error": {"code", "message"}} per `NAME=JSON`.

Usage: mcp_stateless_client.py URL [NAME=JSON ...]
"""

import asyncio
import json
import sys

from mcp import Client, MCPError


async def main(url, calls):
    async with Client(url) as client:
        print(json.dumps({"version": client.protocol_version}), flush=True)
        tools = await client.list_tools()
        print(json.dumps({"tools": sorted(t.name for t in tools.tools)}), flush=True)
        for call in calls:
            name, _, args = call.partition("=")
            try:
                r = await client.call_tool(name, json.loads(args or "{}"))
                text = "".join(getattr(c, "text", "") for c in r.content)
                print(json.dumps({"call": name, "isError": bool(r.is_error), "text": text}), flush=True)
            except MCPError as e:
                print(json.dumps({"call": name, "error": {"code": e.error.code,
                                                          "message": e.error.message}}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
