"""A name -> factory registry, one instance per extension point (heads, backbones, tree layouts).

Modelled on timm's `register_model`/`create_model`: a decorator fills a dict, and asking for an unknown name fails
with the list of valid ones.
"""
import inspect
import typing
import math
import numbers
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
        """Unknown knob names, and values of the wrong type (by the factory's annotation, else its default's type;
        NaN and infinities are never a valid number): one line naming the knob, its value and what it takes."""
        valid = self.knobs(name)
        unknown = sorted(set(knobs) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown knob '{unknown[0]}' for {self.kind} '{name}'; choose from: {', '.join(valid) or '(none)'}"
            )
        parameters = inspect.signature(self.get(name)).parameters
        for knob, value in knobs.items():
            wanted, default = knob_type(parameters[knob]), parameters[knob].default
            if not fits(value, wanted, default):
                raise ConfigError(f"{self.kind} '{name}': {knob}={value!r} is not valid; it takes "
                                  f"{TYPE_WORDS.get(wanted, wanted.__name__)}, e.g. {knob}={default!r}")


TYPE_WORDS = {bool: "true or false (True/False)", int: "a whole number", float: "a finite number",
              str: "a name (text)", tuple: "a list of numbers", list: "a list of numbers"}


def knob_type(parameter: inspect.Parameter) -> type:
    """What a knob takes: its annotation when it is a plain type (Optional[X]: X, where None means "derive it from
    the data", e.g. from the number of classes), else the type of its default."""
    annotation = parameter.annotation
    if typing.get_origin(annotation) is typing.Union:
        others = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = others[0] if len(others) == 1 else annotation
    if isinstance(annotation, type) and annotation is not inspect.Parameter.empty:
        return annotation
    return type(parameter.default)


def fits(value, wanted: type, default) -> bool:
    if value is None:
        return default is None  # "not set" is valid only where the factory's own default is
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if wanted is bool:
        return isinstance(value, bool)
    if wanted is int:  # numbers.Integral: numpy's integers too, never a bool
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if wanted is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if wanted in (tuple, list):
        return isinstance(value, (tuple, list)) and all(fits(v, type(v), None) or v is None for v in value)
    if wanted is str:
        return isinstance(value, str)
    return True  # a type this check does not know: the factory validates it
