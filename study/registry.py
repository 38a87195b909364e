"""A name -> factory registry, one instance per extension point (heads, backbones, tree layouts).

Modelled on timm's `register_model`/`create_model`: a decorator fills a dict, and asking for an unknown name fails
with the list of valid ones.
"""
import inspect
from typing import Callable, Dict, List

from study.errors import ConfigError, UnknownNameError


class Registry:
    def __init__(self, kind: str, context_args=(), load_more: Callable[[], None] = None):
        self.kind = kind  # e.g. "head"; used in error messages
        self.context_args = tuple(context_args)  # keyword arguments the framework passes; not user knobs
        # Registers entries kept outside the project, run at the first lookup rather than at import, so that a
        # broken plugin is reported by the command-line error handler instead of as an import-time traceback.
        self._load_more = load_more
        self._entries: Dict[str, Callable] = {}

    @property
    def _loaded(self) -> Dict[str, Callable]:
        if self._load_more is not None:
            load, self._load_more = self._load_more, None  # once, even if it fails or registers more itself
            load()
        return self._entries

    def register(self, name: str) -> Callable:
        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = factory
            factory.registry_name = name
            return factory

        return decorator

    def names(self) -> List[str]:
        return sorted(self._loaded)

    def get(self, name: str) -> Callable:
        if name not in self._loaded:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._loaded

    def knobs(self, name: str) -> List[str]:
        """Keyword arguments the factory accepts beyond its required positional ones."""
        params = inspect.signature(self.get(name)).parameters.values()
        return [p.name for p in params
                if p.default is not inspect.Parameter.empty and p.name not in self.context_args]

    def check_knobs(self, name: str, knobs: dict) -> None:
        valid = self.knobs(name)
        unknown = sorted(set(knobs) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown knob '{unknown[0]}' for {self.kind} '{name}'; choose from: {', '.join(valid) or '(none)'}"
            )
