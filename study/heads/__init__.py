"""Registry of classifier heads. Adding a head = one file in this folder with `@register_head("name")` on its class."""
import importlib
import os
import pkgutil

from study.class_info import ClassInfo
from study.heads.base import Head
from study.errors import UnknownNameError
from study.registry import Registry

PLUGINS_ENV = "SOFTMAX_STUDY_PLUGINS"  # comma-separated importable modules holding more @register_head classes


def _import_plugins() -> None:
    """Import the plugin modules named in $SOFTMAX_STUDY_PLUGINS: heads kept outside the project. Ray workers
    inherit the variable, so plugin heads can be tuned too."""
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except Exception as error:  # a plugin's own bug as well as a missing module: either way one line
            raise UnknownNameError(f"${PLUGINS_ENV} names module '{name}', which cannot be imported "
                                   f"({type(error).__name__}: {error})") from None


# class_info comes from the data, not from tuning
HEADS = Registry("head", context_args=("class_info",), load_more=_import_plugins)
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
