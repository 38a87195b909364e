"""The study's own table, printed when every head's search has finished (the analysis then reports test
metrics)."""
import math

from study.search.rundir import RunDir


def print_report(run: RunDir, summaries) -> None:
    import pandas as pd

    rows = []
    several = any(s.get("search", 0) for s in summaries)  # summaries made before searches were numbered have none
    for s in summaries:
        best = s["best"] or {}
        finished = sum(t["status"] == "ok" for t in s["trials"])
        number = {"search": s.get("search", 0) + 1} if several else {}
        rows.append({"head": s["head"], **number, "trials ok": f"{finished}/{len(s['trials'])}",
                     "best val_acc": f"{100 * best['last_val_acc']:.2f}%" if best else "none",
                     "epoch s (shared)": f"{best['median_epoch_time_s']:.2f}" if best else "",
                     "search wall s": f"{s['wall_s']:.0f}",
                     "peak concurrent": s["peak_concurrent_trials"],
                     "trial setup s": f"{s['median_setup_s']:.2f}" if s["median_setup_s"] is not None else "",
                     **gpu_columns(s.get("gpu")), **node_columns(s.get("trials_per_node")),
                     "best params": ", ".join(f"{k}={format_value(v)}" for k, v in (best.get("params") or {}).items())})
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))
    per = "search" if several else "head"
    print(f"\nbest trial per {per}: highest val_acc at the trial's last epoch (in {run.summary_file('<head>')}"
          + (f", {run.summary_file('<head>-search<n>')}" if several else "") + ")")
    print("epoch s (shared): median epoch of the best trial while other trials shared its device; the analysis "
          "measures costs alone")
    print(f"TensorBoard: tensorboard --logdir {run.path}")
    print(f"Optuna:      optuna-dashboard {run.optuna_url}")


def gpu_columns(gpu) -> dict:
    """Mean GPU utilisation and peak memory during the head's search, when GPUs were sampled
    (study/search/gpu_monitor.py)."""
    if not gpu:
        return {}
    return {"GPU busy %": f"{gpu['gpu_busy_pct']:.0f}", "GPU peak MiB": f"{gpu['gpu_peak_memory_mib']:.0f}"}


def node_columns(trials_per_node) -> dict:
    """How many of a cluster's nodes ran the head's trials (shown only when more than one did)."""
    if not trials_per_node or len(trials_per_node) < 2:
        return {}
    return {"nodes": len(trials_per_node)}


def format_value(value):
    return f"{value:.3g}" if isinstance(value, float) and math.isfinite(value) else str(value)
