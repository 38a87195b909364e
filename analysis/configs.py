"""A configuration as the analysis saves it (plain JSON values), and what a saved one must match to be reused: one
rule for the final models (analysis/retrain.py), the convergence check's runs and the timing protocol's costs."""
import json

from study.config import TrainConfig


def as_json(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))  # tuples become lists, as they do on disk


def reuse_key(config: dict) -> dict:
    """What a saved configuration must match to be reused: everything but where the data lives and the device it
    ran on. Sections or fields added to TrainConfig since it was saved take their defaults, which reproduce what the
    older code did (e.g. `frozen`: disabled, end to end). ConfigError, KeyError or TypeError for a configuration this
    code does not read (made by other code)."""
    key = as_json(TrainConfig.from_dict(config))
    key["data"].pop("data_dir", None)
    key["run"].pop("device", None)
    return key
