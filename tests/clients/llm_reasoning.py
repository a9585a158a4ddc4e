#!/usr/bin/env python3
"""Thinking and structured output across formats, with the official SDKs,
through a Wardgate LLM route. The provider is the fake (tests/fakes): with
thinking on it thinks "Thinking about: <the question or tool result>" (Claude
signs it and refuses a tool round sent back without it, or with a forged
signature); held to a schema, it answers a value that fits; "weather" with a
tool offered is a call; a tool result is answered "The tool said: ...".

Usage: llm_reasoning.py chat|anthropic|responses BASE_URL MODEL [json-mode]
  chat       the OpenAI SDK's chat API to a Claude provider (Anthropic or Bedrock)
             or Gemini 3 on Vertex (which signs its calls; "json-mode": it has
             JSON mode, which Claude's APIs do not)
  anthropic  the Anthropic SDK to an OpenAI-compatible reasoning server
  responses  the OpenAI SDK's Responses API to a Claude or Gemini 3 provider
Prints one "ok ..." line per check; exits non-zero on the first failure.
"""

import json
import sys

import pydantic

MODE, BASE, MODEL = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
JSON_MODE = sys.argv[4:] == ["json-mode"]
CHAT_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}}]


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


def ok(name):
    print("ok", name, flush=True)


def chat():
    import openai
    client = openai.OpenAI(base_url=BASE + "/v1", api_key="client-key", max_retries=0)
    question = {"role": "user", "content": "What is the weather in Paris?"}

    r = client.chat.completions.create(model=MODEL, messages=[question], tools=CHAT_TOOLS,
                                       reasoning_effort="low")
    msg = r.choices[0].message
    extra = msg.model_extra or {}
    assert extra.get("reasoning_content") == "Thinking about: What is the weather in Paris?", extra
    blocks = extra.get("thinking_blocks")
    assert blocks and blocks[0]["type"] == "thinking" and blocks[0]["signature"], extra
    assert msg.tool_calls and msg.tool_calls[0].function.name == "get_weather", msg
    ok("thinking shown as reasoning_content, kept as thinking_blocks")

    # The tool round goes back with the thinking, as Claude requires.
    turn = msg.model_dump(exclude_none=True)
    result = {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "18 C and sunny"}
    r = client.chat.completions.create(model=MODEL, messages=[question, turn, result],
                                       tools=CHAT_TOOLS, reasoning_effort="low")
    assert r.choices[0].message.content == "The tool said: 18 C and sunny", r
    ok("tool round with its thinking")

    bare = {k: v for k, v in turn.items() if k not in ("thinking_blocks", "reasoning_content")}
    try:
        client.chat.completions.create(model=MODEL, messages=[question, bare, result],
                                       tools=CHAT_TOOLS, reasoning_effort="low")
        raise AssertionError("expected Claude to want its thinking back")
    except openai.BadRequestError as e:
        assert "thinking" in str(e) or "thought_signature" in str(e), e
    ok("tool round without its thinking refused by the provider")

    reasoning, blocks, calls = "", [], []
    for chunk in client.chat.completions.create(model=MODEL, messages=[question], tools=CHAT_TOOLS,
                                                reasoning_effort="low", stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        reasoning += extra.get("reasoning_content") or ""
        blocks += extra.get("thinking_blocks") or []
        calls += delta.tool_calls or []
    assert reasoning == "Thinking about: What is the weather in Paris?", reasoning
    assert [b["thinking"] for b in blocks] == [reasoning] and blocks[0]["signature"], blocks
    assert calls and calls[0].function.name == "get_weather", calls
    turn = {"role": "assistant", "content": None, "thinking_blocks": blocks,
            "tool_calls": [{"id": calls[0].id, "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    result["tool_call_id"] = calls[0].id
    r = client.chat.completions.create(model=MODEL, messages=[question, turn, result],
                                       tools=CHAT_TOOLS, reasoning_effort="low")
    assert r.choices[0].message.content == "The tool said: 18 C and sunny", r
    ok("streamed thinking, its block sent back")

    r = client.chat.completions.parse(model=MODEL, response_format=Weather, messages=[
        {"role": "user", "content": "Weather report for Paris as JSON"}])
    parsed = r.choices[0].message.parsed
    assert parsed == Weather(city="Paris", celsius=21), r
    ok("structured output parsed")

    if JSON_MODE:
        r = client.chat.completions.create(model=MODEL, response_format={"type": "json_object"},
                                           messages=[{"role": "user", "content": "JSON please"}])
        assert isinstance(json.loads(r.choices[0].message.content), dict), r
        ok("JSON mode")
        return
    try:
        client.chat.completions.create(model=MODEL, response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "JSON please"}])
        raise AssertionError("expected JSON mode to be refused")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and "response_format" in str(e) and "json_schema" in str(e), e
    ok("JSON mode refused naming the field")


def anthropic_client():
    import anthropic
    client = anthropic.Anthropic(base_url=BASE, api_key="client-key", max_retries=0)
    ask = [{"role": "user", "content": "Why is the sky blue?"}]

    m = client.messages.create(model=MODEL, max_tokens=4000, messages=ask,
                               thinking={"type": "enabled", "budget_tokens": 2000})
    assert [b.type for b in m.content] == ["thinking", "text"], m
    assert m.content[0].thinking == "Thinking about: Why is the sky blue?", m
    assert m.content[1].text == "Echo: Why is the sky blue?", m
    ok("reasoning_content shown as a thinking block")

    with client.messages.stream(model=MODEL, max_tokens=4000, messages=ask,
                                thinking={"type": "enabled", "budget_tokens": 2000}) as s:
        thinking = "".join(e.thinking for e in s if e.type == "thinking")
        final = s.get_final_message()
    assert thinking == "Thinking about: Why is the sky blue?", thinking
    assert [b.type for b in final.content] == ["thinking", "text"], final
    ok("streamed thinking")

    schema = Weather.model_json_schema()
    schema["additionalProperties"] = False
    m = client.messages.create(model=MODEL, max_tokens=500, messages=[
        {"role": "user", "content": "Weather report for Paris"}],
        output_config={"format": {"type": "json_schema", "schema": schema}})
    assert Weather.model_validate_json(m.content[0].text) == Weather(city="Paris", celsius=21), m
    ok("output format as response_format")


def responses():
    import openai
    client = openai.OpenAI(base_url=BASE + "/v1", api_key="client-key", max_retries=0)
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]

    r = client.responses.create(model=MODEL, input=asked, tools=RESPONSES_TOOLS,
                                reasoning={"effort": "low"})
    kinds = [item.type for item in r.output]
    assert kinds == ["reasoning", "function_call"], r.output
    thought = r.output[0]
    assert thought.content[0].text == "Thinking about: What is the weather in Paris?", thought
    assert thought.encrypted_content, thought
    ok("thinking as a reasoning item")

    # The next turn sends the answer's items back, reasoning included.
    call = r.output[1]
    turn = asked + [item.model_dump(exclude_none=True) for item in r.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"}]
    r = client.responses.create(model=MODEL, input=turn, tools=RESPONSES_TOOLS,
                                reasoning={"effort": "low"})
    assert r.output_text == "The tool said: 18 C and sunny", r
    ok("tool round with its reasoning item")

    events = list(client.responses.create(model=MODEL, input=asked, tools=RESPONSES_TOOLS,
                                          reasoning={"effort": "low"}, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert deltas == "Thinking about: What is the weather in Paris?", deltas
    assert [e.sequence_number for e in events] == list(range(len(events))), events
    done = events[-1].response
    assert [i.type for i in done.output] == ["reasoning", "function_call"], done
    assert done.output[0].encrypted_content == thought.encrypted_content, done.output[0]
    ok("streamed reasoning items")

    r = client.responses.parse(model=MODEL, input="Weather report for Paris", text_format=Weather)
    assert r.output_parsed == Weather(city="Paris", celsius=21), r
    ok("structured output parsed")


{"chat": chat, "anthropic": anthropic_client, "responses": responses}[MODE]()
