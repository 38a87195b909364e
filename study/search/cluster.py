"""Joining or starting Ray, and fitting trials to what the cluster has, with one-line errors for what cannot work."""
import argparse
import logging
import os
import socket

from study import PROJECT_ROOT
from study.cli import ray_address
from study.errors import ConfigError, StudyError


def default_address():
    """$RAY_ADDRESS when set (as `ray job submit` sets it for the jobs it runs on a cluster), else None: a local
    Ray of the run's own. The last `ray start` on this machine is never joined unasked (connect_ray)."""
    address = os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        try:
            ray_address(address)
        except argparse.ArgumentTypeError as error:
            raise ConfigError(f"$RAY_ADDRESS: {error}") from None
    return address


def check_address(address: str, source: str = "--address"):
    """That the Ray head at host:port answers ('auto' and None are Ray's to resolve; the form is checked by the
    command line's parser, study/cli.py: ray_address). `source` names where the address came from."""
    if address in (None, "auto"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise StudyError(f"cannot reach a Ray cluster at {source} {address} ({error}); is `ray start --head` "
                         f"running there?")


def worker_pythonpath() -> str:
    """The project first, then whatever the caller had (e.g. the folder of $SOFTMAX_STUDY_PLUGINS modules)."""
    return os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))


def connect_ray(address, num_gpus=None, num_cpus=None):
    """Join the cluster at `address` ('auto' or host:port; reachability is the caller's to check first, with
    check_address), or start a local Ray of this run's own (num_gpus/num_cpus: logical resources to declare, for a
    dry run).

    Without an address Ray is asked for "local": left to itself, ray.init() joins any Ray already running on this
    machine (the last `ray start`, or $RAY_ADDRESS), whose workers may run other code on other resources. Joining a
    cluster is what --address auto is for."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    # Starting a local Ray logs a notice that token authentication is on (it stays on); the notice is not ours to
    # print on every run, and it would make a one-line error two lines.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        declared = {k: v for k, v in (("num_gpus", num_gpus), ("num_cpus", num_cpus)) if v is not None}
        ray.init(address=address or "local", include_dashboard=False, logging_level="WARNING", **declared,
                 logging_config=ray.LoggingConfig(log_level="WARNING"),  # workers: no per-checkpoint INFO lines
                 runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}})
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise StudyError(f"cannot connect to Ray at --address {address}: {str(error).splitlines()[0]}")
    from study.cli import handle_stop_signals

    handle_stop_signals()  # ray.init replaced the SIGTERM handler with one that exits mid-search
    return ray.cluster_resources()


def concurrency(spec, resources: dict) -> int:
    """Trials at a time: what the cluster's CPUs and GPUs fit, the user's cap, and the study's trial count."""
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if spec.gpus_per_trial > gpus:
        raise ConfigError(f"--gpus-per-trial {spec.gpus_per_trial:g} asks for more GPUs than the "
                          f"{gpus:g} this Ray cluster has; use --gpus-per-trial 0 for CPU trials")
    if spec.cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial {spec.cpus_per_trial:g} asks for more than the {cpus:g} CPUs this "
                          f"Ray cluster has")
    fits = cpus // spec.cpus_per_trial
    if spec.gpus_per_trial > 0:
        fits = min(fits, gpus // spec.gpus_per_trial)
    if spec.max_concurrent:
        fits = min(fits, spec.max_concurrent)
    # Every search of every head runs in one Ray Tune run (study/search/phase.py): its trials are the cap.
    return int(max(1, min(fits, spec.num_samples * len(spec.heads))))
