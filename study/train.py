"""`python -m study.train`: one training run without Ray; per-epoch lines, then one JSON line of final metrics."""
import json

from study import cli
from study.backbones import list_backbones
from study.config import DataConfig, FrozenConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, validate
from study.errors import ConfigError
from study.heads import list_heads
from study.sources import DEFAULT_SOURCE, data_choices, source_inputs


def build_parser():
    defaults = OptimConfig()
    p = cli.ArgumentParser(prog="python -m study.train", description=__doc__)
    p.add_argument("--head", default="softmax", help=f"one of: {', '.join(list_heads())}")
    p.add_argument("--backbone", default="resnet12", help=f"one of: {', '.join(list_backbones())}")
    p.add_argument("--epochs", type=cli.whole(1), default=defaults.epochs)
    p.add_argument("--subset", type=cli.whole(1), help="train on a stratified subset of this many images")
    p.add_argument("--val-size", type=cli.whole(0), default=None,
                   help=f"training examples held out to tune on (default: {DataConfig.val_size} for cifar100; "
                        "10%% of the rows of a features file)")
    p.add_argument("--data", default=DEFAULT_SOURCE,
                   help=f"the data source: {', '.join(data_choices())} (default: {DEFAULT_SOURCE}; a features file "
                        "trains the head, behind an optional --neck-width neck, on its vectors)")
    p.add_argument("--neck-width", type=cli.whole(0), default=0,
                   help="features only: a trainable Linear-BatchNorm-ReLU of this width before the head (0: none)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-100-python/ (else $SOFTMAX_STUDY_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=cli.whole(0, 2 ** 32 - 1), default=0)
    p.add_argument("--lr", type=cli.number(0, above=True), default=defaults.lr, help="peak learning rate")
    p.add_argument("--batch-size", type=cli.whole(2), default=defaults.batch_size)
    p.add_argument("--optimizer", default=defaults.optimizer, help="sgd (Nesterov) or adamw")
    p.add_argument("--weight-decay", type=cli.number(0), default=defaults.weight_decay)
    p.add_argument("--schedule", default=defaults.schedule, help="onecycle or cosine")
    p.add_argument("--head-knob", action="append", metavar="NAME=VALUE", help="e.g. --head-knob tau=0.5")
    p.add_argument("--backbone-knob", action="append", metavar="NAME=VALUE", help="e.g. --backbone-knob width=32")
    p.add_argument("--final", action="store_true",
                   help="train as a study's final model: on the tuning split's training examples (the same as "
                        "without --final), report validation and test metrics once, after training")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    return p


def config_from_args(args) -> TrainConfig:
    features = source_inputs(args.data) == "features"
    if args.neck_width and not features:
        raise ConfigError(f"--neck-width applies to a features file only, not --data {args.data}; drop it")
    val_size = args.val_size if args.val_size is not None or features else DataConfig.val_size
    return validate(TrainConfig(
        data=DataConfig(source=args.data, data_dir=args.data_dir, val_size=val_size, subset=args.subset,
                        final=args.final, augment=not args.no_augment, allow_download=not args.no_download),
        frozen=FrozenConfig(enabled=features, neck_width=args.neck_width),
        model=ModelConfig(backbone=args.backbone, head=args.head,
                          backbone_knobs=cli.parse_knobs(args.backbone_knob, "--backbone-knob"),
                          head_knobs=cli.parse_knobs(args.head_knob, "--head-knob")),
        optim=OptimConfig(optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                          schedule=args.schedule, batch_size=args.batch_size, epochs=args.epochs),
        run=RunConfig(seed=args.seed, device=args.device),
    ))


def format_epoch(metrics: dict, epochs: int, split: str) -> str:
    evaluated = (f"{split}_loss {metrics[f'{split}_loss']:.4f}  {split}_acc {100 * metrics[f'{split}_acc']:6.2f}%  "
                 if f"{split}_acc" in metrics else "")
    return (f"epoch {metrics['epoch']:>3}/{epochs}  train_loss {metrics['train_loss']:.4f}  {evaluated}"
            f"epoch {metrics['epoch_time_s']:.2f} s  head {metrics['head_time_s']:.3f} s  "
            f"{metrics['images_per_s']:,.0f} img/s")


def main(argv=None):
    # torch is imported after argument errors are reported
    from study.inputs import load_splits
    from study.splits import unsplit_line
    from study.trainer import Trainer, fit

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    splits = load_splits(cfg)
    trainer = Trainer(cfg, splits)
    head_params = sum(p.numel() for p in trainer.head.parameters())
    model = f"features of {cfg.data.source}" if cfg.frozen.enabled else cfg.model.backbone
    unit = "rows" if cfg.frozen.enabled else "images"
    print(f"{model} + {cfg.model.head} head on {trainer.device}: {len(trainer.train_data)} training {unit}, "
          f"{len(trainer.eval_data)} {trainer.split_name} {unit}, {head_params:,} head parameters", flush=True)
    if splits.unsplit_classes:
        print(unsplit_line(splits), flush=True)
    for note in trainer.head.notes():  # what the head built other than its knobs asked
        print(f"{cfg.model.head} head: {note}", flush=True)
    last = {}
    for last in fit(cfg, trainer=trainer):
        print(format_epoch(last, cfg.optim.epochs, trainer.split_name), flush=True)
    if last.get("diverged"):
        print(f"training diverged at epoch {last['epoch']} (train_loss={last['train_loss']}); stopped early")
    if cfg.data.final:  # validation and test metrics, computed once after training
        last.update(trainer.validation_metrics())
        last.update(trainer.eval_metrics(trainer.evaluate()))
        print(f"val_loss {last['val_loss']:.4f}  val_acc {100 * last['val_acc']:.2f}%  "
              f"test_loss {last['test_loss']:.4f}  test_acc {100 * last['test_acc']:.2f}%")
    print(json.dumps({"head": cfg.model.head, "backbone": None if cfg.frozen.enabled else cfg.model.backbone,
                      "data": cfg.data.source, "seed": cfg.run.seed,
                      "head_params": head_params, **last}))


if __name__ == "__main__":
    cli.run(main)
