"""What this machine can run, checked before any unit trains: ``check_machine``.

A profile can be valid and still unable to run here: ``device: cuda`` (or ``precision:
tf32``, TensorFloat-32 being a GPU's mode) on a machine whose torch sees no GPU, a GPU index
it does not have, or units too large for its memory. Each used to fail on the workers, once
per unit, after the cluster had started; ``asymlib run`` (when it trains on this machine)
and ``asymlib train`` now refuse the profile first, with a ``ParamsError`` (exit status 2)
that names the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..sections.settings import SectionSettings
from .estimate import unit_memory_bytes
from .params import SECTIONS, ParamsError

__all__ = ["MEMORY_MARGIN", "check_device", "check_machine", "check_memory", "machine_memory"]

#: A run is refused when its units' estimated memory (``estimate.unit_memory_bytes``) is
#: more than this many times the memory there is: only when it clearly cannot fit. The
#: estimate came out up to 1.6 times what a unit's training added to its process (measured
#: on the CPU: a deep-ensemble unit of 32 members of hidden 512 on 3,000 mnist rows, 739 MB
#: estimated, 653 MB measured; a mixture unit of 5 x 32 experts, 281 MB against 172 MB), and
#: it leaves out the process itself (Python, torch and the data: about 0.7 GB).
MEMORY_MARGIN = 2.0


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError


def machine_memory() -> tuple[int, str]:
    """(bytes, what they are) of the memory this process's units may use: the physical RAM,
    or a container's (cgroup's) lower limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    what = "RAM"
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(limit_file).read_text().strip())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        if limit < total:
            total, what = limit, "memory limit (cgroup)"
        break
    return total, what


def check_device(settings: SectionSettings, *, where: str, device_key: str | None = None, here: bool = True) -> None:
    """Refuse tf32 without a CUDA device and, when the units train ``here`` (not on a Dask
    cluster's workers, which ``cluster.check_workers`` checks), a CUDA device that this
    machine's torch cannot give. ``where``: the profile file; ``device_key``: what set the
    device when not the profile (``--device``)."""
    section = settings.SECTION
    key = device_key or f"{section}.device"
    device = torch.device(settings.device)  # the settings allow cpu, cuda and cuda:N only
    if settings.precision == "tf32" and device.type != "cuda":
        raise ParamsError(
            f"{where}: {section}.precision is 'tf32' (TensorFloat-32, a GPU's mode), which needs a CUDA device, "
            f"but {key} is {settings.device!r}; use float32 or bf16 on the CPU"
        )
    if device.type != "cuda" or not here:
        return
    if not torch.cuda.is_available():
        raise ParamsError(
            f"{where}: {key} is {settings.device!r}, but this machine's torch ({torch.__version__}) sees no CUDA "
            "device; train on a GPU machine, or use device: cpu"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        names = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise ParamsError(
            f"{where}: {key} is {settings.device!r}, but this machine has {count} CUDA "
            f"device{'s' if count != 1 else ''} ({names})"
        )


def _shape(settings: SectionSettings, coordinates: dict) -> str:
    if settings.SECTION == "deep_ensembles":
        return f"members {settings['members']} x hidden_sizes {coordinates['hidden']}"
    return f"repeats {settings['repeats']} x experts {coordinates['experts']} x hidden {settings['hidden']}"


def check_memory(
    settings: Mapping[str, SectionSettings],
    datasets: Mapping[str, Sequence[str]],
    *,
    where: str,
    at_once: int,
    pooled: bool,
) -> None:
    """Refuse units that clearly cannot fit in memory, ``at_once`` at a time: the largest
    ones of each section (``pooled``: of all sections together, as ``asymlib train``
    mixes them), on the GPU's memory for a CUDA device, else on the machine's."""
    groups: dict[str, list[tuple[int, str, str, dict]]] = {}
    for name, section_settings in settings.items():
        sizes = groups.setdefault("all" if pooled else name, [])
        for dataset in datasets[name]:
            for unit, coordinates in SECTIONS[name].grid(section_settings, dataset).items():
                sizes.append((unit_memory_bytes(name, section_settings, dataset, coordinates), unit, name, coordinates))
    for sizes in groups.values():
        largest = sorted(sizes, key=lambda entry: -entry[0])[:at_once]
        if not largest:
            continue
        need = sum(entry[0] for entry in largest)
        size, unit, name, coordinates = largest[0]
        device = torch.device(settings[name].device)
        if device.type == "cuda":
            index = device.index or 0
            total = torch.cuda.get_device_properties(index).total_memory
            what = f"memory on {settings[name].device} ({torch.cuda.get_device_name(index)})"
        else:
            total, what = machine_memory()
        if need > MEMORY_MARGIN * total:
            together = f"; {len(largest)} units at once about {_size(need)}" if len(largest) > 1 else ""
            raise ParamsError(
                f"{where}: {name} unit {unit} ({_shape(settings[name], coordinates)}) needs about {_size(size)} "
                f"of memory{together} (parameters with their gradients and AdamW state, a batch's activations, "
                f"the data), far more than this machine's {_size(total)} of {what}; use fewer members, "
                "smaller hidden sizes or fewer experts, or fewer units at once"
            )


def check_machine(
    settings: Mapping[str, SectionSettings],
    datasets: Mapping[str, Sequence[str]],
    *,
    where: str,
    at_once: int,
    pooled: bool = False,
    device_key: str | None = None,
) -> None:
    """Every check of this machine before a unit trains here: each section's device (and
    tf32) and the memory of the largest units of ``datasets``, ``at_once`` at a time.
    ``where``: the profile file; ``device_key``: what set the device when not the profile
    (``--device``)."""
    for section_settings in settings.values():
        check_device(section_settings, where=where, device_key=device_key)
    check_memory(settings, datasets, where=where, at_once=at_once, pooled=pooled)
