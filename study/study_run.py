"""What `study/tune.py` does once its arguments parse: resolve, validate, connect, search each head, report."""
import json
import math
import platform
import shutil
import subprocess
import time
from pathlib import Path

import torch

from study.config import TrainConfig, validate
from study.errors import ConfigError, Interrupted, StudyError, UnknownNameError
from study import dry_run
from study.frozen import check_same_features, describe as describe_kind
from study.heads import list_heads
from study.presets import resolve_preset
from study.cluster import REPO_ROOT, check_address, concurrency, connect_ray
from study.layout import STUDY_FILE, SUMMARY_FILE, check_run_name, optuna_storage, read_study
from study.train import load_splits
from study.tuning import SearchPlan


def parse_heads(text):
    if text is None or text == "all":
        return list_heads()
    heads = [h.strip() for h in text.split(",")]
    if not all(heads):
        raise ConfigError(f"malformed --head '{text}': expected 'all' or names separated by commas, "
                          "e.g. softmax,gumbel")
    for head in heads:
        if head not in list_heads():
            raise UnknownNameError(f"unknown head '{head}'; choose from: all, {', '.join(list_heads())}")
    if len(set(heads)) != len(heads):
        raise ConfigError(f"--head '{text}' names a head twice")
    return heads


def latest_run(storage: Path) -> Path:
    runs = sorted(storage.glob(f"*/{STUDY_FILE}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise StudyError(f"--resume: no run to resume in {storage}; start one without --resume")
    return runs[-1].parent


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions():
    import numpy
    import optuna
    import ray

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "numpy": numpy.__version__}


def check_dry_run(args):
    """The dry run's own flags, checked before anything else: (simulated GPUs or None)."""
    if args.dry_run_gpus is not None and not args.dry_run:
        raise ConfigError(f"--dry-run-gpus needs --dry-run (e.g. --dry-run --dry-run-gpus {args.dry_run_gpus:g})")
    if not args.dry_run:
        return None
    if args.address is not None:
        raise ConfigError("--dry-run starts a local Ray of its own; drop --address")
    return dry_run.check_gpus(1.0 if args.dry_run_gpus is None else args.dry_run_gpus)


def new_study(args, argv, storage: Path, dry_gpus=None) -> dict:
    # A dry run rehearses what a GPU machine would run: 'auto' resolves as if its simulated GPUs were visible.
    preset, why = resolve_preset(args.preset, torch.cuda.is_available() or dry_gpus is not None)
    print(why, flush=True)
    train = preset.train
    overrides = {"model.backbone": args.backbone, "optim.epochs": args.epochs, "data.data_dir": args.data_dir}
    train = train.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.backbone is not None and args.backbone != preset.train.model.backbone:
        train = train.replace(**{"model.backbone_knobs": {}})  # the preset's knobs belong to its own backbone
    gpus = preset.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial
    if dry_gpus is not None:
        train = dry_run.shrink(train)
    # Checked before it is described or anything is written: an unknown backbone or a bad seed is one line.
    validate(train.replace(**{"run.seed": args.seed, "run.device": "cpu"}))
    prefix = "dryrun-" if dry_gpus is not None else ""
    name = check_run_name(args.name) if args.name else f"{prefix}{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    kind = describe_kind(train)
    print(kind, flush=True)
    return {
        "name": name, "heads": parse_heads(args.head), "preset": preset.name, "preset_reason": why,
        "kind": kind,
        "num_samples": preset.num_samples if args.num_samples is None else args.num_samples,
        "gpus_per_trial": gpus,
        "cpus_per_trial": preset.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial,
        "grace_period": preset.grace_period, "reduction_factor": preset.reduction_factor,
        "checkpoint_every": preset.checkpoint_every, "final_seeds": preset.final_seeds, "seed": args.seed,
        "max_concurrent": args.max_concurrent,
        "train": train.replace(**{"run.seed": args.seed,
                                  "run.device": "cuda" if gpus > 0 and dry_gpus is None else "cpu"}).to_dict(),
        "command": "python study/tune.py " + " ".join(argv), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_commit": git_commit(), "versions": versions(),
    }


def resumed_study(args, storage: Path) -> (dict, Path):
    run_dir = storage / check_run_name(args.name) if args.name else latest_run(storage)
    if not (run_dir / STUDY_FILE).is_file():
        raise StudyError(f"--resume: {run_dir} is not a study run (no {STUDY_FILE}); check --name and --storage")
    study = read_study(run_dir)
    if args.head is not None and parse_heads(args.head) != study["heads"]:
        raise ConfigError(f"--resume: run {run_dir.name} was made with --head {','.join(study['heads'])}, "
                          f"not {args.head}; resume with the same heads or start a new run")
    print(f"resuming {run_dir} ({study['preset_reason']})", flush=True)
    if study.get("kind"):
        print(study["kind"], flush=True)
    return study, run_dir


def check_values(study: dict):
    checks = [(study["num_samples"] >= 1, f"--num-samples {study['num_samples']} must be >= 1"),
              (study["gpus_per_trial"] >= 0, f"--gpus-per-trial {study['gpus_per_trial']} must be >= 0"),
              (study["cpus_per_trial"] > 0, f"--cpus-per-trial {study['cpus_per_trial']} must be > 0"),
              (study.get("max_concurrent") is None or study["max_concurrent"] >= 1,
               f"--max-concurrent {study.get('max_concurrent')} must be >= 1")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    validate(TrainConfig.from_dict(study["train"]).replace(**{"run.device": "cpu"}))  # devices are checked by Ray


def check_writable(run_dir: Path):
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise StudyError(f"--storage: cannot write to {run_dir} ({error.strerror}); choose a writable folder")


def run_study(args, argv) -> None:
    storage = Path(args.storage).expanduser().resolve()
    dry_gpus = check_dry_run(args)
    if args.resume:
        study, run_dir = resumed_study(args, storage)
    else:
        study = new_study(args, argv, storage, dry_gpus)
        if dry_gpus is not None:
            study["dry_run"] = {"gpus": dry_gpus, "cpus": dry_run.logical_cpus(
                dry_gpus, study["gpus_per_trial"], study["cpus_per_trial"])}
        run_dir = storage / study["name"]
        if (run_dir / STUDY_FILE).exists():
            raise StudyError(f"run {run_dir} already exists; pass --resume to continue it, or choose another --name")
    check_values(study)
    dry = study.get("dry_run")
    if args.address is None and not dry and study["gpus_per_trial"] > torch.cuda.device_count():
        raise ConfigError(f"--gpus-per-trial {study['gpus_per_trial']:g} asks for more GPUs than the "
                          f"{torch.cuda.device_count()} visible here; use --gpus-per-trial 0 for CPU trials")
    check_address(args.address)
    # Everything that can be checked is checked before the run directory is made: bad input leaves no empty run.
    splits = load_splits(TrainConfig.from_dict(study["train"]))
    if args.resume:
        check_same_features(study.get("frozen_features"), splits, "--resume")
    else:
        study["frozen_features"] = splits.features_id  # which cached features it is tuned on (frozen studies)
    made = first_missing_folder(run_dir)
    try:
        check_writable(run_dir)
        resources = (connect_ray(None, num_gpus=dry["gpus"], num_cpus=dry["cpus"]) if dry
                     else connect_ray(args.address))
        max_concurrent = concurrency(study, resources)
        (run_dir / STUDY_FILE).write_text(json.dumps(study, indent=2))
    except BaseException:  # a start that fails (or is interrupted) before study.json leaves no folder behind
        if made is not None and not (run_dir / STUDY_FILE).is_file():
            shutil.rmtree(made, ignore_errors=True)
        raise
    resume = (f"Continue with: python study/tune.py --resume --name {run_dir.name} --storage {run_dir.parent}")
    try:
        search_and_analyse(args, study, run_dir, splits, max_concurrent)
    except Interrupted as stop:
        raise Interrupted(f"{stop}; everything finished is saved. {resume}") from None
    except KeyboardInterrupt:  # between Ray's searches, or during the analysis
        raise Interrupted(f"the study stopped; everything finished is saved. {resume}") from None


def first_missing_folder(path: Path):
    """The outermost folder of `path` that does not exist yet (what making it would create), or None."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            return missing
        missing = folder
    return missing


def search_and_analyse(args, study: dict, run_dir: Path, splits, max_concurrent: int) -> None:
    from study.tuning import search_head

    plan = SearchPlan(run_dir=run_dir, base=TrainConfig.from_dict(study["train"]),
                      num_samples=study["num_samples"], gpus_per_trial=study["gpus_per_trial"],
                      cpus_per_trial=study["cpus_per_trial"], max_concurrent=max_concurrent,
                      grace_period=study["grace_period"], reduction_factor=study["reduction_factor"],
                      checkpoint_every=study["checkpoint_every"], seed=study["seed"],
                      monitor_gpu=study["gpus_per_trial"] > 0 and args.address is None and not study.get("dry_run"))
    print(f"run directory {run_dir}: {len(study['heads'])} heads x {study['num_samples']} trials, "
          f"up to {max_concurrent} at a time ({study['cpus_per_trial']:g} CPU, {study['gpus_per_trial']:g} GPU "
          f"per trial)", flush=True)
    summaries = []
    for index, head in enumerate(study["heads"], 1):
        done = run_dir / head / SUMMARY_FILE
        if done.is_file():
            print(f"[{index}/{len(study['heads'])}] {head}: already finished, kept", flush=True)
        else:
            print(f"[{index}/{len(study['heads'])}] {head}: searching", flush=True)
            search_head(head, plan, splits)
        summaries.append(json.loads(done.read_text()))
    print_report(run_dir, summaries)
    if study.get("dry_run"):
        print("\n" + "\n".join(dry_run.plan_lines(study, summaries)), flush=True)
        return
    analysis_command = f"python -m analysis {run_dir}"
    if args.no_analysis:
        print(f"\nfinal models and test metrics: {analysis_command}")
        return
    print(f"\nretraining each head's best config with {study['final_seeds']} seeds and testing once "
          f"(same as: {analysis_command})", flush=True)
    from analysis.run import analyse

    # Final models take the trials' CPU share, so on a CPU they run side by side as the trials did (each timed
    # again alone afterwards); a GPU or a cluster spreads them anyway.
    analyse(run_dir, address=args.address, cpus_per_run=study["cpus_per_trial"])


def print_report(run_dir: Path, summaries) -> None:
    import pandas as pd

    rows = []
    for s in summaries:
        best = s["best"] or {}
        finished = sum(t["status"] == "ok" for t in s["trials"])
        rows.append({"head": s["head"], "trials ok": f"{finished}/{len(s['trials'])}",
                     "best val_acc": f"{100 * best['last_val_acc']:.2f}%" if best else "none",
                     "epoch s (shared)": f"{best['median_epoch_time_s']:.2f}" if best else "",
                     "search wall s": f"{s['wall_s']:.0f}",
                     "peak concurrent": s["peak_concurrent_trials"],
                     "trial setup s": f"{s['median_setup_s']:.2f}" if s["median_setup_s"] is not None else "",
                     **gpu_columns(s.get("gpu")),
                     "best params": ", ".join(f"{k}={format_value(v)}" for k, v in (best.get("params") or {}).items())})
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(f"\nbest trial per head: highest val_acc at the trial's last epoch (in {run_dir}/<head>/{SUMMARY_FILE})")
    print("epoch s (shared): median epoch of the best trial while other trials shared its device; the analysis "
          "measures costs alone")
    print(f"TensorBoard: tensorboard --logdir {run_dir}")
    print(f"Optuna:      optuna-dashboard {optuna_storage(run_dir)}")


def gpu_columns(gpu) -> dict:
    """Mean GPU utilisation and peak memory during the head's search, when GPUs were sampled (study/gpu_monitor.py)."""
    if not gpu:
        return {}
    return {"GPU busy %": f"{gpu['gpu_busy_pct']:.0f}", "GPU peak MiB": f"{gpu['gpu_peak_memory_mib']:.0f}"}


def format_value(value):
    return f"{value:.3g}" if isinstance(value, float) and math.isfinite(value) else str(value)
