"""softmax-study's core: configuration, data, backbones, heads, the training loop and metrics (no Ray here).

The orchestration of a study lives in `study/search/`, benchmarks in `study/bench/`.
"""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: Ray workers import the project from here
