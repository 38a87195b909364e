"""Registry of classifier heads. Adding a head = one file in this folder with `@register_head("name")` on its class."""
import importlib
import pkgutil

from study.class_info import ClassInfo
from study.heads.base import Head
from study.registry import Registry

HEADS = Registry("head", context_args=("class_info",))  # class_info comes from the data, not from tuning
register_head = HEADS.register


def list_heads():
    return HEADS.names()


def head_knobs(name: str):
    return HEADS.knobs(name)


def check_head_knobs(name: str, knobs: dict) -> None:
    """Unknown head or knob names -> UnknownNameError/ConfigError; value ranges are checked by the head itself."""
    HEADS.check_knobs(name, knobs)


def create_head(name: str, in_features: int, num_classes: int, class_info: ClassInfo = None, **knobs) -> Head:
    check_head_knobs(name, knobs)
    return HEADS.get(name)(in_features, num_classes, class_info=class_info, **knobs)


def _import_head_modules() -> None:
    """Import every module of this package, so a new head file registers itself without edits here."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_head_modules()
