"""Embeddings from the in-process embedding model, through the official `openai` client.

Usage: embeddings_client.py BASE_URL API_KEY EMBEDDING_MODEL CHAT_MODEL

Run by gateway/tests/openai_python.rs against `synco-gateway standalone --tiny-model`
on the example co-op, whose `coop-embed` is served by a tiny generated Qwen3-Embedding
model. The vectors are noise; their shape, determinism, the usage figures and the
errors are what is checked. Prints `TOKENS <n>` (the prompt tokens the gateway
reported in all) for the Rust side to compare with the metered records.
"""

import math
import sys

import openai
from openai import OpenAI

BASE_URL, KEY, EMBED, CHAT = sys.argv[1:5]
client = OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=120)
total = 0


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok - {what}", flush=True)


def expect(exc_type, fn, status, param=None, what=""):
    try:
        fn()
    except exc_type as e:
        check(e.status_code == status, f"{what}: {exc_type.__name__} with status {status} (got {e.status_code})")
        if param is not None:
            check(getattr(e, "param", None) == param, f"{what}: param {param!r} (got {getattr(e, 'param', None)!r})")
        return e
    raise AssertionError(f"{what}: expected {exc_type.__name__}")


def norm(v):
    return math.sqrt(sum(x * x for x in v))


# One text. The client asks for base64 by default and decodes it to floats.
one = client.embeddings.create(model=EMBED, input="The co-op meets on Thursday.")
total += one.usage.prompt_tokens
check(one.object == "list" and len(one.data) == 1, "one input: one embedding")
vector = one.data[0].embedding
check(len(vector) == 64, f"the tiny model's vectors have 64 dimensions ({len(vector)})")
check(abs(norm(vector) - 1.0) < 1e-2, f"vectors are unit length ({norm(vector):.4f})")
# 28 bytes, one token each, and the end-of-text token the tokenizer appends.
check(one.usage.prompt_tokens == 29, f"usage counts the input's tokens ({one.usage.prompt_tokens})")
check(one.usage.total_tokens == one.usage.prompt_tokens, "total = prompt for embeddings")
check(one.model == EMBED, "the answer names the served model")

# A batch, as floats: order kept, the same text gives the same vector (alone or batched).
texts = ["The co-op meets on Thursday.", "Budgets are voted in spring.", "The co-op meets on Thursday."]
batch = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
total += batch.usage.prompt_tokens
check([d.index for d in batch.data] == [0, 1, 2], "a batch keeps the inputs' order")
check(batch.usage.prompt_tokens == 29 + 29 + 29, f"a batch's usage sums its inputs ({batch.usage.prompt_tokens})")
same = max(abs(a - b) for a, b in zip(batch.data[0].embedding, batch.data[2].embedding))
check(same < 1e-3, f"the same text gives the same vector within a batch (max diff {same:.2e})")
alone = max(abs(a - b) for a, b in zip(batch.data[0].embedding, vector))
check(alone < 1e-2, f"and the same vector as alone (max diff {alone:.2e})")
differ = max(abs(a - b) for a, b in zip(batch.data[0].embedding, batch.data[1].embedding))
check(differ > 1e-2, f"different texts give different vectors (max diff {differ:.2e})")

# Matryoshka shortening: the first components, renormalised.
short = client.embeddings.create(model=EMBED, input="The co-op meets on Thursday.", dimensions=16)
total += short.usage.prompt_tokens
check(len(short.data[0].embedding) == 16, "dimensions=16 gives 16 components")
check(abs(norm(short.data[0].embedding) - 1.0) < 1e-2, "a shortened vector is unit length again")

# Token input.
tokens = client.embeddings.create(model=EMBED, input=[[84, 104, 101]])
total += tokens.usage.prompt_tokens
check(len(tokens.data) == 1 and tokens.usage.prompt_tokens == 3, "token input is embedded as given")

# Errors, with the client's own exception types; none is metered.
expect(openai.BadRequestError, lambda: client.embeddings.create(model=EMBED, input=""), 400, param="input",
       what="an empty input")
expect(openai.BadRequestError, lambda: client.embeddings.create(model=EMBED, input="x", dimensions=65), 400,
       param="dimensions", what="more dimensions than the model has")
expect(openai.BadRequestError, lambda: client.embeddings.create(model=EMBED, input="x" * 3000), 400,
       param="input", what="an input past the model's 2,048 tokens")
expect(openai.BadRequestError, lambda: client.embeddings.create(model=CHAT, input="hello"), 400, param="model",
       what="embeddings from a chat model")
expect(openai.BadRequestError,
       lambda: client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}]),
       400, param="model", what="chat with an embedding model")
expect(openai.NotFoundError, lambda: client.embeddings.create(model="no-such-model", input="x"), 404,
       param="model", what="an unknown model")
expect(openai.AuthenticationError,
       lambda: OpenAI(base_url=BASE_URL, api_key="sk-synco-bad", max_retries=0).embeddings.create(
           model=EMBED, input="x"), 401, what="a bad key")

# Still healthy.
again = client.embeddings.create(model=EMBED, input="Budgets are voted in spring.")
total += again.usage.prompt_tokens
drift = max(abs(a - b) for a, b in zip(again.data[0].embedding, batch.data[1].embedding))
check(drift < 1e-2, f"after the errors, the same text gives the same vector (max diff {drift:.2e})")
print(f"TOKENS {total}", flush=True)
print("all checks passed", flush=True)
