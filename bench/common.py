"""What every benchmark prints first: the machine it ran on."""

from __future__ import annotations

import os


def hardware() -> str:
    """CPU model, cores, load average, torch threads and GPU, in one line."""
    import torch

    cpu = "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, load {load:.1f}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, {gpu}")
