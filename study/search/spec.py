"""The study spec: everything a study is, built and validated once from the command line and the preset.

It is saved as the run's `study.json` and read back through `StudySpec.from_dict`, which checks it the same way, so
the search, each trial (through `tune.with_parameters`) and the analysis all take one checked object, never a loose
dict. Values a spec cannot hold (a negative trial count, a NaN GPU share, an unknown head) fail in one line naming
the value and what is valid.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from study.config import TrainConfig, validate
from study.errors import ConfigError, StudyError
from study.registry import fits

# Version of study.json's layout. 1: runs made before the spec had a version (the same fields; `max_concurrent`,
# `kind`, `dry_run`, `frozen_features` and the provenance may be missing). A newer version is refused: this code
# would not know what it leaves out.
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class DryRun:
    """A rehearsal of a GPU plan on a CPU (study/search/dry_run.py): what Ray is told the machine has."""
    gpus: float  # logical GPUs
    cpus: int  # logical CPUs


@dataclass(frozen=True)
class StudySpec:
    # What is compared, and on what.
    name: str  # the run's folder under --storage
    heads: Tuple[str, ...]
    preset: str
    preset_reason: str = ""  # how the preset was chosen ('auto' resolves by the hardware)
    kind: str = ""  # end-to-end or frozen-backbone, in words (study/frozen.py: describe)
    train: TrainConfig = field(default_factory=TrainConfig)  # every trial's start, before the space's values
    # The budget, the same for every head.
    num_samples: int = 1  # trials per head, split evenly over its searches
    searches: int = 1  # independent searches per head (own TPE and ASHA, own seeds): the test's unit (README)
    grace_period: int = 1  # ASHA: epochs every trial gets before it may be stopped
    reduction_factor: int = 3  # ASHA: keep the top 1/reduction_factor at each rung
    checkpoint_every: int = 1  # epochs between trial checkpoints
    final_seeds: int = 1  # seeds each search's selected configuration is retrained with
    seed: int = 0  # the first search's sampler and trials; the others and the final models: study/search/searches.py
    timing_round_s: float = 0.5  # the timing protocol: each head's share of a round, at least, in seconds
    timing_rounds: Optional[int] = None  # its timed rounds; None: as many as the cost verdicts need
    # Resources per trial.
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    max_concurrent: Optional[int] = None  # the user's cap on trials at a time; None: as many as fit
    dry_run: Optional[DryRun] = None
    # The features a study was tuned on: a frozen cache entry (key:checksum), or a features file (sha256:SHA-256)
    frozen_features: Optional[str] = None
    # Files of the data source left out because they did not decode (imagefolder --skip-bad-images); None: none
    skipped_images: Optional[int] = None
    # Provenance.
    command: str = ""
    created: str = ""
    git_commit: Optional[str] = None
    versions: Mapping[str, str] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["heads"] = list(self.heads)
        values["versions"] = dict(self.versions)
        return values

    @classmethod
    def from_dict(cls, values, source: str = "study.json") -> "StudySpec":
        """A saved spec, checked: one line naming `source` and what is wrong, never a traceback."""
        damaged = f"{source} is damaged"
        if not isinstance(values, dict):
            raise StudyError(f"{damaged} (it holds a {type(values).__name__}, not an object); restore it, or start "
                             "a new run")
        schema = values.get("schema", 1)
        if not isinstance(schema, int) or isinstance(schema, bool) or not 1 <= schema <= SCHEMA_VERSION:
            raise StudyError(f"{source} has schema version {schema!r}; this code reads versions 1 to "
                             f"{SCHEMA_VERSION} (a newer softmax-study made it?)")
        for key, kind in REQUIRED.items():
            if key not in values:
                raise StudyError(f"{damaged} (no '{key}'; it is incomplete); restore it, or start a new run")
            check_type(values, key, kind, damaged)
        for key, kind in OPTIONAL.items():
            if values.get(key) is not None:
                check_type(values, key, kind, damaged)
        unknown = sorted(set(values) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise StudyError(f"{damaged} (unknown key '{unknown[0]}'); restore it, or start a new run")
        try:
            train = TrainConfig.from_dict(values["train"])
        except (StudyError, TypeError, AttributeError) as error:
            raise StudyError(f"{damaged} (its 'train' configuration: {error}); restore it, or start a new "
                             "run") from None
        dry = values.get("dry_run")
        try:
            dry = DryRun(**dry) if dry is not None else None
        except TypeError:
            raise StudyError(f"{damaged} ('dry_run' is {dry!r}); restore it, or start a new run") from None
        fields = {**values, "heads": tuple(values["heads"]), "train": train, "dry_run": dry,
                  "versions": dict(values.get("versions") or {}), "schema": SCHEMA_VERSION}
        spec = cls(**{k: v for k, v in fields.items() if v is not None or k in NULLABLE})
        try:
            return spec.checked(resources_known=False)
        except (StudyError, TypeError, ValueError) as error:  # TypeError: a value of the wrong type in 'train'
            raise StudyError(f"{damaged} ({error}); restore it, or start a new run") from None

    def checked(self, resources_known: bool = True) -> "StudySpec":
        """The spec itself, once every value is in range; ConfigError (one line) otherwise. Devices are checked by
        Ray against the cluster, not here, unless `resources_known` (this machine is where trials run)."""
        from study.heads import list_heads

        numbers = [("--num-samples", self.num_samples, 1), ("grace_period", self.grace_period, 1),
                   ("reduction_factor", self.reduction_factor, 2), ("checkpoint_every", self.checkpoint_every, 1),
                   ("final_seeds", self.final_seeds, 1), ("--searches", self.searches, 1)]
        for flag, value, low in numbers:
            if value < low:
                raise ConfigError(f"{flag} {value} must be >= {low}")
        if self.num_samples % self.searches:
            raise ConfigError(f"--num-samples {self.num_samples} must split evenly over --searches {self.searches} "
                              f"(every search of every head gets the same trials): use a multiple of "
                              f"{self.searches}")
        if not (math.isfinite(self.gpus_per_trial) and self.gpus_per_trial >= 0):
            raise ConfigError(f"--gpus-per-trial {self.gpus_per_trial:g} must be a finite number >= 0")
        if not (math.isfinite(self.cpus_per_trial) and self.cpus_per_trial > 0):
            raise ConfigError(f"--cpus-per-trial {self.cpus_per_trial:g} must be a finite number > 0")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent {self.max_concurrent} must be >= 1")
        if not (math.isfinite(self.timing_round_s) and self.timing_round_s >= 0):
            raise ConfigError(f"timing_round_s {self.timing_round_s:g} must be a finite number >= 0")
        if self.timing_rounds is not None and not (fits(self.timing_rounds, int, None) and self.timing_rounds >= 2):
            raise ConfigError(f"timing_rounds {self.timing_rounds} must be a whole number >= 2, or null")
        if not 0 <= self.seed < 2 ** 32:
            raise ConfigError(f"--seed {self.seed} must be between 0 and {2 ** 32 - 1}")
        dry = self.dry_run
        if dry is not None and not (fits(dry.gpus, float, None) and dry.gpus > 0
                                    and fits(dry.cpus, int, None) and dry.cpus >= 1):
            raise ConfigError(f"dry_run {dataclasses.asdict(dry)} must declare GPUs > 0 and a whole number of CPUs "
                              ">= 1")
        if not self.heads or len(set(self.heads)) != len(self.heads):
            raise ConfigError(f"heads {list(self.heads)} must name each head once")
        for head in self.heads:  # plugins registered through $SOFTMAX_STUDY_PLUGINS count
            if head not in list_heads():
                raise ConfigError(f"unknown head '{head}'; choose from: {', '.join(list_heads())}")
        validate(self.train if resources_known else self.train.replace(**{"run.device": "cpu"}))
        return self

    @property
    def trials_per_search(self) -> int:
        return self.num_samples // self.searches

    def head_config(self, head: str) -> TrainConfig:
        """Where every trial of `head` starts, before the search space's values."""
        return self.train.replace(**{"model.head": head})


def check_type(values: dict, key: str, kind, damaged: str) -> None:
    value = values[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise StudyError(f"{damaged} ('{key}' is {value!r}); restore it, or start a new run")
    if key == "heads" and not all(isinstance(h, str) and h for h in value):
        raise StudyError(f"{damaged} ('heads' is {value!r}, expected a list of head names); restore it, or start a "
                         "new run")


NUMBER = (int, float)
# What study.json must hold, and of which type; then what it may hold (older runs lack these).
REQUIRED = {"name": str, "heads": list, "preset": str, "preset_reason": str, "num_samples": int,
            "gpus_per_trial": NUMBER, "cpus_per_trial": NUMBER, "grace_period": int, "reduction_factor": int,
            "checkpoint_every": int, "final_seeds": int, "seed": int, "train": dict}
OPTIONAL = {"kind": str, "max_concurrent": int, "dry_run": dict, "frozen_features": str, "command": str,
            "created": str, "git_commit": str, "versions": dict, "schema": int, "timing_round_s": NUMBER,
            "timing_rounds": int, "searches": int, "skipped_images": int}
NULLABLE = {"max_concurrent", "dry_run", "frozen_features", "git_commit", "timing_rounds", "skipped_images"}
