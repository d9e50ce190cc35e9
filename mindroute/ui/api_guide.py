"""What the API guide page shows: the API's base URL as the browser reaches the app, copyable examples, error statuses.

The examples never hold a real key: keys are shown once, at creation, and only their digest is stored.
They read the key from an environment variable instead. Model ids and the base URL are put into each
example with the quoting of its language, so an odd provider name cannot break (or inject into) a snippet.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pandas as pd

from mindroute import i18n
from mindroute.http.openapi import OPENAPI
from mindroute.i18n import _, _l

API_PATH = "/v1"
FALLBACK_ORIGIN = "http://localhost:8501"  # `streamlit run app.py` on this machine with its default port
KEY_ENV = "MINDROUTE_API_KEY"
EXAMPLE_MODEL = "<provider name>/<model>"
CHAT_PATH = "/v1/chat/completions"
# The page's wording of the API's error statuses. Each English text is the API's own (its OpenAPI document,
# which stays English); a status whose documented text differs from it (changed since) is shown as documented.
STATUS_MEANINGS = {
    400: _l(
        "Invalid request (more than MINDROUTE_API_MAX_MESSAGES messages among others), over the token limit, "
        "media not allowed, or an ambiguous bare model"
    ),
    401: _l("Unknown, expired or revoked key, or its owner is deactivated"),
    403: _l("A provider granted to you is inactive, or the model is not allowed"),
    404: _l("The model exists nowhere, or only on providers not granted to you; or an unknown URL (code unknown_url)"),
    413: _l("Body over MINDROUTE_API_MAX_BODY_BYTES"),
    429: _l("The provider's rate limit (retry-after passed on)"),
    502: _l("The provider failed"),
    503: _l("MindRoute's database is unavailable; retry (retry-after given)"),
    504: _l("The provider did not answer in time"),
}
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


@dataclass(frozen=True)
class BaseUrl:
    url: str  # ends with /v1
    guessed: bool  # True when the app's own address could not be read from the browser's request

    @property
    def origin(self) -> str:
        return self.url.removesuffix(API_PATH)

    @property
    def openapi_url(self) -> str:
        return f"{self.url}/openapi.json"


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not _HOST.match(parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def api_base_url(page_url: str | None, headers: Mapping[str, str] | None = None) -> BaseUrl:
    """The API's base URL: the origin of the page in the browser (st.context.url), else the request's
    Host header, else a guess (this machine, Streamlit's default port).

    The API is mounted at the origin's root by app.py, whatever the page's path.
    """
    origin = _origin_of(page_url)
    if origin is None and headers:
        host = headers.get("host") or headers.get("Host")
        proto = (headers.get("x-forwarded-proto") or headers.get("X-Forwarded-Proto") or "http").split(",")[0].strip()
        if host and _HOST.match(host):
            origin = f"{proto if proto in ('http', 'https') else 'http'}://{host}"
    if origin is None:
        return BaseUrl(FALLBACK_ORIGIN + API_PATH, guessed=True)
    return BaseUrl(origin + API_PATH, guessed=False)


def _literal(value: str) -> str:
    """A string literal for Python and JavaScript (and JSON): quoted and escaped by json, but a Korean (or any
    non-ASCII) provider name written as itself, not as \\uXXXX escapes."""
    return json.dumps(value, ensure_ascii=False)


def curl_example(base: BaseUrl, model: str, *, stream: bool = False) -> str:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Say hello in five words."}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    flags = "curl -N" if stream else "curl"  # -N: print each event as it arrives
    return (
        f"{flags} {shlex.quote(base.url + '/chat/completions')} \\\n"
        f'  -H "Authorization: Bearer ${KEY_ENV}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(json.dumps(body, indent=2, ensure_ascii=False))}"
    )


def curl_models_example(base: BaseUrl) -> str:
    return f'curl {shlex.quote(base.url + "/models")} \\\n  -H "Authorization: Bearer ${KEY_ENV}"'


def python_example(base: BaseUrl, model: str, *, stream: bool = False) -> str:
    head = _python_head(base)
    if not stream:
        return head + (
            "response = client.chat.completions.create(\n"
            f"    model={_literal(model)},\n"
            '    messages=[{"role": "user", "content": "Say hello in five words."}],\n'
            ")\n"
            "print(response.choices[0].message.content)\n"
            "print(response.usage)"
        )
    return head + (
        "stream = client.chat.completions.create(\n"
        f"    model={_literal(model)},\n"
        '    messages=[{"role": "user", "content": "Say hello in five words."}],\n'
        "    stream=True,\n"
        '    stream_options={"include_usage": True},\n'
        ")\n"
        "for chunk in stream:\n"
        "    if chunk.choices and chunk.choices[0].delta.content:\n"
        '        print(chunk.choices[0].delta.content, end="", flush=True)\n'
        "    if chunk.usage:  # the last chunk: no choices, the call's token counts\n"
        "        print()\n"
        "        print(chunk.usage)"
    )


def _python_head(base: BaseUrl) -> str:
    return (
        "import os\n\n"
        "from openai import OpenAI  # pip install openai\n\n"
        f"client = OpenAI(base_url={_literal(base.url)}, api_key=os.environ[{_literal(KEY_ENV)}])\n\n"
    )


def python_tools_example(base: BaseUrl, model: str) -> str:
    """Tool calling: the tools, the model's tool_calls, each result sent back in a tool message, the answer."""
    return (
        "import json\n" + _python_head(base) + "tools = [\n"
        "    {\n"
        '        "type": "function",\n'
        '        "function": {\n'
        '            "name": "get_weather",\n'
        '            "description": "The current weather in a city",\n'
        '            "parameters": {\n'
        '                "type": "object",\n'
        '                "properties": {"city": {"type": "string"}},\n'
        '                "required": ["city"],\n'
        "            },\n"
        "        },\n"
        "    }\n"
        "]\n\n\n"
        "def get_weather(city: str) -> dict:\n"
        '    return {"city": city, "forecast": "sunny", "celsius": 21}  # your own code\n\n\n'
        'messages = [{"role": "user", "content": "What is the weather in Oslo?"}]\n'
        "response = client.chat.completions.create(\n"
        f"    model={_literal(model)},\n"
        "    messages=messages,\n"
        "    tools=tools,\n"
        ")\n"
        "message = response.choices[0].message\n"
        'while message.tool_calls:  # finish_reason is "tool_calls"\n'
        "    messages.append(message)  # the assistant's calls, with their ids\n"
        "    for call in message.tool_calls:\n"
        "        result = get_weather(**json.loads(call.function.arguments))\n"
        '        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})\n'
        "    response = client.chat.completions.create(\n"
        f"        model={_literal(model)},\n"
        "        messages=messages,\n"
        "        tools=tools,\n"
        "    )\n"
        "    message = response.choices[0].message\n"
        "print(message.content)"
    )


def python_structured_example(base: BaseUrl, model: str) -> str:
    """Structured output: response_format json_schema, and the answer read as JSON."""
    return (
        "import json\n" + _python_head(base) + "response = client.chat.completions.create(\n"
        f"    model={_literal(model)},\n"
        '    messages=[{"role": "user", "content": "Name a city and its country."}],\n'
        "    response_format={\n"
        '        "type": "json_schema",\n'
        '        "json_schema": {\n'
        '            "name": "city",\n'
        '            "strict": True,\n'
        '            "schema": {\n'
        '                "type": "object",\n'
        '                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},\n'
        '                "required": ["city", "country"],\n'
        '                "additionalProperties": False,\n'
        "            },\n"
        "        },\n"
        "    },\n"
        ")\n"
        "city = json.loads(response.choices[0].message.content)\n"
        'print(city["city"], city["country"])'
    )


def python_embeddings_example(base: BaseUrl, model: str) -> str:
    """Embeddings: client.embeddings.create with an embedding model's id."""
    return _python_head(base) + (
        "response = client.embeddings.create(\n"
        f"    model={_literal(model)},  # an embedding model (OpenAI-protocol or Google provider)\n"
        '    input=["MindRoute routes calls", "to many providers"],\n'
        ")\n"
        "for item in response.data:\n"
        "    print(item.index, len(item.embedding), item.embedding[:3])\n"
        "print(response.usage)"
    )


def node_example(base: BaseUrl, model: str, *, stream: bool = False) -> str:
    head = (
        'import OpenAI from "openai"; // npm install openai\n\n'
        "const client = new OpenAI({\n"
        f"  baseURL: {_literal(base.url)},\n"
        f"  apiKey: process.env.{KEY_ENV},\n"
        "});\n\n"
    )
    if not stream:
        return head + (
            "const response = await client.chat.completions.create({\n"
            f"  model: {_literal(model)},\n"
            '  messages: [{ role: "user", content: "Say hello in five words." }],\n'
            "});\n"
            "console.log(response.choices[0].message.content);"
        )
    return head + (
        "const stream = await client.chat.completions.create({\n"
        f"  model: {_literal(model)},\n"
        '  messages: [{ role: "user", content: "Say hello in five words." }],\n'
        "  stream: true,\n"
        "  stream_options: { include_usage: true },\n"
        "});\n"
        "for await (const chunk of stream) {\n"
        '  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");\n'
        '  if (chunk.usage) console.log("\\n", chunk.usage);\n'
        "}"
    )


def key_env_example() -> str:
    return f"export {KEY_ENV}='mr-…'  # the key you copied when you created it"


def error_statuses() -> pd.DataFrame:
    """The error statuses the chat endpoint answers, with their meaning: from the API's own OpenAPI document."""
    responses = OPENAPI["paths"][CHAT_PATH]["post"]["responses"]
    rows = [
        {"status": int(code), "meaning": spec.get("description", "")}
        for code, spec in responses.items()
        if code.isdigit() and int(code) >= 400
    ]
    return pd.DataFrame(sorted(rows, key=lambda r: r["status"]), columns=["status", "meaning"])


def shown_error_statuses() -> pd.DataFrame:
    """error_statuses() as the page shows it: its headers and meanings in the reader's language."""
    table = error_statuses()
    meanings = []
    for status, documented in zip(table["status"], table["meaning"], strict=True):
        known = STATUS_MEANINGS.get(int(status))
        meanings.append(i18n.text(known) if known is not None and str(known) == documented else documented)
    return pd.DataFrame({_("status"): table["status"], _("meaning"): meanings})


def error_body_example() -> str:
    return json.dumps(
        {"error": {"message": "…what went wrong…", "type": "invalid_request_error", "code": "…", "param": None}},
        indent=2,
        ensure_ascii=False,
    )
