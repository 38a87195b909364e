"""The search phase's pieces without Ray running: searches hand out their own trials and learn only from them, each
search's ASHA compares only its own trials, and a run routes each search to the phase, to a Ray Tune run of its
own (runs made before the phase), or keeps it."""
import argparse
import json
import os
import shutil
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search_spaces import space_for
from study.class_info import ClassInfo
from study.search import run as study_run
from study.search.phase import AshaPerSearch, SearchesSearcher, trial_folder
from study.search.rundir import RunDir
from study.search.spec import StudySpec
from study.search.trainable import SEARCH_KEY, sampled_values
from study.search.trials import METRIC, MODE


def searcher(names, trials_per_search=2):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_for("softmax", ClassInfo(num_classes=10))
    return SearchesSearcher({name: OptunaSearch(space=space, metric=METRIC, mode=MODE, seed=seed,
                                                study_name=name)
                             for seed, name in enumerate(names)}, trials_per_search)


def test_each_search_gets_its_own_trials_in_order_and_learns_only_from_them(tmp_path):
    searches = searcher(["softmax", "softmax-search2"])
    configs = [searches.suggest(f"t{i}") for i in range(4)]
    assert [c[SEARCH_KEY] for c in configs] == ["softmax", "softmax", "softmax-search2", "softmax-search2"]
    assert searches.suggest("t4") == Searcher.FINISHED  # every search has had its trials
    assert all(set(sampled_values(c)) == {"lr", "weight_decay"} for c in configs)
    for i, config in enumerate(configs):
        searches.on_trial_result(f"t{i}", {METRIC: 0.1 * i, "training_iteration": 1})
        searches.on_trial_complete(f"t{i}", {METRIC: 0.1 * i, "training_iteration": 1})
    for name, values in (("softmax", [0.0, 0.1]), ("softmax-search2", [0.2, 0.3])):
        trials = searches.searchers[name]._ot_study.trials
        assert [t.value for t in trials] == pytest.approx(values)  # its own results only
        assert [t.params["lr"] for t in trials] == [c["lr"] for c in configs if c[SEARCH_KEY] == name]

    # What --resume restores: who had which trial, how many each search handed out, each sampler's state.
    searches.save(str(tmp_path / "state.pkl"))
    restored = searcher(["softmax", "softmax-search2"])
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.handed_out == {"softmax": 2, "softmax-search2": 2} and restored.owner == searches.owner
    assert len(restored.searchers["softmax-search2"]._ot_study.trials) == 2
    assert restored.suggest("t5") == Searcher.FINISHED


def fake_trial(trial_id, search):
    return SimpleNamespace(trial_id=trial_id, config={SEARCH_KEY: search})


def asha():
    return ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=MODE, max_t=3, grace_period=1,
                         reduction_factor=2)


def test_a_search_asha_compares_its_own_trials_only():
    """A weak trial of search B, the first at its rung in B, goes on, although search A's trial at that rung did
    far better; one ASHA shared by both searches would stop it."""
    strong, weak = fake_trial("a1", "A"), fake_trial("b1", "B")

    def decision(scheduler):
        for trial in (strong, weak):
            scheduler.on_trial_add(None, trial)
        scheduler.on_trial_result(None, strong, {"training_iteration": 1, METRIC: 0.9})
        return scheduler.on_trial_result(None, weak, {"training_iteration": 1, METRIC: 0.1})

    assert decision(AshaPerSearch({"A": asha(), "B": asha()})) == TrialScheduler.CONTINUE
    assert decision(asha()) == TrialScheduler.STOP  # the control: shared rungs


def test_a_trial_folder_is_named_after_its_search():
    trial = SimpleNamespace(trial_id="ab12", config={SEARCH_KEY: "taylor-search3", "lr": 0.1})
    assert trial_folder(trial) == "taylor-search3_trial_ab12"


def test_a_run_keeps_finished_searches_resumes_old_ones_alone_and_phases_the_rest(tmp_path, monkeypatch, capsys):
    """Search 1 of softmax finished (kept), search 2 was started by a run of one search at a time (its folder holds
    its own experiment state: resumed in that run), and taylor's two searches never started (the phase)."""
    spec = StudySpec(name="r", heads=("softmax", "taylor"), preset="smoke", num_samples=2, searches=2)
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_spec(spec)
    summary = {"head": "softmax", "search": 0, "trials": [], "best": None}
    run.head_dir("softmax").mkdir()  # as its trials left it
    run.write_summary("softmax", summary)
    (run.path / "softmax-search2").mkdir()
    (run.path / "softmax-search2" / "tuner.pkl").write_bytes(b"")  # what Ray Tune restores a run from
    calls = []

    def alone(which, search, splits):
        calls.append(("alone", which.name))
        return {**summary, "search": which.index}

    def phase(ids, search, splits):
        calls.append(("phase", [w.name for w in ids]))
        return {w.name: {**summary, "head": w.head, "search": w.index} for w in ids}

    monkeypatch.setattr("study.search.tuner.search_head", alone)
    monkeypatch.setattr("study.search.tuner.search_phase", phase)
    reported = []
    monkeypatch.setattr(study_run, "print_report", lambda run, summaries: reported.extend(summaries))
    search = SimpleNamespace(spec=spec, run=run, max_concurrent=2)
    study_run.search_and_analyse(search, None, argparse.Namespace(no_analysis=True), None)
    assert calls == [("alone", "softmax-search2"), ("phase", ["taylor", "taylor-search2"])]
    assert [(s["head"], s["search"]) for s in reported] == [("softmax", 0), ("softmax", 1), ("taylor", 0),
                                                            ("taylor", 1)]
    out = capsys.readouterr().out
    assert "[1/2] softmax search 1: already finished, kept" in out
    assert "[1/2] softmax search 2: resuming its own Ray Tune run" in out
    assert "searching 2 searches of 1 head(s) (1 trials each) side by side in one Ray Tune run" in out
    assert json.loads(run.summary_file("softmax").read_text()) == summary


def test_the_phase_shares_its_trials_between_searches_and_the_trials_are_the_cap():
    from study.search.cluster import concurrency

    spec = StudySpec(name="r", heads=("softmax", "taylor"), preset="frozen", num_samples=4, searches=2,
                     cpus_per_trial=1, gpus_per_trial=0)
    assert concurrency(spec, {"CPU": 16}) == 8  # 2 heads x 2 searches x 2 trials, side by side
    assert concurrency(spec, {"CPU": 2}) == 2


def write_state(folder, stamp: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"experiment_state-{stamp}.json").write_text(text)
    (folder / f"search_gen_state-{stamp}.json").write_text("{}")
    (folder / f"searcher-state-{stamp}.pkl").write_bytes(b"searcher " + text.encode())


def test_the_last_complete_state_is_kept_and_put_back_when_a_full_disk_cut_the_run_copy_short(tmp_path):
    from study.errors import StudyError
    from study.search.phase import LAST_GOOD, KeepLastGoodState, restore_last_good_state

    staging, phase = tmp_path / "staging", tmp_path / "run" / "trials"
    trial = SimpleNamespace(storage=SimpleNamespace(experiment_driver_staging_path=str(staging)))
    keeper = KeepLastGoodState(phase)
    write_state(staging, "s1", '{"snapshot": 1}')
    keeper.on_step_end(1, [trial])
    assert (phase / LAST_GOOD / "slot").read_text() == "a"
    keeper.on_step_end(2, [trial])  # no new snapshot: nothing copied
    assert not (phase / LAST_GOOD / "b").exists()
    write_state(staging, "s1", '{"snapshot": 2, "trials": [1, 2, 3]}')
    os.utime(staging / "experiment_state-s1.json", ns=(1, 2))  # a new modification time, as a new snapshot has
    keeper.on_step_end(3, [trial])
    assert (phase / LAST_GOOD / "slot").read_text() == "b"
    assert json.loads((phase / LAST_GOOD / "b" / "experiment_state-s1.json").read_text())["snapshot"] == 2

    # The run's own copy: intact, it is left alone; cut short, the kept one replaces all three files.
    write_state(phase, "s1", '{"snapshot": 2, "trials": [1, 2, 3]}')
    assert not restore_last_good_state(phase)
    (phase / "experiment_state-s1.json").write_text('{"snapshot": 3, "tri')
    (phase / "search_gen_state-s1.json").write_text("")
    assert restore_last_good_state(phase)
    assert json.loads((phase / "experiment_state-s1.json").read_text()) == {"snapshot": 2, "trials": [1, 2, 3]}
    assert (phase / "searcher-state-s1.pkl").read_bytes() == b'searcher {"snapshot": 2, "trials": [1, 2, 3]}'

    # Nothing kept: one line, no traceback, saying what to do.
    (phase / "experiment_state-s1.json").write_text("{")
    shutil.rmtree(phase / LAST_GOOD)
    with pytest.raises(StudyError, match="does not read and no earlier copy was kept; delete"):
        restore_last_good_state(phase)


def test_a_copy_that_the_disk_refuses_leaves_the_kept_slot(tmp_path, monkeypatch):
    from study.search import phase as phase_module
    from study.search.phase import LAST_GOOD, KeepLastGoodState

    staging, phase = tmp_path / "staging", tmp_path / "trials"
    trial = SimpleNamespace(storage=SimpleNamespace(experiment_driver_staging_path=str(staging)))
    keeper = KeepLastGoodState(phase)
    write_state(staging, "s1", '{"snapshot": 1}')
    keeper.on_step_end(1, [trial])

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(phase_module.shutil, "copyfile", full)
    os.utime(staging / "experiment_state-s1.json", ns=(1, 2))
    keeper.on_step_end(2, [trial])  # cut short: the pointer still names the complete slot
    assert (phase / LAST_GOOD / "slot").read_text() == "a"
    assert json.loads((phase / LAST_GOOD / "a" / "experiment_state-s1.json").read_text()) == {"snapshot": 1}
