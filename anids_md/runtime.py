"""Where and how torch computes: device, floating-point type and CPU threads, resolved in one
place with errors that name the problem."""

from __future__ import annotations

import os
import platform
import shutil

import torch

from .options import DTYPES

TORCH_DTYPES = dict(zip(DTYPES, (torch.float32, torch.float64)))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A usable torch device: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
    A RuntimeError when the device cannot be used here."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise RuntimeError(f"device {str(device)!r} requested, but this torch build has no CUDA support (a CPU build); use device='cpu'")
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} requested, but no CUDA GPU is visible; use device='cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {str(device)!r} requested, but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise RuntimeError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda'")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | None = None) -> torch.dtype:
    """torch dtype of "float32"/"float64" (or a torch dtype). None gives the default for `device`:
    float64 on CPU (smooth MD, tight optimisation), float32 on GPU."""
    if dtype is None:
        return torch.float32 if device is not None and device.type == "cuda" else torch.float64
    if dtype in TORCH_DTYPES.values():
        return dtype
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return TORCH_DTYPES[dtype]


def set_threads(n: int | None) -> None:
    """Set torch's CPU threads (process-wide) when `n` is given. One thread is fastest for
    molecules of tens of atoms (docs/performance.md)."""
    if n is None:
        return
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    torch.set_num_threads(n)


def compiler_found(device: torch.device) -> bool:
    """Whether torch.compile can build kernels for `device`: a C++ compiler on CPU ($CXX, g++,
    c++ or clang++); on CUDA it generates Triton kernels instead."""
    return device.type != "cpu" or any(c and shutil.which(c) for c in (os.environ.get("CXX"), "g++", "c++", "clang++"))


def check_compiler(device: torch.device) -> None:
    """A RuntimeError naming the fix when torch.compile finds no C++ compiler for a CPU run."""
    if not compiler_found(device):
        raise RuntimeError("compile=True on CPU needs a C++ compiler (torch.compile builds C++ kernels) and none was found "
                           "($CXX, g++, c++, clang++); install one (e.g. apt install g++) or use compile=False")


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can still take: free GPU memory on CUDA, Linux's MemAvailable
    on CPU (None where it cannot be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (Linux), or what the platform says."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and core count: a run's record of where it ran."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores"
