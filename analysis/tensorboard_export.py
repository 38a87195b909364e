"""TensorBoard views of the final models: per-epoch training curves, hparams with test metrics, confusion images."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch.utils.tensorboard import SummaryWriter

HPARAM_METRICS = ["accuracy", "top5_accuracy", "f1_macro", "nll", "ece", "median_epoch_time_s"]


def scalar_or_text(value):
    return value if isinstance(value, (int, float, bool, str)) else str(value)


def export(out_dir: Path, per_seed, records: dict, confusion_pngs: dict) -> None:
    """records: {(head, seed): record json}; confusion_pngs: {head: path of its confusion-matrix PNG}."""
    for _, row in per_seed.iterrows():
        head, seed = row["head"], int(row["seed"])
        record = records[(head, seed)]
        with SummaryWriter(str(Path(out_dir) / head / f"seed{seed}")) as writer:
            for epoch in record["history"]:
                for key in ("train_loss", "epoch_time_s", "head_time_s", "images_per_s"):
                    if epoch.get(key) is not None and np.isfinite(epoch[key]):
                        writer.add_scalar(f"final/{key}", epoch[key], epoch["epoch"])
            config = record["config"]
            hparams = {"head": head, "seed": seed, "lr": config["optim"]["lr"],
                       "weight_decay": config["optim"]["weight_decay"],
                       **{f"knob/{k}": scalar_or_text(v) for k, v in config["model"]["head_knobs"].items()}}
            metrics = {f"test/{m}": float(row[m]) for m in HPARAM_METRICS if np.isfinite(row[m])}
            writer.add_hparams(hparams, metrics, run_name=".")
    for head, png in confusion_pngs.items():
        with SummaryWriter(str(Path(out_dir) / head)) as writer:
            image = plt.imread(png)[..., :3]  # RGBA -> RGB, floats in [0, 1]
            writer.add_image("test/confusion_matrix", image, dataformats="HWC")
