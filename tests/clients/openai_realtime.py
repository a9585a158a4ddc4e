#!/usr/bin/env python3
"""The official `openai` SDK's Realtime client (a WebSocket session) through
the gateway. For each prompt: creates a user message and, once the server
has added it, asks for a text response. Prints one JSON summary line: the
server event types seen, the session's model, and per turn the text the
deltas made, the text of `response.output_text.done` and of the answer in
`response.done`, or the error event that refused the message (and the
close code, when the session was ended).

Usage: openai_realtime.py BASE_URL MODEL PROMPT [PROMPT ...]
"""

import json
import sys

from openai import OpenAI
from websockets.exceptions import ConnectionClosed


def main(base_url, model, prompts):
    client = OpenAI(base_url=base_url, api_key="client-key-never-forwarded")
    seen, turns, session_model, usage = [], [], None, None
    with client.realtime.connect(model=model) as conn:
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        events = iter(conn)
        for n, prompt in enumerate(prompts):
            turn = {"prompt": prompt, "text": ""}
            turns.append(turn)
            responding = False
            try:
                conn.conversation.item.create(event_id="client_%d" % n, item={
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": prompt}]})
                for event in events:
                    seen.append(event.type)
                    if event.type == "session.created":
                        session_model = event.session.model
                    elif event.type == "error":
                        turn["error"] = {"code": event.error.code, "message": event.error.message,
                                         "about": event.error.event_id}
                        if responding:
                            continue  # about the answer: the session ends next
                        break
                    elif event.type == "response.created":
                        responding = True
                    elif event.type == "conversation.item.done":
                        conn.response.create()
                    elif event.type == "response.output_text.delta":
                        turn["text"] += event.delta
                    elif event.type == "response.output_text.done":
                        turn["done_text"] = event.text
                    elif event.type == "response.done":
                        usage = event.response.usage
                        turn["answer"] = "".join(
                            c.text or "" for item in event.response.output or []
                            for c in getattr(item, "content", None) or [])
                        break
            except ConnectionClosed as e:
                turn["closed"] = {"code": e.rcvd.code if e.rcvd else None,
                                  "reason": e.rcvd.reason if e.rcvd else None}
                break
    first = turns[0]
    print(json.dumps({"events": seen, "model": session_model, "text": first["text"],
                      "output_tokens": usage.output_tokens if usage else None,
                      "turns": turns}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
