"""A head's independent searches: their names and every seed they and their final models use.

Each head is tuned by `spec.searches` searches of `spec.trials_per_search` trials, each with its own Optuna
sampler seed, its own ASHA and its own trial seed, and each search's selected configuration is retrained with
`spec.final_seeds` seeds of its own. The searches are the verdicts' unit (analysis/stats.py: search_rows): a
difference between two heads must stand out against how far re-searching moves a head, not only reseeding.

Search r of every head uses the same seeds, so search r of one head pairs with search r of another. The first
search (r = 0) is named after the head and seeded as single-search runs were, so their folders, Optuna studies and
final models are read and reused as they are.
"""
from dataclasses import dataclass

# Search r's trials train with seed + r * TRIAL_SEED_STRIDE (mod 2^32): far from every final model's seed (seed + 1
# onwards), so no final model repeats a tuning trial's initialisation, data order or augmentation.
TRIAL_SEED_STRIDE = 100_003
SEED_LIMIT = 2 ** 32


@dataclass(frozen=True)
class SearchId:
    head: str
    index: int  # 0-based; searches are numbered from 1 on the console and in the report

    @property
    def name(self) -> str:
        """Its Ray experiment's folder and its Optuna study's name."""
        return self.head if self.index == 0 else f"{self.head}-search{self.index + 1}"

    @property
    def label(self) -> str:
        return f"{self.head} search {self.index + 1}"


def search_ids(head: str, searches: int) -> list:
    return [SearchId(head, r) for r in range(searches)]


def sampler_seed(study_seed: int, index: int) -> int:
    """Optuna's sampler seed of search `index` (the study's own seed for the first)."""
    return (study_seed + index) % SEED_LIMIT


def trial_seed(study_seed: int, index: int) -> int:
    """The seed every trial of search `index` trains with (the study's own seed for the first)."""
    return (study_seed + index * TRIAL_SEED_STRIDE) % SEED_LIMIT


def final_seeds(study_seed: int, index: int, count: int) -> list:
    """Seeds of the final models of search `index`'s configuration: seed+1 ... for the first search, the next
    `count` for the second, and so on; never a tuning trial's seed."""
    first = study_seed + 1 + index * count
    return [(first + i) % SEED_LIMIT for i in range(count)]
