"""Which kind of study a configuration makes, in words, and what it does and does not measure (for the console,
the report and study.json)."""
from study.backbone_recipe import group_count, group_sizes
from study.config import TrainConfig
from study.sources import source_inputs


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def label_words(labels: str, num_classes: int) -> str:
    """What the backbone is trained on, in words, for a dataset of num_classes classes."""
    if labels == "random":
        low, high = group_sizes(num_classes)
        size = str(low) if low == high else f"{low} to {high}"
        return (f"labels of {group_count(num_classes)} fixed random groups of {size} fine "
                f"{'class' if high == 1 else 'classes'} (no superclass, tree layout or metric uses them)")
    if labels == "coarse":
        return ("superclass labels (the top level of the data's class hierarchy, the first level of the hierarchical "
                "head's coarse tree: a bias towards it)")
    return f"{num_classes} fine labels (the ones the heads are compared on: a bias towards a softmax readout)"


def describe(cfg: TrainConfig, num_classes: int) -> str:
    """Which kind of study a configuration makes on a dataset of num_classes classes, and what it does and does
    not measure (for the console, the report and study.json)."""
    from study.backbones import create_backbone

    model = cfg.model
    name = model.backbone + "".join(f"-{v}" for v in model.backbone_knobs.values())
    if not cfg.frozen.enabled:
        return (f"end-to-end study: every head trains the whole {name} backbone with it. It measures each head's "
                "effect on what the network learns, and the head's cost inside a full training step.")
    f = cfg.frozen
    neck = (f", through a trainable {f.neck_width}-unit neck identical for every head" if f.neck_width else "")
    if source_inputs(cfg.data.source) == "features":
        return (f"heads-only study on the feature vectors of {cfg.data.source} ({num_classes} classes): every head "
                f"trains on them{neck}. It measures each head as the classifier on fixed features: accuracy, "
                "calibration and the head's own cost. It does not measure how a head's gradients would shape the "
                "model that made the features.")
    width = create_backbone(model.backbone, **model.backbone_knobs).num_features
    labels = label_words(f.labels, num_classes)
    return (f"frozen-backbone study: {name} trained once ({plural(f.epochs, 'epoch')}, linear softmax on the {labels}, "
            f"training images only), then frozen; every head trains on its {width}-dimensional features{neck}. "
            "It measures each head as the classifier on fixed features: accuracy, calibration and the head's own "
            "cost. It does not measure how a head's gradients would shape a backbone trained with it (the "
            "end-to-end `full` preset does).")
