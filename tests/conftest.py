import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_cifar import write_fake_cifar100  # noqa: E402

from study.class_info import ClassInfo  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def frozen_cache(tmp_path_factory):
    """Frozen backbones built by tests (and by the studies they start) go to a temporary cache, not the user's."""
    from study.frozen import CACHE_ENV

    folder = tmp_path_factory.mktemp("frozen-cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session", autouse=True)
def no_ray_cluster_from_the_environment():
    """Every study a test starts runs on a Ray of its own (or the cluster the test names), never on one that
    $RAY_ADDRESS in the developer's shell points at."""
    previous = os.environ.pop("RAY_ADDRESS", None)
    yield
    if previous is not None:
        os.environ["RAY_ADDRESS"] = previous


@contextlib.contextmanager
def address_file_kept():
    """Like `ray start`, ray.cluster_utils.Cluster writes its address to /tmp/ray/ray_current_cluster, which
    ray.init() without an address and `--address auto` join: a study of another test that is meant to start its
    own Ray (or to find none) would land on this one. Put the file back as it was at once, and again at the end
    (Cluster.shutdown() deletes it, whoever wrote it)."""
    from ray._common.utils import get_ray_address_file

    address_file = Path(get_ray_address_file(None))
    before = address_file.read_text() if address_file.exists() else None

    def put_back():
        if before is None:
            address_file.unlink(missing_ok=True)
        else:
            address_file.write_text(before)

    try:
        yield put_back
    finally:
        put_back()


@pytest.fixture(scope="module")
def shared_ray(frozen_cache):
    """One local Ray (two CPUs, as CI has) for a module's tests whose studies need a Ray but not one of their own:
    they join it with --address instead of each paying Ray's start-up (seconds on two cores). This process does
    not connect to it. Tests of the default path (a study that starts its own Ray), of environment variables its
    workers must inherit, and of other resources keep starting their own. Its workers inherit this process's
    environment, $SOFTMAX_STUDY_CACHE included (frozen_cache is set up first).

    Module-scoped: while it runs, `--address auto` finds it (Ray also looks for a running GCS process, not only
    for the address file), so it must not outlive the module that asked for it (test_cluster.py checks that
    `--address auto` with no Ray running is one line)."""
    from ray.cluster_utils import Cluster

    with address_file_kept() as put_back:
        cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2})
        try:
            put_back()
            cluster.wait_for_nodes()
            yield cluster.address
        finally:
            cluster.shutdown()


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def fixture_run_data_dir(tmp_path_factory) -> Path:
    """Fake data of the size the checked-in run (fixtures/tiny_run) was made on: 12 training images a class, so
    its smoke preset's 500 validation images and 500-image subset fit, as its final models need."""
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar12"), train_per_class=12, test_per_class=2)


@pytest.fixture(scope="session")
def tiny_class_info() -> ClassInfo:
    """10 classes in 4 superclasses, skewed counts, 2-D embeddings: enough for every head and tree layout."""
    rng = np.random.default_rng(0)
    return ClassInfo(
        num_classes=10,
        coarse_of_fine=(0, 0, 0, 1, 1, 2, 2, 2, 3, 3),
        class_counts=(50, 40, 30, 20, 10, 9, 8, 7, 6, 5),
        class_embeddings=rng.normal(size=(10, 2)),
    )


def real_data_dir():
    """The real CIFAR-100 when $SOFTMAX_STUDY_DATA points at it (CI sets it from ../shared/data), else None."""
    root = os.environ.get("SOFTMAX_STUDY_DATA")
    if root and any((Path(root) / sub / "train").is_file() for sub in ("cifar-100-python", ".")):
        return root
    return None


@pytest.fixture
def cli_error(capsys):
    """Call a command's main in this process, through the same handler as its __main__, and return (exit code,
    stderr). Starting Python, torch and Ray anew for every bad-input case would cost seconds each; a few tests
    per command still run a real process to check that nothing escapes before the handler."""
    from study import cli

    def call(main, *argv):
        with pytest.raises(SystemExit) as stop:
            cli.run(main, list(argv))
        return stop.value.code, capsys.readouterr().err

    return call


def assert_one_line_error(code, stderr, message):
    assert code == 2, stderr
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
