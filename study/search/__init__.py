"""The study's orchestration: the spec, the run directory, Ray Tune + Optuna searches, the cluster, the dry run.

Nothing in the core (`study/`: config, data, backbones, heads, train, metrics) imports from here.
"""
