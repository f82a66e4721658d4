"""A replica's memory limit enforced by the kernel (``RLIMIT_DATA``), not only by polling.

The supervisor samples each replica's resident memory every poll (0.5 s by default) and kills
it over its limit; between two samples a function can allocate gigabytes (a 2 GB allocation
under a 256 MiB limit reached 776 MB before the kill). So the runtime also hands the limit to
the replica (``MODELYARD_MEMORY_LIMIT_BYTES``), and the replica, once it is up, asks the kernel
to refuse further allocations with ``apply_memory_limit``: a ``malloc``/``mmap`` that would pass
it fails, which Python raises as ``MemoryError`` in the function that asked (answered as that
prediction's error; the replica keeps serving).

Why ``RLIMIT_DATA`` and this formula: ``RLIMIT_AS`` counts every reserved address range
(thread stacks, allocator arenas, shared libraries; a replica with numpy reserves ~700 MB it
never touches), so it would refuse replicas far below their limit. ``RLIMIT_DATA`` (Linux 4.7+)
counts private writable mappings (heap, anonymous ``mmap``, thread stacks), still more than is
resident: numpy alone shows ~160 MB of data for ~27 MB resident. So the limit is set once the
replica is up, to *what it already maps* plus *what its resident memory may still grow by*::

    RLIMIT_DATA = VmData(now) + max(0, limit - VmRSS(now))

New private memory then stops at the limit. What it does not cover, and the polling fallback
still catches (with its overshoot of up to one poll interval of growth): memory already mapped
at that moment but not yet touched (thread stacks, allocator free lists), file-backed and
shared mappings, and imports done at start-up (they run before the limit is set).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from modelyard.errors import InvalidInput

__all__ = ["MEMORY_LIMIT_ENV", "KernelLimit", "apply_memory_limit", "limit_from_env"]

MEMORY_LIMIT_ENV = "MODELYARD_MEMORY_LIMIT_BYTES"


@dataclass(frozen=True, slots=True)
class KernelLimit:
    """What ``apply_memory_limit`` set: the data limit and the figures it came from (bytes)."""

    limit_bytes: int
    data_limit_bytes: int
    data_bytes: int
    rss_bytes: int

    def describe(self) -> str:
        mib = 1024 * 1024
        return (
            f"memory limit {self.limit_bytes // mib} MiB enforced by the kernel: RLIMIT_DATA "
            f"{self.data_limit_bytes // mib} MiB (data now {self.data_bytes // mib} MiB, "
            f"resident {self.rss_bytes // mib} MiB)"
        )


def limit_from_env(environ: dict[str, str] | None = None) -> int | None:
    """The limit the runtime handed over in ``MODELYARD_MEMORY_LIMIT_BYTES`` (None if unset)."""
    raw = (os.environ if environ is None else environ).get(MEMORY_LIMIT_ENV, "")
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise InvalidInput(f"{MEMORY_LIMIT_ENV}={raw!r} is not a memory limit; expected bytes > 0")
    return int(raw)


def _status_bytes(*names: str) -> dict[str, int]:
    found: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in names:
                found[key] = int(value.split()[0]) * 1024  # the kernel writes kB
    missing = [name for name in names if name not in found]
    if missing:
        raise OSError(f"/proc/self/status has no {', '.join(missing)}")
    return found


def apply_memory_limit(limit_bytes: int) -> KernelLimit:
    """Cap this process's further private memory at ``limit_bytes`` resident (see above).

    Soft and hard limit alike, so user code cannot raise it again (unless it runs as root).
    OSError where the kernel offers no ``/proc/self/status`` or refuses the limit; the caller
    then relies on the supervisor's polling alone.
    """
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes <= 0:
        raise InvalidInput(f"limit_bytes={limit_bytes!r} is not a memory limit; expected bytes > 0")
    figures = _status_bytes("VmData", "VmRSS")
    data, rss = figures["VmData"], figures["VmRSS"]
    wanted = data + max(0, limit_bytes - rss)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (wanted, wanted))
    return KernelLimit(limit_bytes, wanted, data, rss)
