#!/usr/bin/env python3
"""The official OpenAI Python SDK's embeddings calls through a Wardgate LLM
route whose provider is Amazon Bedrock (the fake in tests/fakes): a Titan
Text Embeddings v2 or Cohere Embed v3 model, whose vectors are each text's
SHA-256 as multiples of 1/128 (Cohere's of "INPUT_TYPE:text").

Usage: openai_embeddings.py BASE_URL MODEL
Prints one "ok ..." line per check; exits non-zero on the first failure.
"""

import hashlib
import sys

import openai

BASE, MODEL = sys.argv[1].rstrip("/"), sys.argv[2]
COHERE = "cohere.embed" in MODEL


def ok(name):
    print("ok", name, flush=True)


def expected(text, dims=1024, input_type="search_document"):
    key = (input_type + ":" + text) if COHERE else text
    digest = hashlib.sha256(key.encode()).digest()
    return [(digest[i % 32] - 128) / 128 for i in range(dims)]


def main():
    client = openai.OpenAI(base_url=BASE + "/v1", api_key="client-key", max_retries=0)

    # The SDK's default: base64 on the wire, decoded by the SDK.
    texts = ["the quick brown fox", "jumps over", "the lazy dog"]
    r = client.embeddings.create(model=MODEL, input=texts)
    assert [d.index for d in r.data] == [0, 1, 2], r
    for d, t in zip(r.data, texts):
        assert d.embedding == expected(t), (t, d.embedding[:4])
    assert r.usage.prompt_tokens == 9 and r.usage.total_tokens == 9, r.usage
    assert r.object == "list" and r.model == MODEL, r
    ok("list as base64")

    # Floats asked for; Titan's dimensions, Cohere's own input_type.
    if COHERE:
        r = client.embeddings.create(model=MODEL, input="where is it?", encoding_format="float",
                                     extra_body={"input_type": "search_query"})
        want = expected("where is it?", input_type="search_query")
    else:
        r = client.embeddings.create(model=MODEL, input="where is it?", encoding_format="float",
                                     dimensions=256)
        want = expected("where is it?", dims=256)
    assert r.data[0].embedding == want and r.usage.prompt_tokens == 3, r.usage
    ok("one text as floats")

    # More texts than one call takes (Cohere: 96), in order.
    many = ["text number %d" % i for i in range(100 if COHERE else 20)]
    r = client.embeddings.create(model=MODEL, input=many)
    assert [d.index for d in r.data] == list(range(len(many))), r.data[:3]
    assert all(d.embedding == expected(t) for d, t in zip(r.data, many))
    assert r.usage.prompt_tokens == 3 * len(many), r.usage
    ok("many texts in order")

    try:
        client.embeddings.create(model=MODEL, input=[[1, 2, 3]])
        raise AssertionError("expected token ids to be refused")
    except openai.BadRequestError as e:
        assert "input[0]" in str(e) and "token ids" in str(e), e
    ok("token ids refused")


if __name__ == "__main__":
    main()
