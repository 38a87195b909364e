"""Joining or starting Ray, and fitting trials to what the cluster has, with one-line errors for what cannot work."""
import os
import socket
from pathlib import Path

from study.errors import ConfigError, StudyError

REPO_ROOT = Path(__file__).resolve().parent.parent


def check_address(address: str):
    if address in (None, "auto"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"malformed --address '{address}': expected 'auto' or host:port, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise StudyError(f"cannot reach a Ray cluster at --address {address} ({error}); is `ray start --head` "
                         f"running there?")


def worker_pythonpath() -> str:
    """The project first, then whatever the caller had (e.g. the folder of $SOFTMAX_STUDY_PLUGINS modules)."""
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def connect_ray(address, num_gpus=None, num_cpus=None):
    """Join the cluster at `address`, or start a local Ray (num_gpus/num_cpus: logical resources to declare, for a
    dry run)."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    check_address(address)
    try:
        declared = {k: v for k, v in (("num_gpus", num_gpus), ("num_cpus", num_cpus)) if v is not None}
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", **declared,
                 logging_config=ray.LoggingConfig(log_level="WARNING"),  # workers: no per-checkpoint INFO lines
                 runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}})
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise StudyError(f"cannot connect to Ray at --address {address}: {str(error).splitlines()[0]}")
    from study.cli import handle_stop_signals

    handle_stop_signals()  # ray.init replaced the SIGTERM handler with one that exits mid-search
    return ray.cluster_resources()


def concurrency(study: dict, resources: dict) -> int:
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if study["gpus_per_trial"] > gpus:
        raise ConfigError(f"--gpus-per-trial {study['gpus_per_trial']} asks for more GPUs than the "
                          f"{gpus:g} this Ray cluster has; use --gpus-per-trial 0 for CPU trials")
    if study["cpus_per_trial"] > cpus:
        raise ConfigError(f"--cpus-per-trial {study['cpus_per_trial']} asks for more than the {cpus:g} CPUs this "
                          f"Ray cluster has")
    fits = cpus // study["cpus_per_trial"]
    if study["gpus_per_trial"] > 0:
        fits = min(fits, gpus // study["gpus_per_trial"])
    if study.get("max_concurrent"):  # the user's cap (older run directories have no such key)
        fits = min(fits, study["max_concurrent"])
    return int(max(1, min(fits, study["num_samples"])))
