"""On --resume, a trial whose last checkpoint is gone is trained again from its start instead of failing.

Ray Tune keeps one checkpoint a trial (CheckpointConfig(num_to_keep=1)): when a trial reports a new one, Ray deletes
the one before at once, while the experiment's saved state, which names the trial's latest checkpoint, reaches the
run's folder only when its copy there ends (or, after a full disk, not at all). A run killed before that copy ends,
or stopped by a full disk, is resumed from a state that names a deleted checkpoint: Ray then fails the trial on each
of its retries ("Could not recover from checkpoint as it does not exist on storage anymore").

Such a trial is started again from its first epoch, with the configuration it was given, as a trial that had not
reported a checkpoint yet would be; its result files from the lost attempt are removed, so that its history (epochs,
best and last accuracy, start time) is that of the attempt that counts.
"""
from pathlib import Path

from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.tune.experiment import Trial
from ray.tune.trainable.metadata import _TrainingRunMetadata

# What Ray's loggers write in a trial's folder: the lost attempt's epochs.
RESULT_FILES = ("progress.csv", "result.json", "events.out.tfevents.*")


def lost_checkpoint(trial) -> bool:
    """Whether the trial is still to run and its latest checkpoint, by the saved state, no longer exists."""
    if trial.status == Trial.TERMINATED or trial.checkpoint is None:
        return False
    return not Path(trial.checkpoint.path).exists()


def start_again(trial) -> None:
    """Forget the trial's checkpoints and results (Ray's run metadata, kept in the experiment state) and remove its
    result files: Ray then starts it from scratch rather than restoring it. Its failure count is kept (max_failures
    still bounds its retries)."""
    old = trial.run_metadata
    fresh = _TrainingRunMetadata()
    fresh.checkpoint_manager = _CheckpointManager(checkpoint_config=old.checkpoint_manager.checkpoint_config)
    fresh.num_failures = old.num_failures
    trial.run_metadata = fresh
    trial.invalidate_json_state()
    for folder in {trial.local_path, trial.path} - {None}:  # the driver's staging copy and the run's own
        for pattern in RESULT_FILES:
            for path in Path(folder).glob(pattern):
                path.unlink()


class RestartLostCheckpoints(tune.Callback):
    """Before a run's first step (no trial has started yet), starts again every trial with a lost checkpoint and
    says so on the console."""

    def __init__(self):
        self.checked = False

    def setup(self, **info) -> None:
        self.checked = False  # each fit, first and resumed, checks once

    def on_step_begin(self, iteration, trials, **info) -> None:
        if self.checked:
            return
        self.checked = True
        lost = [trial for trial in trials if lost_checkpoint(trial)]
        for trial in lost:
            start_again(trial)
        if lost:
            names = ", ".join(trial.trial_id for trial in lost)
            print(f"the last checkpoint of {len(lost)} unfinished trial(s) was deleted before the run's state was "
                  f"saved (a kill, or a full disk): {names} start again from their first epoch", flush=True)
