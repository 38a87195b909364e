"""Bad input to every command: one line naming the value and what is valid, exit code 2, no traceback, and nothing
written. One table holds the cases of every command; `test_every_flag_has_a_case` reads each command's parser, so
a flag added without a case fails here. (The commands run in this process; tests/test_tune.py, test_analysis.py,
test_train.py and test_bench.py each run a few of these in a real process too.)"""
import json
import shutil
from pathlib import Path

import pytest

import analysis.__main__ as analysis_command
import analysis.budget as budget_command
import analysis.kscaling as analysis_kscaling
import analysis.error_rate as error_rate_command
import study.bench.epoch as bench_epoch
import study.bench.eval as bench_eval
import study.bench.heads as bench_heads
import study.bench.kscaling as bench_kscaling
import study.bench.memory as bench_memory
import study.bench.trial as bench_trial
import study.synthetic as synthetic_command
import study.train as train_command
import study.tune as tune_command
from conftest import assert_one_line_error
from fake_cifar import write_fake_cifar100
from test_features import BAD_FILES, write_bad_files, write_features

COMMANDS = {"tune": tune_command, "analysis": analysis_command, "train": train_command,
            "bench.heads": bench_heads, "bench.epoch": bench_epoch, "bench.eval": bench_eval,
            "bench.trial": bench_trial, "bench.memory": bench_memory, "bench.kscaling": bench_kscaling,
            "synthetic": synthetic_command, "analysis.kscaling": analysis_kscaling,
            "error_rate": error_rate_command, "budget": budget_command}
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_run"
DATA, STORAGE, RUN = "{data}", "{storage}", "{run}"  # filled in per test

# (command, the flag the case is about, its arguments, what the one line says)
CASES = [
    ("tune", "--head", ["--head", "bogus"], "unknown head 'bogus'; choose from: all, adaptive"),
    ("tune", "--head", ["--head", "softmax,,gumbel"], "malformed --head 'softmax,,gumbel'"),
    ("tune", "--head", ["--head", "softmax,softmax"], "--head 'softmax,softmax' names a head twice"),
    ("tune", "--preset", ["--preset", "bogus"],
     "unknown preset 'bogus'; choose from: auto, smoke, smoke-frozen, frozen, frozen-gpu, quick, full"),
    ("tune", "--backbone", ["--backbone", "vit"], "unknown backbone 'vit'; choose from: resnet12"),
    ("tune", "--num-samples", ["--num-samples", "0"], "argument --num-samples: 0 must be >= 1"),
    ("tune", "--num-samples", ["--num-samples", "many"], "argument --num-samples: 'many' is not a whole number"),
    ("tune", "--epochs", ["--epochs", "0"], "argument --epochs: 0 must be >= 1"),
    ("tune", "--searches", ["--searches", "0"], "argument --searches: 0 must be >= 1"),
    ("tune", "--searches", ["--preset", "smoke-frozen", "--searches", "3"],
     "--num-samples 2 must split evenly over --searches 3 (every search of every head gets the same trials): use "
     "a multiple of 3"),
    ("tune", "--resume", ["--resume", "--name", "made", "--searches", "2"],
     "--resume continues run made as it was made; drop --searches"),
    ("tune", "--gpus-per-trial", ["--gpus-per-trial", "-1"],
     "argument --gpus-per-trial: -1 must be a finite number >= 0"),
    ("tune", "--gpus-per-trial", ["--gpus-per-trial", "1000"],
     "--gpus-per-trial 1000 asks for more GPUs than the"),
    ("tune", "--cpus-per-trial", ["--cpus-per-trial", "0"],
     "argument --cpus-per-trial: 0 must be a finite number > 0"),
    ("tune", "--cpus-per-trial", ["--cpus-per-trial", "nan"],
     "argument --cpus-per-trial: nan must be a finite number > 0"),
    ("tune", "--max-concurrent", ["--max-concurrent", "0"], "argument --max-concurrent: 0 must be >= 1"),
    ("tune", "--address", ["--address", "nohost"], "argument --address: malformed address 'nohost'"),
    ("tune", "--address", ["--address", "http://10.0.0.5:8265"], "argument --address: malformed address 'http://"),
    ("tune", "--address", ["--address", "127.0.0.1:1"], "cannot reach a Ray cluster at --address 127.0.0.1:1"),
    ("tune", "--storage", ["--storage", "/proc/softmax-study"], "--storage: cannot write to /proc/softmax-study"),
    ("tune", "--data", ["--data", "imagenet"], "unknown data source 'imagenet'; choose from: cifar100, features"),
    ("tune", "--data", ["--data", "cifar100:/data"], "data source 'cifar100' takes no argument"),
    ("tune", "--data", ["--data", "features:"], "data source 'features' needs a file: features:FILE.npz"),
    ("tune", "--data", ["--data", "features:{features}/absent.npz"], "absent.npz does not exist"),
    ("tune", "--data", ["--data", "features:{features}/not_an_npz.npz"], "cannot read"),
    ("tune", "--data", ["--preset", "smoke", "--data", "features:{features}/good.npz"],
     "preset 'smoke' trains a CNN on images, but the data are feature vectors; choose from: auto, smoke-frozen"),
    ("tune", "--data", ["--backbone", "tinyvgg", "--data", "features:{features}/good.npz"],
     "--backbone does not apply to --data features:"),
    ("tune", "--data", ["--resume", "--name", "made", "--data", "features:{features}/good.npz"],
     "--resume continues run made as it was made; drop --data"),
    *[("tune", "--data", ["--data", f"features:{{features}}/{name.replace(' ', '_')}.npz"], message)
      for name, (_, message) in BAD_FILES.items()],
    ("tune", "--image-size", ["--image-size", "4"], "argument --image-size: 4 must be between 16 and 512"),
    ("tune", "--image-size", ["--image-size", "64"],
     "--image-size 64 does not apply to data source 'cifar100', whose images are 32 x 32; drop it"),
    ("tune", "--image-size", ["--image-size", "16", "--data", "features:{features}/good.npz"],
     "--image-size does not apply to --data features:"),
    ("tune", "--image-size", ["--resume", "--name", "made", "--image-size", "16"],
     "--resume continues run made as it was made; drop --image-size"),
    ("tune", "--skip-bad-images", ["--skip-bad-images"],
     "--skip-bad-images does not apply to data source 'cifar100', whose files are checked whole; drop it"),
    ("tune", "--skip-bad-images", ["--skip-bad-images", "--data", "features:{features}/good.npz"],
     "--skip-bad-images does not apply to --data features:"),
    ("tune", "--skip-bad-images", ["--resume", "--name", "made", "--skip-bad-images"],
     "--resume continues run made as it was made; drop --skip-bad-images"),
    ("tune", "--data", ["--data", "imagefolder:"], "data source 'imagefolder' needs a folder: imagefolder:DIR"),
    ("tune", "--data", ["--data", "imagefolder:{features}/absent"], "absent does not exist or is not a folder"),
    ("tune", "--name", ["--name", "../../x"], "--name '../../x' is not a plain run name"),
    ("tune", "--name", ["--name", "a/b"], "--name 'a/b' is not a plain run name"),
    ("tune", "--name", ["--name", "my run"], "--name 'my run' is not a plain run name"),
    ("tune", "--resume", ["--resume", "--name", "nope"], "is not a study run"),
    ("tune", "--resume", ["--resume", "--name", ".."], "--name '..' is not a plain run name"),
    ("tune", "--resume", ["--resume", "--name", "made", "--epochs", "3"],
     "--resume continues run made as it was made; drop --epochs"),
    ("tune", "--resume", ["--resume", "--name", "made", "--seed", "0"],
     "--resume continues run made as it was made; drop --seed"),
    ("tune", "--resume", ["--resume", "--name", "made", "--head", "gumbel"],
     "run made was made with --head softmax, not gumbel"),
    ("tune", "--data-dir", ["--data-dir", "/nonexistent/cifar"], "data directory /nonexistent/cifar does not exist"),
    ("tune", "--seed", ["--seed", "-5"], "argument --seed: -5 must be between 0 and 4294967295"),
    ("tune", "--dry-run", ["--dry-run", "--address", "auto"],
     "--dry-run starts a local Ray of its own; drop --address"),
    ("tune", "--dry-run-gpus", ["--dry-run", "--dry-run-gpus", "0"],
     "argument --dry-run-gpus: 0 must be a finite number > 0"),
    ("tune", "--dry-run-gpus", ["--dry-run", "--dry-run-gpus", "nan"],
     "argument --dry-run-gpus: nan must be a finite number > 0"),
    ("tune", "--dry-run-gpus", ["--dry-run-gpus", "2"], "--dry-run-gpus needs --dry-run"),
    ("tune", "--no-analysis", ["--no-analysis=yes"], "argument --no-analysis: ignored explicit argument 'yes'"),

    ("analysis", "run_dir", ["/nonexistent/run"], "is not a study run directory"),
    ("analysis", "--seeds", [RUN, "--seeds", "0"], "argument --seeds: 0 must be >= 1"),
    ("analysis", "--epochs", [RUN, "--epochs", "two"], "argument --epochs: 'two' is not a whole number"),
    ("analysis", "--force", [RUN, "--force=1"], "argument --force: ignored explicit argument '1'"),
    ("analysis", "--retime", [RUN, "--retime=yes"], "argument --retime: ignored explicit argument 'yes'"),
    ("analysis", "--address", [RUN, "--address", "host:port"], "argument --address: malformed address 'host:port'"),
    ("analysis", "--gpus-per-run", [RUN, "--gpus-per-run", "-0.5"],
     "argument --gpus-per-run: -0.5 must be a finite number >= 0"),
    ("analysis", "--cpus-per-run", [RUN, "--cpus-per-run", "0"],
     "argument --cpus-per-run: 0 must be a finite number > 0"),
    ("analysis", "--cpus-per-run", [RUN, "--cpus-per-run", "inf"],
     "argument --cpus-per-run: inf must be a finite number > 0"),

    ("train", "--head", ["--head", "bogus"], "unknown head 'bogus'; choose from: adaptive, entmax"),
    ("train", "--head-knob", ["--head", "hierarchical", "--head-knob", "layout=spiral"],
     "unknown tree layout 'spiral'"),
    ("train", "--head-knob", ["--head-knob", "tau=1"], "unknown knob 'tau' for head 'softmax'"),
    ("train", "--head-knob", ["--head-knob", "tau"], "--head-knob 'tau' is not of the form name=value"),
    ("train", "--head-knob", ["--head", "gumbel", "--head-knob", "tau=abc"],
     "head 'gumbel': tau='abc' is not valid; it takes a finite number"),
    ("train", "--head-knob", ["--head", "gumbel", "--head-knob", "tau=nan"],
     "head 'gumbel': tau='nan' is not valid; it takes a finite number"),
    ("train", "--head-knob", ["--head", "gumbel", "--head-knob", "tau=1e999"],
     "head 'gumbel': tau=inf is not valid; it takes a finite"),
    ("train", "--head-knob", ["--head", "sampled", "--head-knob", "num_sampled=2.5"],
     "num_sampled=2.5 is not valid; it takes a whole number"),
    ("train", "--head-knob", ["--head", "hierarchical", "--head-knob", "branching=True"],
     "branching=True is not valid; it takes a whole"),
    ("train", "--backbone", ["--backbone", "vit"], "unknown backbone 'vit'; choose from: resnet12"),
    ("train", "--backbone-knob", ["--backbone-knob", "width=sixteen"],
     "backbone 'tinyvgg': width='sixteen' is not valid; it takes a whole"),
    ("train", "--epochs", ["--epochs", "-3"], "argument --epochs: -3 must be >= 1"),
    ("train", "--epochs", ["--epochs", "three"], "argument --epochs: 'three' is not a whole number"),
    ("train", "--subset", ["--subset", "0"], "argument --subset: 0 must be >= 1"),
    ("train", "--subset", ["--subset", "3"], "subset=3 is fewer training images than the 100 classes"),
    ("train", "--head-knob", ["--head", "adaptive", "--head-knob", "head_fraction=1.5"],
     "head_fraction=1.5 is out of range; choose a value in (0, 1)"),
    ("train", "--head-knob", ["--head", "entmax", "--head-knob", "alpha=0.5"],
     "alpha=0.5 is out of range for the entmax head; choose a value in (1, 2]"),
    ("train", "--head-knob", ["--head", "sampled", "--head-knob", "num_sampled=1000"],
     "num_sampled=1000 must be below the 100 classes (at most 99) for the sampled head"),
    ("train", "--head-knob", ["--head", "adaptive", "--head-knob", "head_fraction=0.001"],
     "head_fraction=0.001 puts round(100 x 0.001) = 0 classes in the adaptive head"),
    ("train", "--head-knob", ["--head", "adaptive", "--head-knob", "head_fraction=0.9",
                              "--head-knob", "num_clusters=20", "--head-knob", "div_value=1"],
     "num_clusters=20 is more tail clusters than the 10 tail classes"),
    ("train", "--val-size", ["--val-size", "-1"], "argument --val-size: -1 must be >= 0"),
    ("train", "--data", ["--data", "imagenet"], "unknown data source 'imagenet'; choose from: cifar100, features"),
    ("train", "--data", ["--data", "features:{features}/nan_feature.npz"], "non-finite value (nan) at row 0"),
    ("train", "--neck-width", ["--neck-width", "8"], "--neck-width applies to a features file only"),
    ("train", "--neck-width", ["--neck-width", "-1"], "argument --neck-width: -1 must be >= 0"),
    ("train", "--data-dir", ["--data-dir", "/nonexistent/cifar"], "data directory /nonexistent/cifar does not exist"),
    ("train", "--device", ["--device", "tpu"], "unknown device 'tpu'; choose from: auto, cpu, cuda"),
    ("train", "--seed", ["--seed", "-5"], "argument --seed: -5 must be between 0 and 4294967295"),
    ("train", "--lr", ["--lr", "-0.1"], "argument --lr: -0.1 must be a finite number > 0"),
    ("train", "--lr", ["--lr", "nan"], "argument --lr: nan must be a finite number > 0"),
    ("train", "--batch-size", ["--batch-size", "1"], "argument --batch-size: 1 must be >= 2"),
    ("train", "--optimizer", ["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'; choose from: sgd, adamw"),
    ("train", "--weight-decay", ["--weight-decay", "-0.001"],
     "argument --weight-decay: -0.001 must be a finite number >= 0"),
    ("train", "--schedule", ["--schedule", "step"], "unknown schedule 'step'; choose from: onecycle, cosine"),
    ("train", "--final", ["--final=no"], "argument --final: ignored explicit argument 'no'"),
    ("train", "--no-augment", ["--no-augment=1"], "argument --no-augment: ignored explicit argument '1'"),
    ("train", "--no-download", ["--no-download", "--data-dir", RUN],  # a folder without CIFAR-100: not fetched
     "CIFAR-100 not found in"),

    ("bench.heads", "--device", ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("bench.heads", "--heads", ["--heads", "bogus"], "unknown head 'bogus'; choose from: adaptive"),
    ("bench.heads", "--classes", ["--classes", "1,10"], "argument --classes: every K must be >= 2, got 1"),
    ("bench.heads", "--classes", ["--classes", "ten"], "argument --classes: 'ten' is not a comma-separated list"),
    ("bench.heads", "--dim", ["--dim", "0"], "argument --dim: 0 must be >= 1"),
    ("bench.heads", "--batch", ["--batch", "0"], "argument --batch: 0 must be >= 1"),
    ("bench.heads", "--repeats", ["--repeats", "0"], "argument --repeats: 0 must be >= 1"),
    ("bench.heads", "--warmup", ["--warmup", "-1"], "argument --warmup: -1 must be >= 0"),
    ("bench.heads", "--out", ["--out", "/nonexistent/folder/b.csv"], "folder /nonexistent/folder does not exist"),

    ("bench.epoch", "--backbone", ["--backbone", "vit"], "unknown backbone 'vit'"),
    ("bench.epoch", "--backbone-knob", ["--backbone", "tinyvgg", "--backbone-knob", "depth=3"],
     "unknown knob 'depth' for backbone 'tinyvgg'"),
    ("bench.epoch", "--head", ["--head", "bogus"], "unknown head 'bogus'"),
    ("bench.epoch", "--images", ["--images", "1"], "argument --images: 1 must be >= 2"),
    ("bench.epoch", "--batch-size", ["--batch-size", "1"], "argument --batch-size: 1 must be >= 2"),
    ("bench.epoch", "--epochs", ["--epochs", "0"], "argument --epochs: 0 must be >= 1"),
    ("bench.epoch", "--device", ["--device", "tpu"], "unknown device 'tpu'; choose from: auto, cpu, cuda"),
    ("bench.epoch", "--no-augment", ["--no-augment=0"], "argument --no-augment: ignored explicit argument '0'"),
    ("bench.epoch", "--threads", ["--threads", "0"], "argument --threads: 0 must be >= 1"),
    ("bench.epoch", "--compile", ["--compile=yes"], "argument --compile: ignored explicit argument 'yes'"),

    ("bench.eval", "--backbone", ["--backbone", "vit"], "unknown backbone 'vit'"),
    ("bench.eval", "--backbone-knob", ["--backbone-knob", "width=-"], "backbone 'tinyvgg': width='-' is not valid"),
    ("bench.eval", "--head", ["--head", "bogus"], "unknown head 'bogus'"),
    ("bench.eval", "--images", ["--images", "0"], "argument --images: 0 must be >= 1"),
    ("bench.eval", "--batch-sizes", ["--batch-sizes", "64,x"], "--batch-sizes '64,x' must be positive integers"),
    ("bench.eval", "--repeats", ["--repeats", "0"], "argument --repeats: 0 must be >= 1"),
    ("bench.eval", "--device", ["--device", "tpu"], "unknown device 'tpu'; choose from: auto, cpu, cuda"),
    ("bench.eval", "--threads", ["--threads", "-2"], "argument --threads: -2 must be >= 1"),
    ("synthetic", "--classes", ["--classes", "1"], "argument --classes: 1 must be >= 2"),
    ("synthetic", "--dim", ["--dim", "0"], "argument --dim: 0 must be >= 1"),
    ("synthetic", "--out", ["--out", "features.csv"], "--out features.csv must end in .npz"),
    ("synthetic", "--out", ["--out", str(FIXTURE / "analysis" / "predictions" / "softmax_seed1.npz")],
     "softmax_seed1.npz already exists; choose another name or delete it"),
    ("synthetic", "--out", ["--out", "nowhere/f.npz"], "--out nowhere/f.npz: folder nowhere does not exist"),
    ("synthetic", "--train", ["--train", "5"], "--train 5 is fewer than the 10 classes; every class needs a training "
     "example: choose at least 10"),
    ("synthetic", "--test", ["--test", "0"], "argument --test: 0 must be >= 1"),
    ("synthetic", "--branching", ["--branching", "1"], "argument --branching: 1 must be >= 2"),
    ("synthetic", "--zipf", ["--zipf", "nan"], "argument --zipf: nan must be a finite number >= 0"),
    ("synthetic", "--noise", ["--noise", "0"], "argument --noise: 0 must be a finite number > 0"),
    ("synthetic", "--shrink", ["--shrink", "-1"], "argument --shrink: -1 must be a finite number > 0"),
    ("synthetic", "--seed", ["--seed", "-1"], "argument --seed: -1 must be between 0 and 4294967295"),
    ("error_rate", "--studies", ["--studies", "0"], "argument --studies: 0 must be >= 1"),
    ("error_rate", "--images", ["--images", "1"], "argument --images: 1 must be >= 2"),
    ("error_rate", "--heads", ["--heads", "1"], "argument --heads: 1 must be >= 2"),
    ("error_rate", "--searches", ["--searches", "1"], "argument --searches: 1 must be >= 2"),
    ("error_rate", "--seeds", ["--seeds", "0"], "argument --seeds: 0 must be >= 1"),
    ("error_rate", "--old-seeds", ["--old-seeds", "1"], "argument --old-seeds: 1 must be >= 2"),
    ("error_rate", "--sd-config", ["--sd-config", "-1"], "argument --sd-config: -1 must be a finite number >= 0"),
    ("error_rate", "--sd-seed", ["--sd-seed", "nan"], "argument --sd-seed: nan must be a finite number >= 0"),
    ("error_rate", "--seed-corr", ["--seed-corr", "2"], "--seed-corr 2 must be between 0 and 1"),
    ("error_rate", "--accuracy", ["--accuracy", "1.5"], "--accuracy 1.5 must be a fraction between 0 and 1"),
    ("error_rate", "--rng-seed", ["--rng-seed", "-1"], "argument --rng-seed: -1 must be >= 0"),
    ("bench.trial", "--head", ["--head", "bogus"], "unknown head 'bogus'"),
    ("bench.trial", "--epochs", ["--epochs", "1"], "argument --epochs: 1 must be >= 2"),
    ("bench.trial", "--rows", ["--rows", "1"], "argument --rows: 1 must be >= 2"),
    ("bench.trial", "--val-rows", ["--val-rows", "0"], "argument --val-rows: 0 must be >= 1"),
    ("bench.trial", "--classes", ["--classes", "x"], "argument --classes: 'x' is not a whole number"),
    ("bench.trial", "--eval-batch-size", ["--eval-batch-size", "0"], "argument --eval-batch-size: 0 must be >= 1"),
    ("bench.trial", "--threads", ["--threads", "0"], "argument --threads: 0 must be >= 1"),
    ("bench.trial", "--head-knob", ["--head-knob", "tau=1"], "unknown knob 'tau' for head 'softmax'"),
    ("bench.memory", "--head", ["--head", "bogus"], "unknown head 'bogus'"),
    ("bench.memory", "--classes", ["--classes", "1"], "argument --classes: 1 must be >= 2"),
    ("bench.memory", "--dim", ["--dim", "0"], "argument --dim: 0 must be >= 1"),
    ("bench.memory", "--epochs", ["--epochs", "0"], "argument --epochs: 0 must be >= 1"),
    ("bench.memory", "--role", ["--role", "both"], "argument --role: invalid choice: 'both'"),
    ("bench.memory", "--roles", ["--roles", "trial,bogus"], "--roles: unknown role 'bogus'; choose from: trial, final"),
    ("bench.memory", "--features", ["--features", "nowhere.npz"], "nowhere.npz"),
    ("bench.memory", "--features", ["--features", "nowhere.npz", "--classes", "100"],
     "--classes and --dim describe generated data; --features FILE has its own K and d"),
    ("bench.kscaling", "--classes", ["--classes", "500"], "--classes 500 is not in the sweep; choose from: 100, 1000, "
     "10000"),
    ("analysis.kscaling", "run_dirs", ["nowhere"], "nowhere is not a folder; give the sweep's run directories"),
    ("analysis.kscaling", "run_dirs", [RUN], "is not a finished K-scaling run (no kscaling.json); run python -m "
     "study.bench.kscaling"),
    ("analysis.kscaling", "--out", [RUN, "--out", "{features}/good.npz"], "good.npz is a file, not a folder"),
    ("bench.kscaling", "--classes", ["--classes", "1"], "argument --classes: 1 must be >= 2"),
    ("bench.kscaling", "--storage", ["--classes", "100", "--storage", "{features}/good.npz"],
     "good.npz is a file, not a folder; choose a folder"),
    ("budget", "run_dir", ["nowhere"], "nowhere is not a study run directory"),
    ("budget", "--epochs", [RUN, "--epochs", "20,10"],
     "argument --epochs: '20,10' is not two or more budgets in increasing order, e.g. 10,20,40"),
    ("budget", "--epochs", [RUN, "--epochs", "0,10"], "argument --epochs: 0 must be >= 1"),
    ("budget", "--seeds", [RUN, "--seeds", "1"], "argument --seeds: 1 must be >= 2"),
    ("budget", "--head", [RUN, "--head", "bogus"], "--head bogus: not in this study; its heads: softmax"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"), train_per_class=12, test_per_class=2)


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    """A good features file (good.npz) and every bad one of tests/test_features.py."""
    folder = write_bad_files(tmp_path_factory.mktemp("features"))
    write_features(folder / "good.npz", 4, dim=3, train=40, test=12)
    return folder


def base_arguments(command: str, argv) -> list:
    """What each command is given besides the case's own arguments, so that only the bad value is wrong."""
    if command == "tune" and "--data" in argv and "--resume" not in argv and "--preset" not in argv:
        return ["--preset", "smoke-frozen", "--storage", STORAGE]
    if command == "tune":
        return ["--storage", STORAGE] if "--resume" in argv else ["--preset", "smoke", "--data-dir", DATA,
                                                                  "--storage", STORAGE]
    if command == "train":
        return ["--backbone", "tinyvgg", "--epochs", "1", "--device", "cpu", "--data-dir", DATA, "--val-size", "100"]
    if command == "synthetic":
        return ["--classes", "10", "--out", "out.npz"]  # the case's own value, given after, is the one used
    if command in ("bench.trial", "bench.memory", "bench.kscaling"):  # CPU only
        return []
    if command.startswith("bench."):
        return ["--device", "cpu"] if "--device" not in argv else []
    return []


def listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("command,flag,argv,message", CASES, ids=[f"{c[0]} {' '.join(c[2])}" for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(command, flag, argv, message, data_dir, features_dir, tmp_path,
                                                  cli_error, monkeypatch):
    storage, run = tmp_path / "runs", tmp_path / "runs" / "made"
    run.mkdir(parents=True)  # a run to resume (--resume --name made) or analyse, as the study left it
    shutil.copytree(FIXTURE, run, dirs_exist_ok=True, ignore=shutil.ignore_patterns("analysis"))
    spec = json.loads((run / "study.json").read_text())
    (run / "study.json").write_text(json.dumps({**spec, "heads": ["softmax"]}))
    (run / "hierarchical" / "summary.json").unlink()
    monkeypatch.chdir(tmp_path)  # anything a command would write by default lands where it is seen
    before = listing(tmp_path)
    fill = {DATA: str(data_dir), STORAGE: str(storage), RUN: str(run)}
    args = [fill.get(a, a).replace("{features}", str(features_dir)) for a in [*base_arguments(command, argv), *argv]]
    assert_one_line_error(*cli_error(COMMANDS[command].main, *args), message)
    assert listing(tmp_path) == before  # nothing written, nothing touched


def test_every_flag_has_a_case():
    covered = {(command, flag) for command, flag, _, _ in CASES}
    for name, module in COMMANDS.items():
        parser = module.build_parser()
        flags = [a.option_strings[-1] if a.option_strings else a.dest for a in parser._actions
                 if "--help" not in a.option_strings]
        assert flags, name
        missing = [flag for flag in flags if (name, flag) not in covered]
        assert missing == [], f"{name}: no bad-input case for {missing}"


def damaged_run_files():
    """(case, file, its text, what the one-line error says): truncated, empty, not an object, incomplete, wrong
    types, a newer layout; for the spec and for a head's search summary."""
    whole = (FIXTURE / "study.json").read_text()
    spec = json.loads(whole)
    cases = [("truncated", "study.json", whole[: len(whole) // 2], "is damaged (not valid JSON"),
             ("empty", "study.json", "", "is damaged (not valid JSON"),
             ("a list", "study.json", "[1, 2]", "is damaged (it holds a list, not an object)")]
    for key in ("heads", "train", "seed", "final_seeds"):
        cases.append((f"without {key}", "study.json", json.dumps({k: v for k, v in spec.items() if k != key}),
                      f"is damaged (no '{key}'; it is incomplete)"))
    summary = (FIXTURE / "softmax" / "summary.json").read_text()
    cases += [("seed as text", "study.json", json.dumps({**spec, "seed": "0"}), "is damaged ('seed' is '0')"),
              ("heads empty", "study.json", json.dumps({**spec, "heads": []}),
               "is damaged (heads [] must name each head once)"),
              ("unknown head", "study.json", json.dumps({**spec, "heads": ["bogus"]}),
               "is damaged (unknown head 'bogus'"),
              ("negative trials", "study.json", json.dumps({**spec, "num_samples": -1}),
               "is damaged (--num-samples -1 must be >= 1)"),
              ("NaN GPU share", "study.json", json.dumps({**spec, "gpus_per_trial": float("nan")}),
               "is damaged (--gpus-per-trial nan must be a finite number >= 0)"),
              ("epochs as text", "study.json",
               json.dumps({**spec, "train": {**spec["train"], "optim": {**spec["train"]["optim"], "epochs": "3"}}}),
               "is damaged (its 'train' configuration: optim.epochs='3' is not valid; it takes a whole number)"),
              ("dry run of no GPUs", "study.json", json.dumps({**spec, "dry_run": {"gpus": "x", "cpus": 2}}),
               "is damaged (dry_run {'gpus': 'x', 'cpus': 2} must declare GPUs > 0"),
              ("unknown key", "study.json", json.dumps({**spec, "colour": "blue"}),
               "is damaged (unknown key 'colour')"),
              ("bad train", "study.json", json.dumps({**spec, "train": {"optim": {"speed": 1}}}),
               "is damaged (its 'train' configuration: unknown OptimConfig field 'speed'"),
              ("newer schema", "study.json", json.dumps({**spec, "schema": 99}),
               "has schema version 99; this code reads versions 1 to"),
              ("summary truncated", "softmax/summary.json", summary[: len(summary) // 3],
               "softmax/summary.json is damaged (not valid JSON"),
              ("summary without trials", "softmax/summary.json", json.dumps({"head": "softmax"}),
               "softmax/summary.json is damaged (no list of trials and best trial)")]
    return cases


def damaged_run_cases():
    """Each damaged file for the analysis; the damaged specs for --resume too (a resumed study reads a head's
    summary only once Ray has started: tests/test_tune.py)."""
    return [("analysis", *case) for case in damaged_run_files()] + [
        ("tune --resume", *case) for case in damaged_run_files() if case[1] == "study.json"]


@pytest.mark.parametrize("command,case,name,text,message", damaged_run_cases(),
                         ids=[f"{c[0]}: {c[1]}" for c in damaged_run_cases()])
def test_damaged_run_files_are_one_line(command, case, name, text, message, tmp_path, cli_error):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run, ignore=shutil.ignore_patterns("analysis"))
    (run / name).write_text(text)
    before = listing(tmp_path)
    if command == "analysis":
        code, stderr = cli_error(analysis_command.main, str(run))
    else:
        code, stderr = cli_error(tune_command.main, "--resume", "--name", "run", "--storage", str(tmp_path))
    assert_one_line_error(code, stderr, message)
    assert listing(tmp_path) == before


def test_ray_address_from_the_environment_is_checked_and_named(data_dir, tmp_path, cli_error, monkeypatch):
    """Without --address, $RAY_ADDRESS is the cluster to join (study/search/cluster.py: default_address): the error
    names where the address came from, and nothing is written."""
    storage = tmp_path / "runs"
    base = ["--preset", "smoke", "--data-dir", str(data_dir), "--storage", str(storage)]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert_one_line_error(*cli_error(tune_command.main, *base),
                          "cannot reach a Ray cluster at $RAY_ADDRESS 127.0.0.1:1")
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    assert_one_line_error(*cli_error(tune_command.main, *base),
                          "$RAY_ADDRESS: malformed address 'http://127.0.0.1:8265': expected 'auto' or host:port")
    assert not storage.exists()


def test_every_config_field_type_is_checked_when_read():
    """A configuration read from a file is checked field by field against TrainConfig's annotations
    (study/config.py); every annotation the sections use has a check and words for its error."""
    import dataclasses

    from study.config import SECTION_TYPES, TYPE_WORDS, TrainConfig, of_type

    for section in SECTION_TYPES.values():
        for f in dataclasses.fields(section):
            assert f.type in TYPE_WORDS, (section.__name__, f.name)
            assert of_type(getattr(section(), f.name), f.type), (section.__name__, f.name)  # defaults pass
    for section, field, value in [("optim", "batch_size", 64.5), ("optim", "lr", "0.1"), ("data", "augment", 1),
                                  ("run", "eval_batch_size", True), ("model", "head_knobs", [1])]:
        with pytest.raises(Exception, match=f"^{section}.{field}=.* is not valid; it takes "):
            TrainConfig.from_dict({section: {field: value}})


def test_a_run_that_ends_with_its_line_prints_nothing_more_from_rays_workers(monkeypatch):
    """After the one line, trial workers that Ray stops as the process exits could print their dying words (Ray
    forwards workers' stderr to the console): cli.run turns that forwarding off before the line. Ray's own printer
    is the reference: it prints a worker's line before, nothing after."""
    import io

    import ray._private.worker as ray_worker
    from study import cli
    from study.errors import StudyError

    monkeypatch.setattr(ray_worker, "_worker_logs_enabled", True)
    line = {"pid": 4321, "ip": "127.0.0.1", "localhost": "127.0.0.1", "is_err": True,
            "lines": ["Exception ignored in: <function WeakSet.__init__.<locals>._remove>"]}
    before = io.StringIO()
    ray_worker.print_worker_logs(line, before)
    assert "Exception ignored" in before.getvalue()

    def fails(argv):
        raise StudyError("cannot write optuna.db: No space left on device")

    with pytest.raises(SystemExit) as ended:
        cli.run(fails, [])
    assert ended.value.code == cli.EXIT_BAD_INPUT
    after = io.StringIO()
    ray_worker.print_worker_logs(line, after)
    assert after.getvalue() == ""
