"""Analysis of a study run: best trial per search -> retrain over seeds -> test once -> tables, plots, TensorBoard.

Pure functions from the run directory (study/search/rundir.py, RunDir, which names each of these files) to tidy
pandas frames, then files:

    runs/NAME/analysis/best_configs.json         the selection rule and each search's best trial, config and seeds
    runs/NAME/analysis/predictions/HEAD_seedS.*  per final model: compact test predictions (.npz) and its log (.json)
    runs/NAME/analysis/predictions/costs.json    the timing protocol's rounds: every head's costs, alone on a device
    runs/NAME/analysis/results.csv               one row per head and seed (and its search): every metric and cost
    runs/NAME/analysis/summary.csv, comparisons.csv   one row per head: its summary; its verdicts against softmax
    runs/NAME/analysis/summary.md                generated report (also printed)
    runs/NAME/analysis/headline.md               its short table (README's Results section is one)
    runs/NAME/analysis/*.png, confusion/*.csv    plots and confusion matrices
    runs/NAME/analysis/tensorboard/              scalars, hparams and confusion-matrix images
"""
