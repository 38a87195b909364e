"""Faults a real user meets: two processes on one run or one cache entry, a damaged optuna.db, a full disk, a
cache variable that names no folder. Each is one line (exit 2) or a wait with a line saying so; nothing finished
is lost, and a run is never written by two processes."""
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import analysis.__main__ as analysis_command
import study.tune as tune_command
from conftest import assert_one_line_error

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_run"
PROJECT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """Enough fake images for the smoke preset's 500-image subset after its validation split. Their own images
    (seed 1): the frozen backbone these studies cache is not the one test_tune.py's end-to-end study must train."""
    from fake_cifar import write_fake_cifar100

    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"), train_per_class=12, test_per_class=2, seed=1)


@pytest.fixture
def run_dir(tmp_path):
    target = tmp_path / "tiny_run"
    shutil.copytree(FIXTURE, target)
    return target


class Holder:
    """Another process that holds a folder's lock (study.locks.exclusive) until it is killed."""

    def __init__(self, folder: Path, mode: str = "exclusive"):
        code = textwrap.dedent(f"""
            import sys, time
            from study import locks
            hold = locks.exclusive({str(folder)!r}, "x") if {mode!r} == "exclusive" else \\
                locks.waiting({str(folder)!r}, print)
            with hold:
                print("held", flush=True)
                time.sleep(120)
        """)
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "held"

    def kill(self):
        self.process.send_signal(signal.SIGKILL)  # a killed holder: the kernel releases its lock
        self.process.wait()


@pytest.fixture
def holder():
    started = []

    def start(folder):
        started.append(Holder(folder))
        return started[-1]

    yield start
    for h in started:
        if h.process.poll() is None:
            h.kill()


def test_a_run_held_by_another_process_is_refused_by_resume_and_analysis(run_dir, holder, cli_error):
    other = holder(run_dir)
    for command, argv in ((tune_command, ["--resume", "--name", run_dir.name, "--storage", str(run_dir.parent)]),
                          (analysis_command, [str(run_dir)])):
        before = sorted(p.name for p in run_dir.rglob("*"))
        code, err = cli_error(command.main, *argv)
        assert_one_line_error(code, err, f"run {run_dir} is in use by process {other.process.pid}")
        assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written
    other.kill()
    from analysis.run import analyse

    analyse(run_dir, log=lambda *a: None)  # released by the kill: the analysis runs
    assert (run_dir / "analysis" / "summary.md").is_file()


def test_the_same_name_started_twice_is_refused_and_the_first_run_is_untouched(tmp_path, holder, cli_error,
                                                                               smoke_data):
    """The second start of --name x while the first is still starting (its folder made, its spec not yet written)
    is refused in one line, and leaves the first run's folder as it was."""
    folder = tmp_path / "runs" / "x"
    folder.mkdir(parents=True)
    other = holder(folder)
    code, err = cli_error(tune_command.main, "--preset", "smoke", "--data-dir", str(smoke_data), "--storage",
                          str(tmp_path / "runs"), "--name", "x")
    assert_one_line_error(code, err, f"run {folder} is in use by process {other.process.pid}")
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == [".lock"]


def test_two_real_studies_started_at_once_with_the_same_name(tmp_path, smoke_data, shared_ray):
    """Two `study/tune.py` processes with the same --name, started together: one runs the study, the other is
    refused in one line (the run is in use, or already exists if the first has finished), and the run is the
    first's alone."""
    storage = tmp_path / "runs"
    start = [sys.executable, str(PROJECT / "study" / "tune.py"), "--preset", "smoke-frozen", "--head", "softmax",
             "--data-dir", str(smoke_data), "--storage", str(storage), "--name", "same", "--no-analysis",
             "--address", shared_ray]
    both = [subprocess.Popen(start, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in both]
    ended = [(process.pid, process.returncode, out, err) for process, (out, err) in zip(both, outputs)]
    assert sorted(code for _, code, _, _ in ended) == [0, 2], [err[-2000:] for *_, err in ended]
    (winner, *_), (_, _, _, refused) = sorted(ended, key=lambda e: e[1])
    lines = [line for line in refused.splitlines() if not line.startswith("[I ")]
    assert len(lines) == 1 and "Traceback" not in refused, refused
    assert (f"run {storage / 'same'} is in use by process {winner}" in lines[0]
            or f"run {storage / 'same'} already exists" in lines[0]), lines[0]
    spec = json.loads((storage / "same" / "study.json").read_text())
    assert spec["heads"] == ["softmax"]
    for search in ("softmax", "softmax-search2"):  # the preset's two searches of one trial
        summary = json.loads((storage / "same" / search / "summary.json").read_text())
        assert len(summary["trials"]) == 1 and all(t["status"] == "ok" for t in summary["trials"])


def test_a_killed_holder_releases_the_lock(tmp_path, holder):
    from study import locks

    other = holder(tmp_path)
    with pytest.raises(Exception, match="in use by process"):
        with locks.exclusive(tmp_path, "run r"):
            pass
    other.kill()
    with locks.exclusive(tmp_path, "run r"):
        with locks.exclusive(tmp_path, "run r"):  # within one process a lock is shared, not taken twice
            pass


def test_a_second_builder_of_a_cache_entry_waits_and_reuses_its_files(tmp_path, fake_data_dir):
    """This process holds the entry's lock as a builder would; a second process asked for the same entry says
    it waits, and once the first has built and let go, reuses its files instead of training a second backbone."""
    from study import frozen, locks
    from study.sources.cifar100 import load_cifar100
    from test_frozen import frozen_cfg

    cfg, data = frozen_cfg(fake_data_dir), load_cifar100(str(fake_data_dir))
    entry = frozen.FeatureCache(cfg, data, tmp_path).folder
    entry.mkdir(parents=True)
    code = textwrap.dedent(f"""
        from study import frozen
        from study.sources.cifar100 import load_cifar100
        from test_frozen import frozen_cfg
        cfg = frozen_cfg({str(fake_data_dir)!r})
        frozen.FeatureCache(cfg, load_cifar100({str(fake_data_dir)!r}), __import__("pathlib").Path({str(tmp_path)!r}),
                            log=lambda line: print(line, flush=True)).features()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT / "tests"), str(PROJECT)])}
    with locks.waiting(entry, print):
        second = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, stdout=subprocess.PIPE, text=True,
                                  env=env)
        first_line = second.stdout.readline()
        assert "is building" in first_line and f"process {os.getpid()}" in first_line and "waiting" in first_line
        lines = []
        frozen.FeatureCache(cfg, data, tmp_path, log=lines.append).build()
    rest = second.communicate(timeout=120)[0]
    assert second.returncode == 0, rest
    assert "reusing the cached features" in rest and "training" not in rest  # no second backbone


def test_a_cache_variable_that_names_no_folder_is_one_line(tmp_path, cli_error, fake_data_dir, monkeypatch):
    from study.frozen import CACHE_ENV

    not_a_folder = tmp_path / "hostname"
    not_a_folder.write_text("a file")
    monkeypatch.setenv(CACHE_ENV, str(not_a_folder))
    code, err = cli_error(tune_command.main, "--preset", "smoke-frozen", "--data-dir", str(fake_data_dir),
                          "--storage", str(tmp_path / "runs"))
    assert_one_line_error(code, err, f"${CACHE_ENV}={not_a_folder} is not a folder")
    assert not (tmp_path / "runs").exists()


def damage(db: Path) -> None:
    db.write_bytes(db.read_bytes()[: len(db.read_bytes()) // 3])  # truncated, as a full disk or a bad copy leaves it


def test_a_damaged_optuna_db_is_one_line_for_resume(run_dir, cli_error):
    damage(run_dir / "optuna.db")
    code, err = cli_error(tune_command.main, "--resume", "--name", run_dir.name, "--storage", str(run_dir.parent))
    assert_one_line_error(code, err, f"--resume: {run_dir / 'optuna.db'} is damaged")
    assert "python -m analysis" in err  # what can be done: the finished heads can still be reported


def test_an_optuna_db_left_mid_transaction_by_a_killed_study_is_rolled_back_not_called_damaged(run_dir):
    """kill -9 while Optuna writes leaves a hot journal: the database is whole once SQLite rolls the unfinished
    transaction back. The check that --resume and the analysis run did that read-only, failed ('attempt to write a
    readonly database') and refused the run as damaged (seen once in a kill-and-resume test)."""
    import sqlite3

    from study.search.rundir import RunDir

    db = run_dir / "optuna.db"
    with contextlib.closing(sqlite3.connect(db)) as connection:
        studies = connection.execute("SELECT count(*) FROM studies").fetchone()[0]
    killed = textwrap.dedent("""
        import os, signal, sqlite3, sys
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        db.execute("PRAGMA cache_size=1")  # pages spill to the file mid-transaction: the journal is hot
        db.execute("BEGIN")
        db.executemany("INSERT INTO studies (study_name) VALUES (?)", [(str(i) * 50,) for i in range(3000)])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", killed, str(db)], check=False)
    assert (run_dir / "optuna.db-journal").exists()
    assert RunDir(run_dir).optuna_db_problem() is None
    with contextlib.closing(sqlite3.connect(db)) as connection:  # the last committed state
        assert connection.execute("SELECT count(*) FROM studies").fetchone()[0] == studies


def test_a_damaged_optuna_db_never_stops_the_analysis(run_dir):
    from analysis.run import analyse

    damage(run_dir / "optuna.db")
    analyse(run_dir, log=lambda *a: None)
    text = (run_dir / "analysis" / "summary.md").read_text()
    assert "search history and importance plots" in text and "could not be read" in text
    assert (run_dir / "analysis" / "headline.md").is_file() and not list((run_dir / "analysis").glob("search_*"))


def full_disk(path: str):
    def raise_enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    return raise_enospc


def test_a_full_disk_during_the_analysis_is_one_line_and_keeps_what_was_finished(run_dir, cli_error, monkeypatch):
    from analysis import plots

    saved = sorted((run_dir / "analysis" / "predictions").iterdir())
    target = str(run_dir / "analysis" / "pareto.png")
    monkeypatch.setattr(plots, "pareto_plot", full_disk(target))
    code, err = cli_error(analysis_command.main, str(run_dir))
    assert_one_line_error(code, err, f"cannot write {target}: No space left on device")
    assert f"continue with: python -m analysis {run_dir}" in err
    assert sorted((run_dir / "analysis" / "predictions").iterdir()) == saved  # every final model kept
    monkeypatch.undo()
    assert analysis_command.main([str(run_dir)]) is None  # space freed: the same command completes


def test_a_full_disk_when_a_study_starts_is_one_line_and_leaves_nothing(tmp_path, cli_error, smoke_data,
                                                                      monkeypatch):
    from study.search.rundir import RunDir

    monkeypatch.setattr(RunDir, "write_spec", full_disk(str(tmp_path / "runs" / "x" / "study.json")))
    try:
        code, err = cli_error(tune_command.main, "--preset", "smoke", "--data-dir", str(smoke_data), "--storage",
                              str(tmp_path / "runs"), "--name", "x")
    finally:  # the spec is written after Ray starts: stop this process's Ray, which `--address auto` would find
        import ray

        ray.shutdown()
    assert_one_line_error(code, err, f"cannot write {tmp_path / 'runs' / 'x' / 'study.json'}: No space left")
    assert not (tmp_path / "runs").exists()


def test_a_real_full_disk_for_the_analysis_is_one_line(run_dir, tmp_path):
    """A 600 KiB tmpfs as the run's analysis folder: the plots do not fit. Needs root's mount (as CI has)."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"no tmpfs mount here ({mounted.stderr.decode().strip()}); the injected ENOSPC tests cover it")
    try:
        shutil.copytree(run_dir / "analysis", small / "analysis", dirs_exist_ok=True)
        shutil.rmtree(run_dir / "analysis")
        (run_dir / "analysis").symlink_to(small / "analysis")
        done = subprocess.run([sys.executable, "-m", "analysis", str(run_dir)], cwd=PROJECT, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "No space left on device" in done.stderr
        assert "Traceback" not in done.stderr and "continue with" in done.stderr
        assert json.loads((small / "analysis" / "predictions" / "softmax_seed1.json").read_text())
    finally:
        subprocess.run(["umount", str(small)])


def mounted_tmpfs(folder: Path, size: str) -> Path:
    """A tmpfs of `size` at `folder` (root's mount, as CI has; elsewhere the test says it is skipped and why)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"no tmpfs mount here ({mounted.stderr.decode().strip()}); "
                    "test_write_failures_in_every_shape_ray_and_optuna_raise covers the search's errors")
    return folder


@pytest.fixture
def small_tmpfs(tmp_path):
    """A tmpfs of 400 KiB, unmounted after."""
    yield mounted_tmpfs(tmp_path / "small", "400k")
    subprocess.run(["umount", str(tmp_path / "small")])


@pytest.fixture
def filling_tmpfs(tmp_path):
    """A tmpfs of 700 KiB, unmounted after: the search phase below (two heads, two searches of two trials each,
    smoke-frozen) has written about 540 KiB when its first two trials have finished, about 850 KiB when five have,
    and 880 KiB in all, so it fills with some trials finished and others not (measured on the development
    machine)."""
    yield mounted_tmpfs(tmp_path / "filling", "700k")
    subprocess.run(["umount", str(tmp_path / "filling")])


def finished_trials(run: Path, search: str, epochs: int = 3) -> dict:
    """{trial folder: progress.csv} of the trials Ray's files show finished (all `epochs` of the smoke-frozen preset;
    a search of one trial stops none early), for a search (in the search phase's experiment)."""
    return {p.parent.name: p.read_text() for p in (run / "trials").glob(f"{search}_trial_*/progress.csv")
            if len(p.read_text().strip().splitlines()) == 1 + epochs}


def test_a_disk_that_fills_during_the_search_is_one_line_and_resume_completes(filling_tmpfs, smoke_data):
    """The storage fills mid-search (Optuna's SQLite reports it as its own error, not an OSError): one line naming
    the file and the cause, exit 2, the command to continue with; once space is freed, --resume completes the run
    and every trial that had finished is kept, not trained again. Each command starts a Ray of its own, as a new
    user's does."""
    tune = [sys.executable, str(PROJECT / "study" / "tune.py")]
    heads = ["softmax", "taylor"]
    start = [*tune, "--preset", "smoke-frozen", "--head", ",".join(heads), "--num-samples", "4", "--data-dir",
             str(smoke_data),
             "--storage", str(filling_tmpfs), "--name", "full", "--no-analysis"]
    first = subprocess.run(start, capture_output=True, text=True, cwd=PROJECT, timeout=600)
    errors = [line for line in first.stderr.splitlines() if not line.startswith("[I ")]  # Optuna's own info lines
    assert first.returncode == 2, first.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: cannot write "), first.stderr[-3000:]
    assert "No space left on device" in errors[0]
    assert f"continue with: python study/tune.py --resume --name full --storage {filling_tmpfs}" in errors[0]
    run = filling_tmpfs / "full"
    searches = [name for head in heads for name in (head, f"{head}-search2")]  # the preset's two per head
    done = {name: finished_trials(run, name) for name in searches}
    assert not all((run / name / "summary.json").is_file() for name in searches)  # it did stop mid-search
    assert any(done.values())  # and after some trial had finished: the check below has something to check

    subprocess.run(["mount", "-o", "remount,size=8m", str(filling_tmpfs)], check=True)  # space freed
    # What --resume continues from: Ray's saved state, or the last complete copy of it where a full disk cut Ray's
    # short (put back here as --resume's first step would). The trials it records as finished must be kept; one
    # that ended in the second after it is trained again, as after a kill (README, Interrupting and resuming).
    from ray import tune as ray_tune

    from study.search.phase import restore_last_good_state

    restore_last_good_state(run / "trials")
    recorded = {Path(t.path).name for t in ray_tune.ExperimentAnalysis(str(run / "trials")).trials
                if t.status == "TERMINATED"}
    resumed = subprocess.run([*tune, "--resume", "--name", "full", "--storage", str(filling_tmpfs), "--no-analysis"],
                             capture_output=True, text=True, cwd=PROJECT, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for search in searches:
        summary = json.loads((run / search / "summary.json").read_text())
        outcomes = [(t["trial_id"], t["status"], t["error"], t["epochs"]) for t in summary["trials"]]
        assert len(summary["trials"]) == 2 and all(t["status"] == "ok" for t in summary["trials"]), (search, outcomes)
        now = finished_trials(run, search)
        for name, progress in done[search].items():  # finished and recorded before the disk filled: kept as it was
            if name in recorded:
                assert now[name] == progress


class FakeTuneError(Exception):
    """Ray's TuneError and RayTaskError: the original traceback as text, no exception chain."""


def raised_while_handling(error, wrapper):
    try:
        try:
            raise error
        except Exception:
            raise wrapper
    except Exception as caught:
        return caught


def test_write_failures_in_every_shape_ray_and_optuna_raise(tmp_path):
    import sqlite3

    from study.search.write_failures import write_failure

    db = tmp_path / "optuna.db"

    def failure(error):
        found = write_failure(error, tmp_path, db)
        return None if found is None else (errno.errorcode[found.errno], found.strerror, found.filename)

    sqlite_full = sqlite3.OperationalError("database or disk is full")
    storage_error = RuntimeError("An exception is raised during the commit.")
    storage_error.__cause__ = sqlite_full
    # Optuna's StorageInternalError from SQLite's error, then Ray's TuneError raised while handling it.
    nested = raised_while_handling(storage_error, FakeTuneError("Traceback ...\nTuneError"))
    assert failure(nested) == ("ENOSPC", "No space left on device (SQLite: database or disk is full)", str(db))
    read_only = FakeTuneError("sqlite3.OperationalError: attempt to write a readonly database")
    assert failure(read_only)[0] == "EROFS" and failure(read_only)[2] == str(db)
    # A trial's checkpoint, copied by pyarrow in a Ray worker: only the traceback's text reaches the driver.
    pyarrow = FakeTuneError("OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left")
    assert failure(pyarrow) == ("ENOSPC", "Error writing bytes to file. Detail", f"a file under {tmp_path}")
    ray_text = FakeTuneError(f"PermissionError: [Errno 13] Permission denied: '{tmp_path}/head/trial_1'")
    assert failure(ray_text) == ("EACCES", "Permission denied", f"{tmp_path}/head/trial_1")
    direct = OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "experiment_state.json"))
    assert failure(direct) == ("EROFS", os.strerror(errno.EROFS), str(tmp_path / "experiment_state.json"))
    # Anything else is not a write failure: it keeps its own error.
    assert failure(FakeTuneError("ValueError: [Errno 2] No such file or directory: 'x'")) is None
    assert failure(sqlite3.OperationalError("no such table: trials")) is None
    assert failure(ValueError("the trial diverged")) is None


def test_a_write_failure_inside_a_search_is_one_line_with_the_command_to_continue(tmp_path, cli_error, smoke_data,
                                                                                 monkeypatch, shared_ray):
    """Where no tmpfs can be mounted, the same path with the error injected where Optuna raises it."""
    import sqlite3

    from study.search import tuner

    def full(*args, **kwargs):
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as error:
            raise RuntimeError("An exception is raised during the commit.") from error

    monkeypatch.setattr(tuner, "run_phase", full)
    monkeypatch.delenv("RAY_IGNORE_UNHANDLED_ERRORS", raising=False)  # search_phase sets it: put back after
    try:
        code, err = cli_error(tune_command.main, "--preset", "smoke", "--data-dir", str(smoke_data), "--storage",
                              str(tmp_path / "runs"), "--name", "x", "--head", "softmax", "--address", shared_ray)
    finally:  # this process joined the shared Ray: leave it
        import ray

        ray.shutdown()
    assert_one_line_error(code, err, f"cannot write {tmp_path / 'runs' / 'x' / 'optuna.db'}: No space left on "
                                     "device (SQLite: database or disk is full)")
    assert f"continue with: python study/tune.py --resume --name x --storage {tmp_path / 'runs'}" in err
    assert (tmp_path / "runs" / "x" / "study.json").is_file()  # the run is kept for --resume


def test_a_storage_that_refuses_a_write_is_found_by_trying_one(small_tmpfs, tmp_path):
    """Trials that Ray cancelled name no cause; a write of a small checkpoint's size into the folder finds it."""
    from study.search.write_failures import storage_refuses

    assert storage_refuses(tmp_path) is None and not list(tmp_path.glob(".write-probe*"))
    with open(small_tmpfs / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to write on close
        with pytest.raises(OSError) as full:
            while True:
                f.write(bytes(4096))
    assert full.value.errno == errno.ENOSPC
    refused = storage_refuses(small_tmpfs)
    assert (refused.errno, refused.filename) == (errno.ENOSPC, f"a file under {small_tmpfs}")
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]  # the probe is removed


def test_an_unnamed_failure_of_the_search_on_a_storage_that_refuses_writes_is_a_write_failure(monkeypatch,
                                                                                             small_tmpfs, tmp_path):
    """Ray can fail on what a full disk left behind (an EOFError reading a trial's truncated error file) without
    naming the cause: the search then tries a write; a storage that refuses it is the cause, else the error is
    raised as it was."""
    from types import SimpleNamespace

    from study.search import tuner
    from study.search.searches import SearchId

    def truncated(*args, **kwargs):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(tuner, "run_search", truncated)
    monkeypatch.delenv("RAY_IGNORE_UNHANDLED_ERRORS", raising=False)  # search_head sets it: put back after
    fine = SimpleNamespace(run=SimpleNamespace(path=tmp_path, optuna_db=tmp_path / "optuna.db"))
    with pytest.raises(EOFError):
        tuner.search_head(SearchId("softmax", 0), fine, splits=None)
    with open(small_tmpfs / "filler", "wb", buffering=0) as f:
        with pytest.raises(OSError):
            while True:
                f.write(bytes(4096))
    full = SimpleNamespace(run=SimpleNamespace(path=small_tmpfs, optuna_db=small_tmpfs / "optuna.db"))
    with pytest.raises(OSError) as refused:
        tuner.search_head(SearchId("softmax", 1), full, splits=None)
    assert (refused.value.errno, refused.value.filename) == (errno.ENOSPC, f"a file under {small_tmpfs}")
