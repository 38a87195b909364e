"""Registry of classifier heads. Adding a head = one file in this folder with `@register_head("name")` on its class."""
import importlib
import os
import pkgutil

from study.class_info import ClassInfo
from study.heads.base import Head
from study.errors import UnknownNameError
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


PLUGINS_ENV = "SOFTMAX_STUDY_PLUGINS"  # comma-separated importable modules holding more @register_head classes


def _import_head_modules() -> None:
    """Import every module of this package, so a new head file registers itself without edits here, then any
    plugin modules named in $SOFTMAX_STUDY_PLUGINS (heads kept outside the project; Ray workers inherit the
    variable, so plugin heads can be tuned too)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UnknownNameError(f"${PLUGINS_ENV} names module '{name}', which cannot be imported ({error})")


_import_head_modules()
