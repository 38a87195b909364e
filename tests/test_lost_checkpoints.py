"""A resumed trial whose checkpoint was deleted before Ray's state was saved starts again from its first epoch
(study/search/lost_checkpoints.py). Ray's own Trial objects, saved and read back as --resume does."""
import shutil
from pathlib import Path

from ray.train import CheckpointConfig
import ray.train._internal.storage as ray_storage
from ray.train._internal.session import _TrainingResult
from ray.train._internal.storage import StorageContext
from ray.tune import Checkpoint
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.experiment import Trial

from study.search.lost_checkpoints import RestartLostCheckpoints


def saved_trial(storage, trial_id: str, status: str = Trial.PENDING):
    """A trial that reported one checkpoint (trial folder with its result files), as the saved experiment state
    gives it back to a resumed run."""
    context = StorageContext(storage_path=str(storage), experiment_dir_name="trials", trial_dir_name=trial_id)
    trial = Trial("train_trial", config={"lr": 0.1}, trial_id=trial_id, stub=True, storage=context,
                  checkpoint_config=CheckpointConfig(num_to_keep=1),
                  placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))
    trial.create_placement_group_factory()  # as Ray's controller does when it adds a trial
    folder = storage / "trials" / trial_id
    (folder / "checkpoint_000000").mkdir(parents=True)
    (folder / "checkpoint_000000" / "state.pt").write_bytes(b"weights")
    for name in ("progress.csv", "result.json", "events.out.tfevents.1.host"):
        (folder / name).write_text("epoch 1 of the attempt\n")
    checkpoint = Checkpoint.from_directory(str(folder / "checkpoint_000000"))
    trial.run_metadata.checkpoint_manager.register_checkpoint(
        _TrainingResult(checkpoint=checkpoint, metrics={"training_iteration": 1}))
    trial.run_metadata.last_result = {"training_iteration": 1, "val_acc": 0.3}
    trial.run_metadata.num_failures = 1
    trial.set_status(status)
    state, metadata = trial.get_json_state()
    restored = Trial.from_json_state(state, stub=True)
    restored.restore_run_metadata(metadata)
    restored.set_storage(context)
    return restored, folder


def test_a_trial_whose_checkpoint_is_gone_starts_again_and_the_others_are_left_alone(tmp_path, capsys, monkeypatch):
    # Ray's driver keeps a staging copy of each trial's folder in its session folder; no Ray runs here.
    monkeypatch.setattr(ray_storage, "_get_ray_train_session_dir", lambda: str(tmp_path / "session"))
    lost, lost_folder = saved_trial(tmp_path, "lost0001")
    kept, kept_folder = saved_trial(tmp_path, "kept0002")
    done, done_folder = saved_trial(tmp_path, "done0003", status=Trial.TERMINATED)
    for folder in (lost_folder, done_folder):
        shutil.rmtree(folder / "checkpoint_000000")
    staging = Path(lost.local_path)
    staging.mkdir(parents=True)
    (staging / "progress.csv").write_text("epoch 1 of the attempt\n")
    assert lost.checkpoint is not None  # the saved state still names it: Ray would try to restore it and fail

    callback = RestartLostCheckpoints()
    callback.setup()
    callback.on_step_begin(iteration=0, trials=[lost, kept, done])

    # Ray starts a trial from scratch when it has no latest checkpoint (TuneController._schedule_trial_restore)
    assert lost.latest_checkpoint_result is None and lost.checkpoint is None
    assert lost.run_metadata.last_result == {} and lost.run_metadata.num_failures == 1
    assert lost.run_metadata.checkpoint_manager.checkpoint_config.num_to_keep == 1
    assert [*lost_folder.iterdir(), *staging.iterdir()] == []  # the lost attempt's epochs are gone, in both copies
    state, metadata = lost.get_json_state()  # what the next snapshot of Ray's state saves names no checkpoint
    again = Trial.from_json_state(state, stub=True)
    again.restore_run_metadata(metadata)
    assert again.checkpoint is None

    assert kept.checkpoint is not None and kept.checkpoint.path.endswith("checkpoint_000000")
    assert (kept_folder / "progress.csv").exists()
    assert done.checkpoint is not None and (done_folder / "progress.csv").exists()  # finished: never restored
    out = capsys.readouterr().out
    assert "lost0001" in out and "start again from their first epoch" in out and "kept0002" not in out

    # Checked once a fit, before any trial starts: a checkpoint deleted later (Ray's own rotation) is Ray's.
    shutil.rmtree(kept_folder / "checkpoint_000000")
    callback.on_step_begin(iteration=1, trials=[kept])
    assert kept.checkpoint is not None
