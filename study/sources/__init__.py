"""Registry of data sources. Adding one = one file in this folder with `@register_source("name")` on a function
that returns a `Dataset` (study/sources/dataset.py).

A source is asked for as `NAME` or `NAME:ARGUMENT` (timm's `create_dataset` prefix scheme), e.g. `cifar100` or
`features:emb.npz`; the function receives the argument ("" when none) and the data options of the configuration.
"""
import importlib
import pkgutil
from typing import Optional

from study.errors import ConfigError
from study.registry import Registry
from study.sources.dataset import Dataset

DEFAULT_SOURCE = "cifar100"

# The factory's context: what the configuration says about where and how to read, not what to read.
SOURCES = Registry("data source", context_args=("argument", "data_dir", "allow_download"))
register_source = SOURCES.register


def list_sources():
    return SOURCES.names()


def parse_source(text: str):
    """(name, argument) of `NAME[:ARGUMENT]`; an unknown name -> one line with the valid ones."""
    name, _, argument = str(text).partition(":")
    SOURCES.get(name)  # UnknownNameError naming the valid sources
    return name, argument


def create_source(text: str, data_dir: Optional[str] = None, allow_download: bool = True) -> Dataset:
    name, argument = parse_source(text)
    dataset = SOURCES.get(name)(argument=argument, data_dir=data_dir, allow_download=allow_download)
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"data source '{name}' returned {type(dataset).__name__}, not a Dataset")
    return dataset


def _import_source_modules() -> None:
    """Import every module of this package, so a new source file registers itself without edits here."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_source_modules()
