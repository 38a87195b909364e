"""Registry of data sources. Adding one = one file in this folder with `@register_source("name")` on a function
that returns a `Dataset` (study/sources/dataset.py).

A source is asked for as `NAME` or `NAME:ARGUMENT` (timm's `create_dataset` prefix scheme), e.g. `cifar100` or
`features:emb.npz`; the function receives the argument ("" when none) and the data options of the configuration
(data_dir, allow_download, image_size: the side in pixels an image source resizes to, where it resizes;
skip_bad_images: whether a source of image files leaves out those that do not decode, rather than refusing them).
"""
import importlib
import pkgutil
from typing import Optional

from study.errors import ConfigError
from study.registry import Registry
from study.sources.dataset import Dataset

DEFAULT_SOURCE = "cifar100"

# The factory's context: what the configuration says about where and how to read, not what to read.
SOURCES = Registry("data source", context_args=("argument", "data_dir", "allow_download",
                                                       "image_size", "skip_bad_images"))
INPUTS = ("images", "features")


def register_source(name: str, inputs: str = "images", argument: str = ""):
    """Register a source; `inputs` says what it gives before it is read: images (a CNN trains on them, or a
    frozen backbone turns them into features) or feature vectors (a heads-only study); `argument` names what
    follows NAME: in --help (e.g. FILE.npz), "" when it takes none."""
    if inputs not in INPUTS:
        raise ValueError(f"data source '{name}': inputs={inputs!r}; choose from: {', '.join(INPUTS)}")

    def decorator(factory):
        factory.inputs, factory.argument = inputs, argument
        return SOURCES.register(name)(factory)

    return decorator


def list_sources():
    return SOURCES.names()


def data_choices():
    """How each source is asked for, for --help: 'cifar100', 'features:FILE.npz', ..."""
    return [name + (f":{SOURCES.get(name).argument}" if SOURCES.get(name).argument else "")
            for name in list_sources()]


def source_inputs(text: str) -> str:
    """'images' or 'features': what source `text` gives (known without reading it)."""
    return SOURCES.get(parse_source(text)[0]).inputs


def parse_source(text: str):
    """(name, argument) of `NAME[:ARGUMENT]`; an unknown name -> one line with the valid ones."""
    name, _, argument = str(text).partition(":")
    SOURCES.get(name)  # UnknownNameError naming the valid sources
    return name, argument


def create_source(text: str, data_dir: Optional[str] = None, allow_download: bool = True,
                  image_size: int = 32, skip_bad_images: bool = False) -> Dataset:
    name, argument = parse_source(text)
    dataset = SOURCES.get(name)(argument=argument, data_dir=data_dir, allow_download=allow_download,
                                image_size=image_size, skip_bad_images=skip_bad_images)
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"data source '{name}' returned {type(dataset).__name__}, not a Dataset")
    return dataset


def _import_source_modules() -> None:
    """Import every module of this package, so a new source file registers itself without edits here."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_source_modules()
