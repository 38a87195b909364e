"""Timers for synchronised regions: CUDA events on a GPU (no host sync until read), perf_counter on the CPU; and
the torch threads a timed or trained task runs with."""
import contextlib
import math
import time
from typing import Optional

import torch


@contextlib.contextmanager
def torch_threads(count: Optional[int]):
    """torch's intra-op threads set to `count` inside the block and put back after it (count None or 0: left as
    they are). A Ray worker process runs one task after another: a count left behind by one task (the timing
    protocol's, a thread per core) oversubscribed the cores for the next (two runs side by side on 2 cores, one of
    them with 2 threads, made the convergence check's epochs 1.5 to 5 times slower)."""
    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RegionTimer:
    """Sums the time spent between start() and stop() calls, in seconds.

    On a GPU it records CUDA events and reads them once, at seconds(); `event` and `synchronize` default to
    torch.cuda's and are there so tests can drive the GPU path on a CPU with fakes."""

    def __init__(self, device: torch.device, event=None, synchronize=None):
        self.cuda = device.type == "cuda"
        self.event = event or (lambda: torch.cuda.Event(enable_timing=True))
        self.synchronize = synchronize or torch.cuda.synchronize
        self.reset()

    def reset(self):
        self.events, self.cpu_seconds, self.started = [], 0.0, None

    def start(self):
        if self.cuda:
            begin = self.event()
            begin.record()
            self.started = begin
        else:
            self.started = time.perf_counter()

    def stop(self):
        if self.cuda:
            end = self.event()
            end.record()
            self.events.append((self.started, end))
        else:
            self.cpu_seconds += time.perf_counter() - self.started

    def seconds(self) -> float:
        if not self.cuda:
            return self.cpu_seconds
        self.synchronize()
        return sum(begin.elapsed_time(end) for begin, end in self.events) / 1000.0  # events measure ms


def steady_median(per_epoch_seconds) -> float:
    """The one definition of a run's median epoch (or head) time: the median (mean of the two middle values for an
    even count) of the epochs after the first, which pays for warm-up (allocation, kernel selection, caches). A
    run of one epoch has only that one. Values are per epoch in order (None where an epoch has none). NaN when
    there is no value."""
    per_epoch = list(per_epoch_seconds)
    steady = [float(v) for v in (per_epoch[1:] if len(per_epoch) > 1 else per_epoch)
              if v is not None and not math.isnan(v)]
    if not steady:
        return float("nan")
    steady.sort()
    middle = len(steady) // 2
    return steady[middle] if len(steady) % 2 else (steady[middle - 1] + steady[middle]) / 2


# Instruction sets that change how fast a CPU trains (wider vectors, bf16 and int8 dot products, matrix units).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_model() -> tuple:
    """(model name, [instruction sets of CPU_FEATURES it has]) read from /proc/cpuinfo, else what platform says."""
    import platform

    name, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name is None:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [f for f in CPU_FEATURES if f in flags]


def describe_device(device: torch.device) -> dict:
    """What a cost was measured on: costs from different processors, core counts or thread counts do not compare."""
    import os

    threads = torch.get_num_threads()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return {"type": "cuda", "name": name, "threads": threads, "text": f"{name} (GPU)"}
    name, features = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = (f"{name}, {cores} core(s) usable, {threads} thread(s)"
            + (f", {'/'.join(features)}" if features else ""))
    return {"type": "cpu", "name": name, "cores": cores, "threads": threads, "features": features, "text": text}
