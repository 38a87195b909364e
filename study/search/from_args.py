"""The study spec from `study/tune.py`'s command line: a new study from the flags and the preset, or a resumed run's
own spec. Every flag is checked here, once, before anything is written."""
import dataclasses
import platform
import subprocess
import time
from pathlib import Path

from study import PROJECT_ROOT
from study.errors import ConfigError, StudyError
from study.heads import list_heads
from study.presets import for_inputs, resolve_preset
from study.search import dry_run
from study.search.rundir import RunDir, check_run_name, latest_run
from study.search.spec import DryRun, StudySpec
from study.sources import DEFAULT_SOURCE, source_inputs

# Flags that define what a study is: a resumed run keeps its own, so giving one with --resume is refused rather than
# silently ignored. The others say where a run is and how this command runs it: --head may be repeated (it must
# match), and --data-dir may point at the data's new place. Every flag of study/tune.py is in one of the two
# (tests/test_tune.py).
DEFINING_FLAGS = ("preset", "data", "image_size", "skip_bad_images", "backbone", "num_samples", "searches", "epochs",
                  "gpus_per_trial", "cpus_per_trial", "max_concurrent", "seed", "dry_run", "dry_run_gpus")
RESUMABLE_FLAGS = ("head", "storage", "name", "resume", "data_dir", "address", "no_analysis")


def parse_heads(text):
    if text is None or text == "all":
        return tuple(list_heads())
    heads = [h.strip() for h in text.split(",")]
    if not all(heads):
        raise ConfigError(f"malformed --head '{text}': expected 'all' or names separated by commas, "
                          "e.g. softmax,gumbel")
    for head in heads:
        if head not in list_heads():
            raise ConfigError(f"unknown head '{head}'; choose from: all, {', '.join(list_heads())}")
    if len(set(heads)) != len(heads):
        raise ConfigError(f"--head '{text}' names a head twice")
    return tuple(heads)


def spec_from_args(args, argv, gpu_visible: bool) -> (StudySpec, RunDir):
    """(the spec, its run directory) for this command line: checked, nothing written."""
    storage = Path(args.storage).expanduser().resolve()
    if args.resume:
        return resumed_spec(args, storage)
    dry = dry_run_flags(args)
    spec = new_spec(args, argv, gpu_visible, dry)
    run = RunDir(storage / spec.name)
    if run.exists():
        raise StudyError(f"run {run.path} already exists; pass --resume to continue it, or choose another --name")
    return spec, run


def dry_run_flags(args):
    """The simulated GPUs of a dry run, or None when this is no dry run."""
    if args.dry_run_gpus is not None and not args.dry_run:
        raise ConfigError(f"--dry-run-gpus needs --dry-run (e.g. --dry-run --dry-run-gpus {args.dry_run_gpus:g})")
    if not args.dry_run:
        return None
    if args.address is not None:
        raise ConfigError("--dry-run starts a local Ray of its own; drop --address")
    return 1.0 if args.dry_run_gpus is None else args.dry_run_gpus


def new_spec(args, argv, gpu_visible: bool, dry_gpus) -> StudySpec:
    # A dry run rehearses what a GPU machine would run: 'auto' resolves as if its simulated GPUs were visible.
    source = args.data or DEFAULT_SOURCE
    inputs = source_inputs(source)
    if inputs == "features":
        for flag, given in (("--backbone", args.backbone), ("--dry-run", dry_gpus is not None),
                            ("--image-size", args.image_size is not None),
                            ("--skip-bad-images", args.skip_bad_images)):
            if given:
                raise ConfigError(f"{flag} does not apply to --data {source}: a features file is a heads-only "
                                  "study (no backbone, no images); drop it")
    preset, why = resolve_preset(args.preset or "auto", gpu_visible or dry_gpus is not None, inputs)
    given = [f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
             for flag, value in (("--searches", args.searches), ("--num-samples", args.num_samples),
                                 ("--epochs", args.epochs), ("--backbone", args.backbone),
                                 ("--gpus-per-trial", args.gpus_per_trial), ("--cpus-per-trial", args.cpus_per_trial))
             if value is not None]
    if given:  # the preset's summary names its own sizes: say which of them this study replaces
        why += f"; replaced by the command line: {', '.join(given)}"
    train = for_inputs(preset.train, inputs).replace(**{"data.source": source})
    overrides = {"model.backbone": args.backbone, "optim.epochs": args.epochs, "data.data_dir": args.data_dir,
                 "data.image_size": args.image_size, "data.skip_bad_images": args.skip_bad_images or None}
    train = train.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.backbone is not None and args.backbone != preset.train.model.backbone:
        train = train.replace(**{"model.backbone_knobs": {}})  # the preset's knobs belong to its own backbone
    gpus = preset.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial
    cpus = preset.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial
    if dry_gpus is not None:
        train = dry_run.shrink(train)
    seed = args.seed if args.seed is not None else 0
    device = "cuda" if gpus > 0 and dry_gpus is None else "cpu"
    train = train.replace(**{"run.seed": seed, "run.device": device})
    prefix = "dryrun-" if dry_gpus is not None else ""
    name = check_run_name(args.name) if args.name else f"{prefix}{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = StudySpec(
        name=name, heads=parse_heads(args.head), preset=preset.name, preset_reason=why,
        train=train, num_samples=preset.num_samples if args.num_samples is None else args.num_samples,
        searches=preset.searches if args.searches is None else args.searches,
        # ASHA's grace period cannot exceed a trial's epochs: with a shorter --epochs it is shortened to them, and
        # the run's first lines say so (study/search/run.py: asha_line).
        grace_period=min(preset.grace_period, train.optim.epochs), reduction_factor=preset.reduction_factor,
        checkpoint_every=preset.checkpoint_every, final_seeds=preset.final_seeds, seed=seed,
        timing_round_s=preset.timing_round_s, timing_rounds=preset.timing_rounds,
        gpus_per_trial=gpus, cpus_per_trial=cpus, max_concurrent=args.max_concurrent,
        dry_run=None if dry_gpus is None else DryRun(dry_gpus, dry_run.logical_cpus(dry_gpus, gpus, cpus)),
        command="python study/tune.py " + " ".join(argv), created=time.strftime("%Y-%m-%d %H:%M:%S"),
        git_commit=git_commit(), versions=versions())
    # Devices are Ray's to check (a cluster may have GPUs this machine lacks); everything else is checked here.
    return spec.checked(resources_known=False)


def resumed_spec(args, storage: Path) -> (StudySpec, RunDir):
    run = RunDir(storage / check_run_name(args.name)) if args.name else latest_run(storage)
    if not run.exists():
        raise StudyError(f"--resume: {run.path} is not a study run (no study.json); check --name and --storage")
    spec = run.read_spec()
    given = [flag for flag in DEFINING_FLAGS if getattr(args, flag) is not None and getattr(args, flag) is not False]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"--resume continues run {run.name} as it was made; drop {flag} (to change it, start a "
                          "new run)")
    if args.head is not None and parse_heads(args.head) != spec.heads:
        raise ConfigError(f"--resume: run {run.name} was made with --head {','.join(spec.heads)}, "
                          f"not {args.head}; resume with the same heads or start a new run")
    problem = run.optuna_db_problem()
    if problem:  # Optuna's history of every head is in it: a search cannot continue without it
        raise StudyError(f"--resume: {run.optuna_db} is damaged ({problem}); restore it from a copy to continue "
                         f"the search, or start a new run (the heads already finished can still be reported: "
                         f"python -m analysis {run.path})")
    if args.data_dir is not None:  # the same data in another place (a cluster's shared folder, a new machine)
        spec = dataclasses.replace(spec, train=spec.train.replace(**{"data.data_dir": args.data_dir}))
    return spec, run


def git_commit():
    try:
        # A fixed argument list (no shell, no user input); `git` from PATH as the user's own shell would find it.
        out = subprocess.run(["git", "rev-parse", "HEAD"],  # noqa: S603, S607
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import numpy
    import optuna
    import ray
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "numpy": numpy.__version__}
