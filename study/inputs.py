"""What a configuration trains on: its data source's splits of images or features, or of a frozen backbone's
cached features of the images."""
import dataclasses

from study.config import TrainConfig
from study.frozen import FILE_ID_PREFIX, cache_root, frozen_data
from study.sources import create_source
from study.splits import Splits, check_sizes, make_splits


def load_splits(cfg: TrainConfig, log=print) -> Splits:
    """The configuration's splits; in a frozen-backbone study, of the backbone's cached features (study/frozen.py);
    of a features source's own vectors in a heads-only study. `features_id` names the features every step of a
    study must share: the frozen cache entry and its checksum, or the features file's SHA-256."""
    d = cfg.data
    data, features_id = create_source(d.source, d.data_dir, allow_download=d.allow_download,
                                       image_size=d.image_size, skip_bad_images=d.skip_bad_images), None
    if data.holds_features:
        features_id = f"{FILE_ID_PREFIX}{data.checksum}" if data.checksum else None
    elif cfg.frozen.enabled:
        cache_root()  # a cache variable naming no folder: one line, before anything else is checked or trained
        check_sizes(data.train_labels, d.val_size, d.subset)  # before the backbone trains and is cached
        data, features_id = frozen_data(cfg, data, log=log)
    splits = make_splits(data, val_size=d.val_size, subset=d.subset, split_seed=d.split_seed, final=d.final)
    return dataclasses.replace(splits, features_id=features_id, skipped_inputs=len(data.skipped))
