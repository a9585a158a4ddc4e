#!/usr/bin/env python3
"""The official OpenAI and Anthropic Python SDKs as clients of a Wardgate
LLM route: plain, streamed, tool calls (whole and streamed), tool results,
and a provider error, for each SDK. The route's provider may speak either
API; the answers must be what the fake provider (tests/fakes) says.

Usage: llm_sdks.py BASE_URL   (e.g. http://127.0.0.1:4000/oa)
Prints one "ok ..." line per check; exits non-zero on the first failure.
"""

import json
import sys

import anthropic
import openai

BASE = sys.argv[1].rstrip("/")
WEATHER_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
WEATHER_ANTHROPIC = [{"name": "get_weather", "description": "Weather for a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}}]


def ok(name):
    print("ok", name, flush=True)


def check_openai():
    client = openai.OpenAI(base_url=BASE + "/v1", api_key="client-key-never-forwarded", max_retries=0)
    r = client.chat.completions.create(model="m", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "Echo: hello there", r
    assert r.choices[0].finish_reason == "stop", r
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
    ok("openai plain")

    stream = client.chat.completions.create(model="m", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "stream me please"}])
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == "Echo: stream me please", text
    assert finish == "stop", finish
    assert usage and usage.completion_tokens > 0, usage
    ok("openai stream")

    msgs = [{"role": "user", "content": "what is the weather in Paris?"}]
    r = client.chat.completions.create(model="m", messages=msgs, tools=WEATHER_OPENAI)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls", r
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, call
    msgs += [r.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    r = client.chat.completions.create(model="m", messages=msgs, tools=WEATHER_OPENAI)
    assert r.choices[0].message.content == "The tool said: 18C and sunny", r
    ok("openai tools")

    stream = client.chat.completions.create(model="m", stream=True, tools=WEATHER_OPENAI,
                                            messages=[{"role": "user", "content": "weather in Paris?"}])
    calls, finish = {}, None
    for chunk in stream:
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"name": "", "args": ""})
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
    assert finish == "tool_calls", finish
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["args"]) == {"city": "Paris"}, calls
    ok("openai tools stream")

    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "bad request"}])
        raise AssertionError("expected a 400")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and "refuses" in str(e), e
    ok("openai error")


def check_anthropic():
    client = anthropic.Anthropic(base_url=BASE, api_key="client-key-never-forwarded", max_retries=0)
    r = client.messages.create(model="m", max_tokens=100, system="Be brief.",
                               messages=[{"role": "user", "content": "hello there"}])
    assert r.content[0].text == "Echo: hello there", r
    assert r.stop_reason == "end_turn", r
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
    ok("anthropic plain")

    with client.messages.stream(model="m", max_tokens=100,
                                messages=[{"role": "user", "content": "stream me please"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Echo: stream me please", text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final
    ok("anthropic stream")

    msgs = [{"role": "user", "content": "what is the weather in Paris?"}]
    r = client.messages.create(model="m", max_tokens=100, messages=msgs, tools=WEATHER_ANTHROPIC)
    use = [b for b in r.content if b.type == "tool_use"][0]
    assert r.stop_reason == "tool_use", r
    assert use.name == "get_weather" and use.input == {"city": "Paris"}, use
    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                           "content": "18C and sunny"}]}]
    r = client.messages.create(model="m", max_tokens=100, messages=msgs, tools=WEATHER_ANTHROPIC)
    assert r.content[0].text == "The tool said: 18C and sunny", r
    ok("anthropic tools")

    with client.messages.stream(model="m", max_tokens=100, tools=WEATHER_ANTHROPIC,
                                messages=[{"role": "user", "content": "weather in Paris?"}]) as s:
        final = s.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert final.stop_reason == "tool_use", final
    assert use.name == "get_weather" and use.input == {"city": "Paris"}, final
    ok("anthropic tools stream")

    try:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "bad request"}])
        raise AssertionError("expected a 400")
    except anthropic.BadRequestError as e:
        assert e.status_code == 400 and "refuses" in str(e), e
    ok("anthropic error")


if __name__ == "__main__":
    check_openai()
    check_anthropic()
