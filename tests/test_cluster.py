"""The study on a two-node Ray cluster (`--address`): trials spread over both nodes, and a run stopped with SIGTERM
(what timeout, SLURM and Kubernetes send; study/cli.py turns it into Ctrl-C's SIGINT, so this is Ctrl-C's path
through Ray Tune too) exits 143 with the resume line, and resumes on the cluster without training its finished
trials again. Both nodes run on this machine (ray.cluster_utils.Cluster), each with its own raylet and workers."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from conftest import address_file_kept, assert_one_line_error
from fake_cifar import write_fake_cifar100

REPO = Path(__file__).resolve().parent.parent
TUNE = [sys.executable, str(REPO / "study" / "tune.py")]
HEADS = ["softmax", "taylor"]
TRIALS = 8  # per head; two at a time (one CPU on each node), so that the interrupt finds trials still to run


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"), train_per_class=12, test_per_class=2)


@pytest.fixture
def cluster():
    """A head node and one more, one logical CPU each: two one-CPU trials at a time must use both nodes. This
    process does not connect to it; the study does, through --address."""
    from ray.cluster_utils import Cluster

    with address_file_kept() as put_back:  # the study here is given --address; nothing else may find this one
        ray_cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
        try:
            put_back()
            worker = ray_cluster.add_node(num_cpus=1)
            ray_cluster.wait_for_nodes()
            yield ray_cluster, {ray_cluster.head_node.node_id, worker.node_id}
        finally:
            ray_cluster.shutdown()  # ends every process of both nodes (and checks that none is left alive)


def finished_trials(run_dir: Path, head: str) -> dict:
    """The head's trials that ran all their epochs (2), in the search phase's experiment: folder -> progress.csv."""
    found = {}
    for folder in (run_dir / "trials").glob(f"{head}_trial_*"):
        path = folder / "progress.csv"
        text = path.read_text() if path.exists() else ""
        if len(text.strip().splitlines()) == 3:  # header and two epochs
            found[folder] = text
    return found


def ended_trials(run_dir: Path, head: str) -> int:
    """How many of the head's trials the saved experiment state records as ended (ASHA may stop one early)."""
    from ray import tune as ray_tune

    try:
        trials = ray_tune.ExperimentAnalysis(str(run_dir / "trials")).trials
    except Exception:  # not written yet, or caught mid-write
        return 0
    return sum(t.status == "TERMINATED" and t.config.get("search") == head for t in trials)


def test_study_on_a_two_node_cluster_spreads_trials_and_resumes(cluster, study_data, tmp_path):
    ray_cluster, node_ids = cluster
    address = ray_cluster.address
    args = ["--head", ",".join(HEADS), "--preset", "smoke", "--address", address, "--storage", str(tmp_path),
            "--name", "c", "--data-dir", str(study_data), "--num-samples", str(TRIALS), "--epochs", "2",
            "--no-analysis"]
    # Output to files, not pipes: nothing reads a pipe while the test waits, and a full one would stall the study.
    log = tmp_path / "interrupted.log"
    with open(log, "w") as out:
        process = subprocess.Popen([*TUNE, *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    run_dir = tmp_path / "c"
    first, second = (run_dir / head for head in HEADS)
    deadline = time.time() + 300
    # Interrupt once the first head's trials are done and the second has finished at least one trial.
    while time.time() < deadline and process.poll() is None:
        if finished_trials(run_dir, HEADS[1]) and ended_trials(run_dir, HEADS[0]) == TRIALS:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the study ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    output = log.read_text()
    assert process.returncode == 143, output[-3000:]
    assert f"interrupted: the search phase stopped before every trial of {HEADS[1]} ended; everything " \
           f"finished is saved. Continue with: python study/tune.py --resume --name c --storage {tmp_path} " \
           f"--address {address}" in output, output[-3000:]
    # The search that had ended is summarised at the interrupt; the other one is not.
    assert not (second / "summary.json").exists()
    first_summary = (first / "summary.json").read_text()
    done_before = finished_trials(run_dir, HEADS[1])
    assert done_before and len(done_before) < TRIALS

    result = subprocess.run([*TUNE, "--resume", "--name", "c", "--storage", str(tmp_path), "--address", address,
                             "--no-analysis"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"[1/2] {HEADS[0]}: already finished, kept" in result.stdout
    assert (first / "summary.json").read_text() == first_summary
    for folder, text in done_before.items():  # finished before the interrupt: kept, not trained again
        assert (folder / "progress.csv").read_text() == text
    for head in HEADS:
        summary = json.loads((run_dir / head / "summary.json").read_text())
        assert [t["status"] for t in summary["trials"]] == ["ok"] * TRIALS, head
        # Two trials at a time on two one-CPU nodes: every head's search used both nodes.
        assert set(summary["trials_per_node"]) == node_ids, (head, summary["trials_per_node"])
        assert sum(summary["trials_per_node"].values()) == TRIALS
        assert {t["node_id"] for t in summary["trials"]} == node_ids
        # Optuna agrees: one finished trial per Ray trial, none left RUNNING by the interrupt; a configuration it
        # handed out just before the interrupt, which Ray never ran, is marked FAIL and listed in the summary.
        trials = optuna.load_study(study_name=head, storage=f"sqlite:///{run_dir / 'optuna.db'}").trials
        states = [t.state for t in trials]
        assert states.count(optuna.trial.TrialState.COMPLETE) == TRIALS, (head, states)
        assert optuna.trial.TrialState.RUNNING not in states, head
        assert states.count(optuna.trial.TrialState.FAIL) == len(summary["optuna_orphans_failed"]), head


def test_address_auto_without_a_running_ray_is_one_line(study_data, tmp_path):
    """Ray's own failure to find a cluster, in a process of its own; nothing is written. (No module-scoped shared
    Ray is alive here: see conftest.shared_ray.)"""
    storage = tmp_path / "runs"
    result = subprocess.run([*TUNE, "--preset", "smoke", "--data-dir", str(study_data), "--storage", str(storage),
                             "--address", "auto"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert_one_line_error(result.returncode, result.stderr, "cannot connect to Ray at --address auto")
    assert not storage.exists()
