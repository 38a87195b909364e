"""How busy the GPUs were while a search ran, sampled with `nvidia-smi` in the background.

nvidia-smi's `utilization.gpu` is the percentage of the last sample period during which at least one kernel ran, so
its mean over a search is the share of that search's wall time the GPU spent computing. Samples are appended to a
CSV as they arrive (nothing held only in memory); on a machine without nvidia-smi the monitor records nothing.
Only this machine's GPUs are seen: on a multi-node cluster the figure covers the node the study was started on.
"""
import shutil
import subprocess
import threading
import time
from pathlib import Path

FIELDS = ("index", "utilization.gpu", "memory.used")  # GPU number, % of time busy, MiB
CSV_HEADER = "time_s,gpu,utilisation_pct,memory_mib\n"


def parse_sample(line: str):
    """'0, 87, 10240' -> (0, 87.0, 10240.0); None for anything else (a '[N/A]' field, a warning line)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != len(FIELDS):
        return None
    try:
        return int(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        return None


class GpuMonitor:
    """Context manager: samples every GPU every `interval_s` seconds until the block ends."""

    def __init__(self, csv_path: Path, interval_s: float = 0.5, command: str = "nvidia-smi", enabled: bool = True):
        self.csv_path = Path(csv_path)
        self.interval_s = interval_s
        self.executable = shutil.which(command) if enabled else None
        self.samples = []  # (seconds since start, gpu, utilisation %, memory MiB)
        self._process = None
        self._reader = None

    @property
    def available(self) -> bool:
        return self.executable is not None

    def __enter__(self):
        if not self.available:
            return self
        self._started = time.monotonic()
        # nvidia-smi as shutil.which found it, with fixed arguments (numbers we format; no shell, no user text).
        self._process = subprocess.Popen(  # noqa: S603
            [self.executable, f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits",
             f"--loop-ms={int(self.interval_s * 1000)}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self):
        new_file = not self.csv_path.exists()
        with open(self.csv_path, "a") as out:
            if new_file:
                out.write(CSV_HEADER)
            for line in self._process.stdout:
                sample = parse_sample(line)
                if sample is None:
                    continue
                row = (round(time.monotonic() - self._started, 3), *sample)
                self.samples.append(row)
                out.write(",".join(str(v) for v in row) + "\n")
                out.flush()

    def __exit__(self, *exc):
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._reader.join(timeout=10)
        return False

    def summary(self):
        """Mean utilisation over the block (all GPUs alike) and peak memory; None when nothing was sampled."""
        if not self.samples:
            return None
        return {"gpu_busy_pct": sum(s[2] for s in self.samples) / len(self.samples),
                "gpu_peak_memory_mib": max(s[3] for s in self.samples),
                "gpus": len({s[1] for s in self.samples}), "samples": len(self.samples),
                "csv": self.csv_path.name}
