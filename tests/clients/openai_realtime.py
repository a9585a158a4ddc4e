#!/usr/bin/env python3
"""The official `openai` SDK's Realtime client (a WebSocket session) through
the gateway: creates a user message, asks for a text response and prints one
JSON line per server event type seen, then a summary line with the session's
model and the text the deltas made.

Usage: openai_realtime.py BASE_URL MODEL PROMPT
"""

import json
import sys

from openai import OpenAI


def main(base_url, model, prompt):
    client = OpenAI(base_url=base_url, api_key="client-key-never-forwarded")
    seen, text, session_model = [], "", None
    with client.realtime.connect(model=model) as conn:
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": prompt}]})
        conn.response.create()
        for event in conn:
            seen.append(event.type)
            if event.type == "session.created":
                session_model = event.session.model
            elif event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.done":
                usage = event.response.usage
                break
    print(json.dumps({"events": seen, "model": session_model, "text": text,
                      "output_tokens": usage.output_tokens if usage else None}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
