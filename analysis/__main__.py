"""`python -m analysis runs/NAME [--seeds N] [--epochs E] [--force] [--retime]`: final models, test metrics, costs,
report."""
import sys

from study import cli


def build_parser():
    p = cli.ArgumentParser(prog="python -m analysis", description=__doc__)
    p.add_argument("run_dir", help="a study's run directory, e.g. runs/quick-20261123-091500")
    p.add_argument("--seeds", type=cli.whole(1),
                   help="final models per search's configuration (default: the preset's, e.g. 2)")
    p.add_argument("--epochs", type=cli.whole(1), help="epochs per final model (default: the study's)")
    p.add_argument("--force", action="store_true", help="retrain final models even when saved ones match")
    p.add_argument("--retime", action="store_true",
                   help="measure every head's costs again by the timing protocol (saved final models are reused, "
                        "none is trained again) and rewrite the report, e.g. to time a finished run on this machine")
    p.add_argument("--address", type=cli.ray_address,
                   help="Ray cluster to train final models on ('auto' or host:port)")
    p.add_argument("--gpus-per-run", type=cli.number(0), help="GPU share per final model (default 0.25 on a GPU)")
    p.add_argument("--cpus-per-run", type=cli.number(0, above=True),
                   help="CPUs per final model: with room for two at once, they run side by side as Ray tasks and "
                        "each head is then timed alone (default on a CPU: one after another in this process)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from analysis.run import analyse
    from study.errors import Interrupted, StudyError, is_write_error
    from study.search.cluster import default_address

    rerun = " ".join(["python -m analysis", *(argv if argv is not None else sys.argv[1:])])
    try:
        analyse(args.run_dir, seeds=args.seeds, epochs=args.epochs, force=args.force,
                address=args.address if args.address is not None else default_address(),
                gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run, retime=args.retime)
    except OSError as error:  # a full disk, a folder it may not write: each final model is saved when done
        if not is_write_error(error):
            raise
        where = error.filename or f"a file under {args.run_dir}"  # a write through a file object names none
        raise StudyError(f"cannot write {where}: {error.strerror}; every finished final model is saved: "
                         f"free space (or fix permissions), then continue with: {rerun}") from None
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (study/cli.py): each final model is saved when done
        raise Interrupted(f"the analysis stopped; every finished final model is saved and reused. Continue with: "
                          f"{rerun}") from None


if __name__ == "__main__":
    cli.run(main)
