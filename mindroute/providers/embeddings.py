"""Embeddings over the wire protocols: OpenAI's /embeddings passed through, Gemini's embedContent and
batchEmbedContents translated both ways; each registered by protocol name (`embedder_for`)."""

from __future__ import annotations

import base64
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

from mindroute.providers.errors import AuthenticationError, ProviderError, UnsupportedParameter, UpstreamError
from mindroute.providers.google import model_url
from mindroute.providers.registry import adapter_for
from mindroute.providers.registry import protocol as protocol_spec
from mindroute.providers.shapes import HttpCall
from mindroute.providers.sse import int_or_none, load_json
from mindroute.providers.transport import as_timeout, check_headers
from mindroute.providers.transport_aiohttp import AIOHTTP

ENCODING_FORMATS = ("float", "base64")
GEMINI_BATCH_MAX = 100  # the most requests one batchEmbedContents takes
# The request fields MindRoute itself reads; an OpenAI-protocol provider gets every other field as sent.
KNOWN_FIELDS = ("model", "input", "dimensions", "encoding_format", "user")

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


@dataclass(frozen=True)
class EmbeddingRequest:
    """An OpenAI embeddings request: `model` is the routed model, `body` the rest of the body as sent."""

    model: str
    input: EmbeddingInput
    dimensions: int | None = None
    encoding_format: str | None = None  # None: not sent (float, OpenAI's default)
    user: str | None = None
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_tokens(self) -> bool:
        """Whether the input is token ids (a list of ints, or a list of lists of ints) rather than text."""
        value = self.input
        return isinstance(value, list) and bool(value) and not isinstance(value[0], str)


@dataclass(frozen=True)
class EmbeddingResult:
    """The answer in OpenAI's shape (model as the provider named it; the HTTP layer renames it) and the
    provider's own token counts: None when it gave none."""

    body: dict[str, Any]
    prompt_tokens: int | None
    total_tokens: int | None

    @property
    def usage_reported(self) -> bool:
        return self.prompt_tokens is not None or self.total_tokens is not None


def float32_base64(vector: list[float]) -> str:
    """A vector as OpenAI's encoding_format "base64" sends it: little-endian float32 bytes, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


class Embedder(ABC):
    """One protocol's embeddings: its request, its answer, and the call (the protocol's chat adapter
    gives the headers, the error answers and the key redaction; the API's async transport carries it)."""

    protocol: str = ""

    @abstractmethod
    def build_call(self, request: EmbeddingRequest, endpoint: str, api_key: str | None) -> HttpCall:
        """The provider's request; raises UnsupportedParameter for what the protocol cannot carry."""

    @abstractmethod
    def parse_response(self, body: Any, request: EmbeddingRequest) -> EmbeddingResult:
        """The provider's JSON answer as OpenAI's embeddings answer."""

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"content-type": "application/json", **adapter_for(self.protocol).auth_headers(api_key)}

    async def aembed(
        self, request: EmbeddingRequest, endpoint: str, api_key: str | None, *, timeout: float | None = None
    ) -> EmbeddingResult:
        """The embeddings of `request`; a ProviderError (its message without the key) when the call fails."""
        adapter = adapter_for(self.protocol)
        key = (api_key or "").strip() or None
        try:
            if key is None and adapter.key_required:
                raise AuthenticationError("No API key is set for this provider")
            call = self.build_call(request, endpoint, key)
            check_headers(call.headers)
            async with AIOHTTP.post(call, as_timeout(timeout), stream=False) as answer:
                content = await answer.read()
                if not answer.ok:
                    raise adapter.error_from_response(answer.status, answer.headers, content, answer.reason)
                text = answer.text(content)
            body = load_json(text, "response")
            try:
                return self.parse_response(body, request)
            except (KeyError, IndexError, TypeError, AttributeError, ValueError, struct.error):
                raise UpstreamError(
                    f"The provider answered with JSON that is not an embeddings response ({self.protocol} protocol)"
                ) from None
        except ProviderError as exc:
            exc.redact(key)
            raise


class OpenAIEmbedder(Embedder):
    """POST {endpoint}/embeddings with the body as sent, the model replaced by the routed one."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def build_call(self, request: EmbeddingRequest, endpoint: str, api_key: str | None) -> HttpCall:
        body = {**request.body, "model": request.model}
        return HttpCall(url=endpoint.rstrip("/") + "/embeddings", headers=self.headers(api_key), body=body)

    def parse_response(self, body: Any, request: EmbeddingRequest) -> EmbeddingResult:
        if not isinstance(body, dict) or not isinstance(body["data"], list):
            raise ValueError("no data list")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return EmbeddingResult(body, int_or_none(usage.get("prompt_tokens")), int_or_none(usage.get("total_tokens")))


class GoogleEmbedder(Embedder):
    """models/{m}:embedContent for one text, :batchEmbedContents for several; token ids are refused."""

    protocol = "google"

    async def aembed(
        self, request: EmbeddingRequest, endpoint: str, api_key: str | None, *, timeout: float | None = None
    ) -> EmbeddingResult:
        """As Embedder.aembed; more texts than one batch takes go in several batches, one after the other."""
        texts = request.input
        if isinstance(texts, str) or len(texts) <= GEMINI_BATCH_MAX or request.is_tokens:
            return await super().aembed(request, endpoint, api_key, timeout=timeout)
        data: list[dict[str, Any]] = []
        counts: list[tuple[int | None, int | None]] = []
        for start in range(0, len(texts), GEMINI_BATCH_MAX):
            part = replace(request, input=texts[start : start + GEMINI_BATCH_MAX])
            result = await super().aembed(part, endpoint, api_key, timeout=timeout)
            data += [{**item, "index": len(data) + i} for i, item in enumerate(result.body["data"])]
            counts.append((result.prompt_tokens, result.total_tokens))
        prompt = None if any(p is None for p, _ in counts) else sum(p or 0 for p, _ in counts)
        total = None if any(t is None for _, t in counts) else sum(t or 0 for _, t in counts)
        usage = {"prompt_tokens": prompt or 0, "total_tokens": total or 0}  # as parse_response: 0 shown, NULL logged
        return EmbeddingResult({**result.body, "data": data, "usage": usage}, prompt, total)

    def build_call(self, request: EmbeddingRequest, endpoint: str, api_key: str | None) -> HttpCall:
        if request.is_tokens:
            raise UnsupportedParameter(
                "input: the Google Gemini protocol embeds text only; send strings, not token ids", "input"
            )
        for name in request.body:
            if name not in KNOWN_FIELDS:
                raise UnsupportedParameter(f"{name} is not a field the Google Gemini protocol has", name)
        extra: dict[str, Any] = {}
        if request.dimensions is not None:
            extra["outputDimensionality"] = request.dimensions
        model = request.model.removeprefix("models/")
        headers = self.headers(api_key)
        if isinstance(request.input, str):
            body = {"content": {"parts": [{"text": request.input}]}, **extra}
            return HttpCall(url=model_url(endpoint, model, "embedContent"), headers=headers, body=body)
        requests = [
            {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra} for text in request.input
        ]
        return HttpCall(
            url=model_url(endpoint, model, "batchEmbedContents"), headers=headers, body={"requests": requests}
        )

    def parse_response(self, body: Any, request: EmbeddingRequest) -> EmbeddingResult:
        if isinstance(request.input, str):
            vectors = [body["embedding"]["values"]]
        else:
            vectors = [item["values"] for item in body["embeddings"]]
            if len(vectors) != len(request.input):
                raise ValueError("not one embedding per input")
        for vector in vectors:
            if not isinstance(vector, list) or not all(isinstance(v, int | float) for v in vector):
                raise ValueError("an embedding that is not a list of numbers")
        as_base64 = request.encoding_format == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": float32_base64(v) if as_base64 else [float(x) for x in v]}
            for i, v in enumerate(vectors)
        ]
        metadata = body.get("usageMetadata") if isinstance(body.get("usageMetadata"), dict) else {}
        prompt = int_or_none(metadata.get("promptTokenCount"))
        total = int_or_none(metadata.get("totalTokenCount"))
        total = prompt if total is None else total
        # Gemini's embedding answers carry no token counts: the answer then says 0 (OpenAI's shape has
        # numbers there), while the Logs row keeps NULL, unknown (usage_reported false), never 0.
        usage = {"prompt_tokens": prompt or 0, "total_tokens": total or 0}
        answer = {"object": "list", "data": data, "model": request.model, "usage": usage}
        return EmbeddingResult(answer, prompt, total)


_embedders: dict[str, Embedder] = {}


def register_embedder(embedder: Embedder) -> None:
    """Add (or replace) the embeddings of a protocol, by its name."""
    _embedders[embedder.protocol] = embedder


def embedder_for(protocol: str) -> Embedder | None:
    """The embeddings of a provider's protocol; None for a protocol that has none (Anthropic)."""
    return _embedders.get(protocol)


for _embedder in (OpenAIEmbedder("openai"), OpenAIEmbedder("openai-compatible"), GoogleEmbedder()):
    register_embedder(_embedder)


def protocol_label(protocol: str) -> str:
    """A protocol's short name for messages ("Anthropic", "Google Gemini")."""
    try:
        return protocol_spec(protocol).label.split(" (")[0]
    except ValueError:
        return protocol
