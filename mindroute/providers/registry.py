"""The one list of the wire protocols MindRoute speaks: each protocol module registers itself here.

A protocol is one module with a `register_protocols(register)` hook (as simonw/llm's model families
register themselves) that registers a `ProtocolSpec` per protocol it speaks: its name (the providers
table's `protocol` column), label, default endpoint and its adapter (which knows whether it needs a key). The
built-in modules (builtin.py) are imported on the first question, so the database's CHECK constraint
reads their names without any HTTP stack. A plug-in calls `register(spec)` itself.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mindroute.providers.builtin import BUILTIN_MODULES, BUILTIN_PROTOCOLS

if TYPE_CHECKING:
    from mindroute.providers.adapter import ProviderAdapter


@dataclass(frozen=True)
class ProtocolSpec:
    """One wire protocol as the rest of MindRoute sees it."""

    name: str  # the providers table's `protocol` value
    label: str  # what the Providers page shows
    default_endpoint: str
    # Adapters hold no per-call state, so one instance serves every thread and task.
    adapter: ProviderAdapter
    # The provider `seed-providers` adds for this protocol (inactive until a key is set); None adds none.
    official_provider: str | None = None

    @property
    def key_required(self) -> bool:
        """Whether every call without a key fails (an openai-compatible server may need none)."""
        return self.adapter.key_required


_specs: dict[str, ProtocolSpec] = {}
_builtins_loaded = False
_lock = threading.RLock()


def register(spec: ProtocolSpec) -> None:
    """Add a protocol; ValueError when its name is taken by another one."""
    with _lock:
        known = _specs.get(spec.name)
        if known is not None and known is not spec:
            raise ValueError(f"Protocol {spec.name!r} is already registered")
        _specs[spec.name] = spec


def unregister(name: str) -> None:
    """Remove a plug-in protocol (tests); the built-in ones stay."""
    if name in BUILTIN_PROTOCOLS:
        raise ValueError(f"{name!r} is a built-in protocol")
    with _lock:
        _specs.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    with _lock:
        if _builtins_loaded:
            return
        found: dict[str, ProtocolSpec] = {}

        def collect(spec: ProtocolSpec) -> None:
            found[spec.name] = spec

        for module_name in BUILTIN_MODULES:
            hook: Callable[[Callable[[ProtocolSpec], None]], None] = importlib.import_module(
                module_name
            ).register_protocols
            hook(collect)
        if tuple(sorted(found)) != tuple(sorted(BUILTIN_PROTOCOLS)):
            raise RuntimeError(f"The built-in modules register {sorted(found)}, not {sorted(BUILTIN_PROTOCOLS)}")
        plugins = dict(_specs)
        _specs.clear()
        _specs.update({name: found[name] for name in BUILTIN_PROTOCOLS})
        _specs.update(plugins)
        _builtins_loaded = True


def protocols() -> tuple[ProtocolSpec, ...]:
    """Every protocol, the built-in ones first in display order, then plug-ins as registered."""
    _load_builtins()
    return tuple(_specs.values())


def protocol(name: str) -> ProtocolSpec:
    """The protocol called `name`; ValueError for one MindRoute does not speak."""
    _load_builtins()
    try:
        return _specs[name]
    except KeyError:
        raise ValueError(f"Unknown provider protocol {name!r}: expected one of {', '.join(_specs)}") from None


def adapter_for(name: str) -> ProviderAdapter:
    """The adapter for a provider's `protocol` column; ValueError for one MindRoute does not speak."""
    return protocol(name).adapter


def supported_protocols() -> tuple[str, ...]:
    """The `protocol` values a provider may have, plug-ins included."""
    return tuple(spec.name for spec in protocols())


def official_providers() -> tuple[tuple[str, str], ...]:
    """(provider name, protocol) of what `seed-providers` adds."""
    return tuple((spec.official_provider, spec.name) for spec in protocols() if spec.official_provider)


class _DefaultEndpoints(Mapping[str, str]):
    """protocol -> default endpoint, read from the registry on every lookup (plug-ins included)."""

    def __getitem__(self, name: str) -> str:
        try:
            return protocol(name).default_endpoint
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(supported_protocols())

    def __len__(self) -> int:
        return len(protocols())


DEFAULT_ENDPOINTS: Mapping[str, str] = _DefaultEndpoints()
