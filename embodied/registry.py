"""Names to classes, resolved lazily (as gymnasium does).

A name such as ``"tabletop/pick-v0"`` (an env), ``"scripted-expert"`` (a
policy) or ``"sim-twin"`` (a robot) maps to an entry point
``"module.path:Attr"`` plus default keyword arguments. The module is imported
only when the name is first made, so ``embodied`` never imports ``envs``,
``policies`` or ``hardware`` at import time.

Packages announce their names in a small registration module that imports
nothing heavy. The registry imports those modules the first time it is asked
about a name it does not know: the built-in ones below, then any module
published under the ``embodied.plugins`` entry-point group by third parties.
Tests and fakes register through the same `register` call users use.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

KINDS = ("env", "policy", "robot")

# Registration modules of the packages in this repository (imported lazily).
BUILTIN_REGISTRATION_MODULES = ("envs.registration", "policies.registration", "hardware.registration")


class RegistryError(KeyError):
    """An unknown name, or an entry point that cannot be imported."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    entry_point: str | Callable[..., Any]
    kwargs: dict[str, Any]
    extra: str | None = None  # the pip extra that provides its dependencies
    description: str = ""

    def load(self) -> Callable[..., Any]:
        if callable(self.entry_point):
            return self.entry_point
        module_name, _, attr = self.entry_point.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            hint = f" Install it with: pip install 'embodied[{self.extra}]'." if self.extra else ""
            raise RegistryError(
                f"{self.kind} {self.name!r} needs the module {e.name!r}, which is not installed.{hint}"
            ) from e
        try:
            return getattr(module, attr)
        except AttributeError as e:
            raise RegistryError(f"{self.kind} {self.name!r}: {module_name} has no attribute {attr!r}") from e


_REGISTRY: dict[str, Entry] = {}
_plugins_loaded = False


def register(
    name: str,
    entry_point: str | Callable[..., Any],
    *,
    kind: str = "env",
    extra: str | None = None,
    description: str = "",
    override: bool = False,
    **kwargs: Any,
) -> None:
    """Register `name` -> `entry_point` ("module:Attr" or a callable) with default kwargs."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ValueError(f"entry point {entry_point!r} must look like 'package.module:Attr'")
    if name in _REGISTRY and not override:
        old = _REGISTRY[name]
        if old.entry_point == entry_point and old.kwargs == kwargs and old.kind == kind:
            return  # registering the same thing twice is harmless (module re-import)
        raise ValueError(f"{kind} {name!r} is already registered to {old.entry_point}; pass override=True")
    _REGISTRY[name] = Entry(name, kind, entry_point, dict(kwargs), extra, description)
    if kind == "env" and isinstance(entry_point, str):
        _register_with_gymnasium(name, entry_point, kwargs)


def _register_with_gymnasium(name: str, entry_point: str, kwargs: dict[str, Any]) -> None:
    """Make `gymnasium.make(name)` work too, for tools that speak gymnasium."""
    try:
        import gymnasium
    except ModuleNotFoundError:
        return
    if name not in gymnasium.registry:
        gymnasium.register(id=name, entry_point=entry_point, kwargs=dict(kwargs), disable_env_checker=True)


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module_name in BUILTIN_REGISTRATION_MODULES:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name and not module_name.startswith(e.name or "\0"):
                raise
    for ep in importlib.metadata.entry_points(group="embodied.plugins"):
        ep.load()


def get(name: str, kind: str | None = None) -> Entry:
    """The entry for `name`; raises RegistryError listing close names if unknown."""
    if name not in _REGISTRY:
        _load_plugins()
    entry = _REGISTRY.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        known = names(kind)
        close = [n for n in known if name.split("/")[0] in n or n.split("/")[-1] in name][:8]
        what = kind or "name"
        raise RegistryError(
            f"unknown {what} {name!r}. "
            + (f"Did you mean one of {close}? " if close else "")
            + f"Run `embodied list` to see all {len(known)} registered {what}s."
        )
    return entry


def names(kind: str | None = None, prefix: str = "") -> list[str]:
    """All registered names (optionally of one kind, starting with `prefix`), sorted."""
    _load_plugins()
    return sorted(n for n, e in _REGISTRY.items() if (kind is None or e.kind == kind) and n.startswith(prefix))


def make(name: str, kind: str | None = None, **kwargs: Any) -> Any:
    """Build the thing registered as `name`, overriding its default kwargs with `kwargs`."""
    entry = get(name, kind)
    return entry.load()(**(entry.kwargs | kwargs))
