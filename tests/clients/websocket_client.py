#!/usr/bin/env python3
"""The `websockets` library's client (PyPI) through the gateway. Prints one
JSON line per step, for the Rust test to check.

Usage: websocket_client.py URL STEP [--header NAME:VALUE ...] [--ca FILE]

Steps:
  echo    the server's hello (path, headers), then a text and a 1 MiB binary
          message echoed back unchanged, then a normal close by the client
  hello   the server's hello only; waits for the server to close and
          reports its close code and reason
  refused the handshake's failure: the status and body the client got
  quiet   no messages and no pings: how long until the connection is closed
  pinging a ping every 0.25 s for 3 s: whether the connection stayed open
  hold    a text message echoed every 0.1 s until the connection closes: how
          long it stayed open after the hello and how many came back
"""

import asyncio
import json
import os
import ssl
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def out(**fields):
    print(json.dumps(fields), flush=True)


async def main(url, step, headers, ca):
    context = ssl.create_default_context(cafile=ca) if ca else None
    options = dict(additional_headers=headers, max_size=None, compression=None, ssl=context)
    if step in ("quiet", "pinging", "hold"):
        options["ping_interval"] = None
    try:
        ws = await connect(url, **options)
    except InvalidStatus as e:
        out(status=e.response.status_code, body=e.response.body.decode(errors="replace"),
            headers={k.lower(): v for k, v in e.response.headers.raw_items()})
        return
    async with ws:
        hello = json.loads(await ws.recv())
        out(hello=hello, status=ws.response.status_code,
            response_headers={k.lower(): v for k, v in ws.response.headers.raw_items()})
        if step == "echo":
            await ws.send("hello through the gateway")
            out(text=await ws.recv())
            blob = os.urandom(1 << 20)
            await ws.send(blob)
            back = await ws.recv()
            out(binary_bytes=len(back), binary_same=back == blob)
        elif step == "hello":
            try:
                await ws.recv()
            except ConnectionClosed as e:
                out(close_code=e.rcvd.code if e.rcvd else None,
                    close_reason=e.rcvd.reason if e.rcvd else None)
        elif step == "quiet":
            started = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed:
                out(closed_after=time.monotonic() - started)
        elif step == "pinging":
            started = time.monotonic()
            while time.monotonic() - started < 3:
                pong = await ws.ping()
                await asyncio.wait_for(pong, 5)
                await asyncio.sleep(0.25)
            await ws.send("still here")
            out(open_after=time.monotonic() - started, text=await ws.recv())
        elif step == "hold":
            started, echoes = time.monotonic(), 0
            try:
                while True:
                    await ws.send(f"echo {echoes}")
                    if await asyncio.wait_for(ws.recv(), 5) == f"echo {echoes}":
                        echoes += 1
                    await asyncio.sleep(0.1)
            except (ConnectionClosed, asyncio.TimeoutError) as e:
                out(held_for=time.monotonic() - started, echoes=echoes,
                    ended=type(e).__name__)


if __name__ == "__main__":
    url, step, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    headers, ca = [], None
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--header":
            name, _, v = value.partition(":")
            headers.append((name, v))
        elif flag == "--ca":
            ca = value
    asyncio.run(main(url, step, headers, ca))
