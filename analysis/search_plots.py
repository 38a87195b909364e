"""Optuna's own views of each head's search (optimisation history, parameter importances), saved as PNG."""
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.visualization import matplotlib as optuna_mpl  # noqa: E402


def search_plots(storage: str, head: str, out_dir: Path) -> list:
    """Writes the plots Optuna can draw for this head's study; returns one note per plot it could not draw."""
    notes = []
    try:
        study = optuna.load_study(study_name=head, storage=storage)
    except KeyError:
        return [f"{head}: no Optuna study in {storage}; search plots skipped"]
    plots = {"history": optuna_mpl.plot_optimization_history, "importance": optuna_mpl.plot_param_importances}
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
                axes = draw(study)
            axes.figure.set_size_inches(7, 4.5)
            axes.figure.tight_layout()
            axes.figure.savefig(Path(out_dir) / f"search_{name}_{head}.png", dpi=110)
            plt.close(axes.figure)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. too few finished trials
            notes.append(f"{head}: Optuna {name} plot not drawn ({type(error).__name__}: {error})")
            plt.close("all")
    return notes
