"""The machine a run happened on: CPU, cores, memory, load, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "keras", "tensorflow", "tf_keras", "tf2onnx", "h5py",
             "numpy", "protobuf")


def describe() -> dict:
    """A dict with ``summary`` (one line), ``load`` and the pieces, read without importing any framework."""
    cpu = _cpu_model()
    cores = os.cpu_count()
    ram = _memory_gb()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    summary = (f"{cpu}, {cores} cores, {ram:.0f} GB RAM; Python {platform.python_version()}, {versions}")
    return {"summary": summary, "load": load, "cpu": cpu, "cores": cores, "ram_gb": ram}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(name: str) -> str:
    for dist in (name, name.replace("_", "-"), f"{name}-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "absent"
