"""What `study/tune.py` does once its arguments parse: check the spec, connect, search each head, report."""
import contextlib
import dataclasses

import torch

from study.errors import ConfigError, Interrupted, StudyError, is_write_error
from study.locks import exclusive
from study.presets import PRESETS
from study.splits import SplitSizeError, unsplit_line
from study.frozen import check_same_features
from study.study_kind import describe as describe_kind
from study.inputs import load_splits
from study.search import dry_run
from study.search.cluster import check_address, concurrency, connect_ray, default_address
from study.search.from_args import spec_from_args
from study.search.report import print_report
from study.search.rundir import NewRunFolder, RunDir
from study.search.searches import search_ids
from study.search.spec import StudySpec


def run_study(args, argv) -> None:
    # Every input is checked before anything is written: bad input leaves no run directory behind.
    spec, run = spec_from_args(args, argv, gpu_visible=torch.cuda.is_available())
    with contextlib.ExitStack() as held:  # the run's lock, from before its first write to the end of the analysis
        if args.resume:
            held.enter_context(exclusive(run.path, f"run {run.path}"))
        try:
            study(spec, run, args, held)
        except OSError as error:
            if not is_write_error(error):
                raise
            again = (f"continue with: python study/tune.py --resume --name {run.name} --storage {run.path.parent}"
                     if run.exists() else "start it again: python study/tune.py " + " ".join(argv))
            where = error.filename or f"a file under {run.path}"  # a write through a file object names none
            raise StudyError(f"cannot write {where}: {error.strerror}; free space (or fix permissions), "
                             f"then {again}") from None


def study(spec, run, args, held) -> None:
    print(f"resuming {run.path} ({spec.preset_reason})" if args.resume else spec.preset_reason, flush=True)
    # A dry run starts a Ray of its own; a study joins --address, else $RAY_ADDRESS, else starts its own.
    address = args.address if args.address is not None or spec.dry_run else default_address()
    local = address is None
    if local and not spec.dry_run and spec.gpus_per_trial > torch.cuda.device_count():
        raise ConfigError(f"--gpus-per-trial {spec.gpus_per_trial:g} asks for more GPUs than the "
                          f"{torch.cuda.device_count()} visible here; use --gpus-per-trial 0 for CPU trials")
    check_address(address, "--address" if args.address is not None else "$RAY_ADDRESS")
    try:
        splits = load_splits(spec.train)
    except SplitSizeError as error:  # the presets count CIFAR-100's images; a small folder may hold fewer
        raise ConfigError(f"preset {spec.preset} does not fit --data {spec.train.data.source}: {error}; give the "
                          "data more training images, or choose a preset with smaller sizes (README, Data)") from None
    if args.resume:
        check_same_features(spec.frozen_features, splits, "--resume")
    else:  # which cached features it is tuned on (frozen studies); the kind of study, now that K is known
        spec = dataclasses.replace(spec, frozen_features=splits.features_id,
                                   skipped_images=splits.skipped_inputs or None,
                                   kind=describe_kind(spec.train, splits.class_info.num_classes))
    if spec.kind:  # runs made before the study kind was recorded have none
        print(spec.kind, flush=True)
    if splits.unsplit_classes:
        print(unsplit_line(splits), flush=True)
    with NewRunFolder(run):  # a start that fails (or is interrupted) before the spec is written leaves nothing
        if not args.resume:  # the folder exists now: lock it before anything is written in it
            held.enter_context(exclusive(run.path, f"run {run.path}"))
            if run.exists():  # another start of the same --name got here first and has finished
                raise StudyError(f"run {run.path} already exists; pass --resume to continue it, or choose another "
                                 "--name")
        dry = spec.dry_run
        resources = connect_ray(None, num_gpus=dry.gpus, num_cpus=dry.cpus) if dry else connect_ray(address)
        max_concurrent = concurrency(spec, resources)
        if args.resume:
            run.mark_used()
        else:
            run.write_spec(spec)
    from study.search.tuner import Search

    search = Search(spec, run, max_concurrent, monitor_gpu=spec.gpus_per_trial > 0 and local and not dry)
    resume = (f"Continue with: python study/tune.py --resume --name {run.name} --storage {run.path.parent}"
              + (f" --address {args.address}" if args.address else ""))  # on the cluster it ran on
    try:
        search_and_analyse(search, splits, args, address)
    except Interrupted as stop:
        raise Interrupted(f"{stop}; everything finished is saved. {resume}") from None
    except KeyboardInterrupt:  # between Ray's searches, or during the analysis
        raise Interrupted(f"the study stopped; everything finished is saved. {resume}") from None


def search_and_analyse(search, splits, args, address) -> None:
    from study.search.tuner import search_head, search_phase

    spec, run = search.spec, search.run
    print(f"run directory {run.path}: {len(spec.heads)} heads x {searches_text(spec)}, up to "
          f"{search.max_concurrent} trials at a time ({spec.cpus_per_trial:g} CPU, {spec.gpus_per_trial:g} GPU per "
          "trial)", flush=True)
    print(asha_line(spec), flush=True)
    found, pending = {}, []
    for index, head in enumerate(spec.heads, 1):
        for which in search_ids(head, spec.searches):
            step = f"[{index}/{len(spec.heads)}] {which.label if spec.searches > 1 else head}"
            if run.has_summary(which.name):
                print(f"{step}: already finished, kept", flush=True)
                found[which.name] = run.read_summary(which.name)
            elif run.has_own_experiment(which.name):  # started by a run made before the search phase
                print(f"{step}: resuming its own Ray Tune run", flush=True)
                found[which.name] = search_head(which, search, splits)
            else:
                pending.append(which)
    if pending:
        print(f"searching {phase_text(pending, spec)} side by side in one Ray Tune run, each with its own sampler, "
              "ASHA and seeds; each search's summary is written when the run ends", flush=True)
        found.update(search_phase(pending, search, splits))
    summaries = [found[which.name] for head in spec.heads for which in search_ids(head, spec.searches)]
    print_report(run, summaries)
    if spec.dry_run:
        print("\n" + "\n".join(dry_run.plan_lines(spec, summaries)), flush=True)
        return
    analyse_after_search(spec, run, args.no_analysis, address)


def phase_text(pending, spec: StudySpec) -> str:
    heads = len({which.head for which in pending})
    if spec.searches == 1:
        return f"{heads} head(s) ({spec.trials_per_search} trials each)"
    return f"{len(pending)} searches of {heads} head(s) ({spec.trials_per_search} trials each)"


def searches_text(spec: StudySpec) -> str:
    if spec.searches == 1:
        return f"{spec.num_samples} trials"
    return f"{spec.searches} independent searches of {spec.trials_per_search} trials"


def asha_line(spec: StudySpec) -> str:
    """The scheduler's settings, and whether the preset's grace period was shortened to fit a shorter --epochs."""
    preset = PRESETS.get(spec.preset)
    epochs = spec.train.optim.epochs
    shortened = (f" (the {spec.preset} preset's {preset.grace_period}, shortened to the {epochs} epochs a trial "
                 f"has)" if preset is not None and preset.grace_period > spec.grace_period else "")
    return (f"ASHA: every trial trains {spec.grace_period} epoch(s) before it may be stopped{shortened}; at each "
            f"rung the best 1/{spec.reduction_factor} go on, up to {epochs} epochs")


def analyse_after_search(spec: StudySpec, run: RunDir, no_analysis: bool, address) -> None:
    analysis_command = f"python -m analysis {run.path}"
    if no_analysis:
        print(f"\nfinal models and test metrics: {analysis_command}")
        return
    configs = "each search's best config" if spec.searches > 1 else "each head's best config"
    print(f"\nretraining {configs} with {spec.final_seeds} seed(s) and testing once "
          f"(same as: {analysis_command})", flush=True)
    from analysis.run import analyse

    # Final models take the trials' CPU share, so on a CPU they run side by side as the trials did (each timed
    # again alone afterwards); a GPU or a cluster spreads them anyway.
    analyse(run, spec=spec, address=address, cpus_per_run=spec.cpus_per_trial)  # the spec as resumed (--data-dir)
