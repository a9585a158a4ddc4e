#!/usr/bin/env python3
"""A WebSocket server (the `websockets` library, PyPI) as an upstream for the
tests. Each connection first gets a JSON text message with the path and the
headers of the handshake it saw; then:

  /close/CODE  the server closes with CODE and the reason "bye"
  /refuse      the handshake is refused with 403 (no upgrade)
  anything else: every message is echoed back as it came (text or binary)

Usage: websocket_server.py PORT [CERT KEY]   (with CERT and KEY: TLS, wss://)
"""

import asyncio
import http
import json
import ssl
import sys

from websockets.asyncio.server import serve


def refuse(connection, request):
    if request.path == "/refuse":
        return connection.respond(http.HTTPStatus.FORBIDDEN, "refused by the upstream\n")
    return None


async def handler(ws):
    request = ws.request
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    await ws.send(json.dumps({"path": request.path, "headers": headers}))
    if request.path.startswith("/close/"):
        await ws.close(int(request.path.rsplit("/", 1)[1]), "bye")
        return
    async for message in ws:
        await ws.send(message)


async def main():
    port = int(sys.argv[1])
    context = None
    if len(sys.argv) == 4:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
    async with serve(handler, "127.0.0.1", port, process_request=refuse,
                     max_size=None, compression=None, ssl=context) as server:
        await server.serve_forever()


asyncio.run(main())
