"""Run the study: tune every chosen head with Ray Tune + Optuna, the same budget for each.

    python study/tune.py --head all                       # preset auto: full on a GPU, frozen on a CPU
    python study/tune.py --head softmax,hierarchical --preset smoke
    python study/tune.py --resume                         # continue the latest run in --storage
"""
import os
import sys

if __package__ in (None, ""):  # run as a script: import the project from the repo root, not from study/
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from study import cli  # noqa: E402
from study.presets import list_presets  # noqa: E402
from study.sources import data_choices  # noqa: E402
from study.sources.imagefolder import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE  # noqa: E402


def build_parser():
    p = cli.ArgumentParser(prog="python study/tune.py", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head", help="'all' (the default) or a comma-separated list of heads")
    p.add_argument("--preset", help=f"one of: {', '.join(list_presets())} (default: auto)")
    p.add_argument("--backbone", help="override the preset's backbone")
    p.add_argument("--num-samples", type=cli.whole(1),
                   help="trials per head, split evenly over its searches (default from the preset)")
    p.add_argument("--searches", type=cli.whole(1),
                   help="independent searches per head, each retrained with the preset's final seeds; the verdicts' "
                        "unit (default from the preset; see README, The search's noise)")
    p.add_argument("--epochs", type=cli.whole(1), help="epochs per trial (default from the preset)")
    p.add_argument("--gpus-per-trial", type=cli.number(0),
                   help="GPU share per trial, e.g. 0.25 (default from the preset)")
    p.add_argument("--cpus-per-trial", type=cli.number(0, above=True), help="CPUs per trial (default from the preset)")
    p.add_argument("--max-concurrent", type=cli.whole(1),
                   help="at most this many trials at a time (default: as many as the resources fit); "
                        "1 makes a search repeat exactly (see README, Reproducibility)")
    p.add_argument("--address", type=cli.ray_address,
                   help="join a Ray cluster: 'auto' or host:port (default: start a local Ray)")
    p.add_argument("--storage", default="runs", help="root of run directories (shared storage on a cluster)")
    p.add_argument("--name", help="run directory name under --storage (default: <preset>-<date>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue --name (default: the latest run in --storage)")
    p.add_argument("--data", help=f"the data source: {', '.join(data_choices())} (default: cifar100; see README, "
                                  "Data)")
    p.add_argument("--data-dir", help="folder holding cifar-100-python/ (else $SOFTMAX_STUDY_DATA)")
    p.add_argument("--image-size", type=cli.whole(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
                   help="side in pixels imagefolder:DIR's images are resized to, once, and cached (default 32; "
                        "see README, Data)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="imagefolder:DIR: leave out files that do not decode, counted on the console and in "
                        "study.json (default: refuse the folder, naming the first such file)")
    p.add_argument("--seed", type=cli.whole(0, 2 ** 32 - 1),
                   help="the study's seed: every search's sampler and trials and the final models derive their seeds "
                        "from it (default 0)")
    p.add_argument("--dry-run", action="store_true",
                   help="rehearse the preset's search with simulated GPUs: the real run's trials, resource requests, "
                        "concurrency and ASHA, each trial shrunk to seconds on the CPU (see README, Dry run)")
    p.add_argument("--dry-run-gpus", type=cli.number(0, above=True),
                   help="GPUs the dry run tells Ray there are (default 1)")
    p.add_argument("--no-analysis", action="store_true",
                   help="stop after the search; otherwise retrain the best configs and test them (python -m analysis)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from study.search.run import run_study  # heavy imports (torch, ray) after the arguments parse

    run_study(args, argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    cli.run(main)
