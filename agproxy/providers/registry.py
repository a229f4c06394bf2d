"""The providers as the gateway runs them: which one serves a model, the models they add
to the catalog, and a request through one of them under its key ring (retries, cooldowns,
the monitor's attempts), the same rules the Google pool's accounts live by.

A model reaches a provider three ways:
- by its prefix, `name/model` (a mapping rule may target one);
- by an alias the provider's entry gives it;
- by a bare id the entry lists: when the Google pool does not serve that id, the
  provider serves it; when the pool does, the provider is its fallback, asked once no
  account is left (all cooling down, refused, or failed for the request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from agproxy.config import Settings
from agproxy.monitor import note
from agproxy.pool.keyring import KeyAttempt, KeyRing
from agproxy.provider_settings import ProviderEntry
from agproxy.providers.client import Passed, ProviderClient
from agproxy.upstream.base import Check, open_stream

T = TypeVar("T")
# The longest id passed on to a provider that lists no models (ids it lists are as long).
MODEL_ID_MAX = 200


@dataclass(frozen=True, slots=True)
class Target:
    """A provider and the model id it is asked for."""

    entry: ProviderEntry
    model: str

    @property
    def name(self) -> str:
        return self.entry.name


class Providers:
    def __init__(
        self,
        settings: Callable[[], Settings],
        client: ProviderClient,
        default_cooldown: Callable[[], float],
        steps: Callable[[], Sequence[float]],
    ) -> None:
        self.settings = settings
        self.client = client
        self.default_cooldown = default_cooldown
        self.steps = steps
        self.rings: dict[str, KeyRing] = {}
        self._index_key: object = None
        self._routes: dict[str, Target] = {}
        self._by_id: dict[str, list[Target]] = {}
        self._catalog: tuple[str, ...] = ()
        self._active = False

    # -- what serves what ----------------------------------------------------
    def entries(self) -> tuple[ProviderEntry, ...]:
        """The providers that can answer: enabled, with a key."""
        return tuple(e for e in self.settings().provider_entries if e.enabled and e.keys)

    def can_serve(self) -> bool:
        """Whether the service may start without Google accounts. z.ai as before (its
        zai_* settings) serves only through its dispatch mode: with the mode off and no
        models listed it serves nothing, as the contract's start error says."""
        return any(e.models or e.dispatch != "off" or e.name != "zai" for e in self.entries())

    def entry(self, name: str) -> ProviderEntry | None:
        return next((e for e in self.entries() if e.name == name), None)

    def _index(self) -> None:
        settings = self.settings()
        if settings is self._index_key:  # rebuilt when the settings are
            return
        entries = self.entries()
        routes: dict[str, Target] = {}
        by_id: dict[str, list[Target]] = {}
        for entry in entries:
            for model in entry.models:
                target = Target(entry, model.id)
                routes.setdefault(f"{entry.name}/{model.id}", target)
                for alias in model.aliases:
                    routes.setdefault(alias, target)
                by_id.setdefault(model.id, []).append(target)
        self._routes, self._by_id = routes, by_id
        self._catalog = tuple(dict.fromkeys([*routes, *by_id]))
        self._active = bool(entries)
        self._index_key = settings

    def catalog(self) -> tuple[str, ...]:
        """The names the providers add to the gateway's model list: `name/id` of each
        model, each alias, and each bare id."""
        self._index()
        return self._catalog

    def active(self) -> bool:
        """Whether any provider can answer: without one, a request asks nothing more."""
        self._index()
        return self._active

    def target(self, model: str) -> Target | None:
        """The provider `model` names outright: by prefix or alias. A prefix of a provider
        that lists no models passes any id on (OpenRouter serves hundreds)."""
        self._index()
        found = self._routes.get(model)
        if found is not None:
            return found
        name, slash, rest = model.partition("/")
        fits = slash and 0 < len(rest) <= MODEL_ID_MAX
        entry = self.entry(name) if fits else None
        if entry is not None and not entry.models:
            return Target(entry, rest)
        return None

    def serving(self, model: str) -> list[Target]:
        """The providers that list the bare id `model`, in the order of the settings."""
        self._index()
        return self._by_id.get(model, [])

    # -- asking --------------------------------------------------------------
    def ring(self, entry: ProviderEntry) -> KeyRing:
        ring = self.rings.get(entry.name)
        if ring is None:
            name = entry.name

            def current() -> ProviderEntry | None:
                return next((e for e in self.settings().provider_entries if e.name == name), None)

            def keys() -> list[str]:
                found = current()
                return [k.key for k in found.keys] if found else []

            def names() -> list[str]:
                found = current()
                return [found.key_name(i) for i in range(len(found.keys))] if found else []

            shown = "z.ai" if name == "zai" else name  # as its messages said before
            ring = KeyRing(shown, keys, self.default_cooldown, steps=self.steps, names=names)
            self.rings[name] = ring
        return ring

    async def stream(
        self,
        target: Target,
        inner: Callable[[], dict[str, Any]],
        whole: bool,
        check: Check | None,
    ) -> tuple[Any, AsyncIterator[Any]]:
        """The first pivot event of the provider's answer and the rest, through its keys.
        Raises Exhausted when no key is left."""
        entry, model = target.entry, target.model

        async def attempt(a: KeyAttempt) -> tuple[Any, AsyncIterator[Any]]:
            events = self.client.events(entry, a.key, model, inner())
            return await open_stream(events, whole=whole, check=check)

        return await self._run(target, attempt)

    async def forward(
        self, target: Target, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> Passed:
        """The client's request passed to the provider as it is, but for its model."""
        entry, model = target.entry, target.model
        payload = {**body, "model": model} if "model" in body else body

        async def attempt(a: KeyAttempt) -> Passed:
            return await self.client.forward(entry, a.key, path, payload, headers)

        return await self._run(target, attempt)

    async def _run(self, target: Target, call: Callable[[KeyAttempt], Awaitable[T]]) -> T:
        """`call` with one key of the target's provider at a time, under its key ring."""
        attempts = self.settings().retry_max_attempts
        answer = await self.ring(target.entry).run(target.model, attempts, call)
        note(provider=target.name, routed_model=target.model)
        return answer
