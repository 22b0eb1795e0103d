"""Drives a running synco-gateway with the official `openai` Python package.

Usage: openai_client.py BASE_URL MODEL

Run by gateway/tests/openai_python.rs, which starts the real binary with the tiny
random-weight model. The model's words are noise; the shapes, usage figures and
error types are what is checked. Exits non-zero on the first failed check.
"""

import sys

import openai
from openai import OpenAI

BASE_URL, MODEL = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=BASE_URL, api_key="standalone-has-no-keys-yet", max_retries=0, timeout=120)
MAX = 8


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok - {what}", flush=True)


def check_usage(usage, max_completion, what):
    check(usage is not None, f"{what}: usage present")
    check(usage.prompt_tokens > 0, f"{what}: prompt_tokens > 0 ({usage.prompt_tokens})")
    check(0 < usage.completion_tokens <= max_completion,
          f"{what}: 0 < completion_tokens <= {max_completion} ({usage.completion_tokens})")
    check(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, f"{what}: total = prompt + completion")


def expect(exc_type, fn, status, code=None, param=None, what=""):
    try:
        fn()
    except exc_type as e:
        check(e.status_code == status, f"{what}: {exc_type.__name__} with status {status} (got {e.status_code})")
        if code is not None:
            check(e.code == code, f"{what}: code {code!r} (got {e.code!r})")
        if param is not None:
            check(getattr(e, "param", None) == param, f"{what}: param {param!r} (got {getattr(e, 'param', None)!r})")
        return e
    raise AssertionError(f"{what}: expected {exc_type.__name__}")


# --- models --------------------------------------------------------------------------
models = client.models.list()
ids = [m.id for m in models.data]
check(MODEL in ids, f"models.list() contains {MODEL} ({ids})")
check(client.models.retrieve(MODEL).id == MODEL, "models.retrieve() finds the model")

# --- chat, whole ---------------------------------------------------------------------
messages = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the co-op."},
]
chat = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX, temperature=0.7,
                                      top_p=0.9, seed=7)
check(chat.object == "chat.completion", "chat: object is chat.completion")
check(chat.model == MODEL, "chat: model is the served name")
check(len(chat.choices) == 1 and chat.choices[0].message.role == "assistant", "chat: one assistant choice")
check(isinstance(chat.choices[0].message.content, str), "chat: content is text")
check(chat.choices[0].finish_reason in ("stop", "length"), f"chat: finish_reason ({chat.choices[0].finish_reason})")
check_usage(chat.usage, MAX, "chat")

chat = client.chat.completions.create(model=MODEL, messages=messages, max_completion_tokens=4, n=2,
                                      stop=["\n\n"], response_format={"type": "text"})
check(len(chat.choices) == 2, "chat n=2: two choices")
check_usage(chat.usage, 8, "chat n=2")

# --- chat, streamed ------------------------------------------------------------------
stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX, stream=True,
                                        stream_options={"include_usage": True})
chunks = list(stream)
content_chunks = [c for c in chunks if c.choices]
check(len(content_chunks) >= 1, f"chat stream: content chunks ({len(content_chunks)})")
check(all(c.object == "chat.completion.chunk" for c in chunks), "chat stream: chunk objects")
check(len({c.id for c in chunks}) == 1, "chat stream: one id throughout")
check(any(c.choices[0].finish_reason for c in content_chunks), "chat stream: a finish_reason")
last = chunks[-1]
check(last.choices == [] and last.usage is not None, "chat stream: last chunk carries usage only")
check(all(c.usage is None for c in chunks[:-1]), "chat stream: usage only on the last chunk")
check_usage(last.usage, MAX, "chat stream")

stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX, stream=True)
chunks = list(stream)
check(len(chunks) >= 1 and all(c.usage is None for c in chunks), "chat stream without include_usage: no usage")

# --- text completions ----------------------------------------------------------------
completion = client.completions.create(model=MODEL, prompt="The co-op decided", max_tokens=MAX)
check(completion.object == "text_completion", "completion: object")
check(isinstance(completion.choices[0].text, str), "completion: text")
check_usage(completion.usage, MAX, "completion")

stream = client.completions.create(model=MODEL, prompt="The co-op decided", max_tokens=MAX, stream=True,
                                   stream_options={"include_usage": True})
chunks = list(stream)
check(any(c.choices for c in chunks), "completion stream: text chunks")
check_usage(chunks[-1].usage, MAX, "completion stream")

# --- embeddings: the tiny chat model cannot embed ------------------------------------
e = expect(openai.BadRequestError, lambda: client.embeddings.create(model=MODEL, input="hello"), 400,
           param="model", what="embeddings on a chat model")
check("embeddings" in str(e), "embeddings: the message says why")

# --- errors, as the client's own exception types -------------------------------------
expect(openai.NotFoundError,
       lambda: client.chat.completions.create(model="no-such-model", messages=messages),
       404, code="model_not_found", param="model", what="unknown model")
expect(openai.NotFoundError, lambda: client.models.retrieve("no-such-model"), 404, code="model_not_found",
       what="retrieve unknown model")
expect(openai.BadRequestError,
       lambda: client.chat.completions.create(model=MODEL, messages=messages, temperature=5),
       400, param="temperature", what="temperature out of range")
expect(openai.BadRequestError,
       lambda: client.chat.completions.create(model=MODEL, messages=[]),
       400, param="messages", what="empty messages")
expect(openai.BadRequestError,
       lambda: client.post("/chat/completions", body={"model": MODEL}, cast_to=object),
       400, code="missing_required_parameter", param="messages", what="missing field")
expect(openai.BadRequestError,
       lambda: client.post("/chat/completions", body={"model": MODEL, "messages": "hi"}, cast_to=object),
       400, what="wrong type")
expect(openai.NotFoundError,
       lambda: client.completions.create(model="no-such-model", prompt="x"),
       404, code="model_not_found", what="unknown model (completions)")

# The server is still healthy after all that.
chat = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
check_usage(chat.usage, 2, "chat after errors")
print("all checks passed", flush=True)
