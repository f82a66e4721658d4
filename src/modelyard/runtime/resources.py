"""Local resources: CPU and memory limits for process groups, and GPUs handed out exclusively.

CPU limits (``ReplicaSpec.cpus``, ``RunSpec.cpus``) are enforced, not only recorded:

- ``cgroup``: where a cgroup v2 hierarchy is mounted, this process's own cgroup delegates the
  ``cpu`` controller to its children and the folder is writable, each replica or run gets a
  child cgroup ``modelyard-<name>`` with ``cpu.max`` = ``cpus x 100 ms`` per 100 ms (fractions
  work: 0.5 is half a CPU), and ``memory.max`` when the ``memory`` controller is delegated too.
- ``affinity``: otherwise (cgroup v1 machines, containers without delegation) the process is
  pinned with ``sched_setaffinity`` to ``ceil(cpus)`` CPUs, the least used ones first: a cap in
  whole CPUs (``cpus=0.5`` gets one CPU), shared with other pinned processes when there are
  more asks than CPUs.

``CpuLimiter.detect()`` picks one and says which (``method``; logged at start, shown by
``modelyard cluster``). Limits are applied right after the process is spawned, by pid, before
the child can have started anything of its own (the interpreter is still starting); what it
forks afterwards inherits them.

GPUs are found through NVML (``nvidia-ml-py``, imported only if installed) or ``nvidia-smi``,
behind one boundary: ``GpuPool(devices=...)`` takes a list (or a function returning one)
instead, which is how the tests run on machines without a GPU. A replica or run asking for
``gpus=N`` gets N free devices of its ``accelerator`` type (matched case-insensitively against
the device name) in ``CUDA_VISIBLE_DEVICES``, exclusively until it stops; one asking for none
gets ``CUDA_VISIBLE_DEVICES=""`` on a machine that has GPUs, so it cannot take one by accident.
An ask more than the machine has is refused (``InvalidInput``); one that has to wait for
devices others hold gets ``GpusBusy`` naming how many exist and who holds them, and the caller
waits (replicas and runs retry on their own).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.errors import Conflict, InvalidInput

__all__ = [
    "CPU_PERIOD_US",
    "CpuLimiter",
    "GpuDevice",
    "GpuPool",
    "GpusBusy",
    "LocalResources",
    "discover_gpus",
    "find_cgroup_v2",
    "parse_nvidia_smi",
]

log = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000
_CGROUP_PREFIX = "modelyard-"


# -- CPU and memory limits ---------------------------------------------------------------------


def find_cgroup_v2(
    mountinfo: Path = Path("/proc/self/mountinfo"), own: Path = Path("/proc/self/cgroup")
) -> tuple[Path | None, str]:
    """This process's cgroup v2 folder if it can hold limited children, else None; and why.

    Needs a ``cgroup2`` mount, the ``0::`` line of ``/proc/self/cgroup``, ``cpu`` in the
    folder's ``cgroup.subtree_control`` (delegated to children) and write access.
    """
    try:
        mounts = mountinfo.read_text().splitlines()
        lines = own.read_text().splitlines()
    except OSError as exc:
        return None, f"cannot read {mountinfo} or {own}: {exc}"
    mount = next((ln.split()[4] for ln in mounts if " - cgroup2 " in ln), None)
    path = next((ln[3:] for ln in lines if ln.startswith("0::")), None)
    if mount is None or path is None:
        return None, "no cgroup v2 hierarchy is mounted for this process"
    folder = Path(mount) / path.lstrip("/")
    try:
        delegated = (folder / "cgroup.subtree_control").read_text().split()
    except OSError as exc:
        return None, f"cannot read {folder}/cgroup.subtree_control: {exc}"
    if "cpu" not in delegated:
        return None, f"{folder} does not delegate the cpu controller to its children"
    if not os.access(folder, os.W_OK):
        return None, f"{folder} is not writable by this user"
    return folder, f"cgroup v2 at {folder}"


@dataclass
class CpuLimiter:
    """Applies CPU (and, with cgroups, memory) limits to spawned processes; see the module doc.

    ``method`` is ``cgroup`` or ``affinity``; ``cgroup_root`` the folder child cgroups go in;
    ``cpus`` the CPUs this process may use (affinity hands out from these).
    """

    method: str
    reason: str
    cgroup_root: Path | None = None
    cpus: tuple[int, ...] = ()
    memory: bool = False
    _pinned: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def detect(cls, cgroup: tuple[Path | None, str] | None = None) -> CpuLimiter:
        """The best method this machine allows (``cgroup`` to pass ``find_cgroup_v2``'s
        answer, for tests)."""
        folder, why = cgroup if cgroup is not None else find_cgroup_v2()
        cpus = tuple(sorted(os.sched_getaffinity(0)))
        if folder is not None:
            try:
                memory = "memory" in (folder / "cgroup.subtree_control").read_text().split()
            except OSError:
                memory = False
            limiter = cls("cgroup", why, folder, cpus, memory)
        else:
            limiter = cls("affinity", f"CPU affinity ({why})", None, cpus)
        log.info("CPU limits are enforced by %s: %s", limiter.method, limiter.reason)
        return limiter

    def describe(self) -> str:
        if self.method == "cgroup":
            return f"cgroup v2 cpu.max under {self.cgroup_root}"
        return f"CPU affinity over CPUs {list(self.cpus)} (whole CPUs)"

    def apply(
        self, name: str, pid: int, cpus: float | None, memory_bytes: int | None = None
    ) -> dict[str, object]:
        """Limit process ``pid`` (just spawned) for ``name``; what was applied, for the log.

        Memory is only applied here with cgroups; callers poll resident memory otherwise.
        An error is logged and the process keeps running unlimited (never half-started).
        """
        if cpus is None and (memory_bytes is None or self.method != "cgroup"):
            return {}
        try:
            if self.method == "cgroup":
                return self._apply_cgroup(name, pid, cpus, memory_bytes)
            return self._apply_affinity(name, pid, cpus or 0)
        except OSError as exc:
            log.warning("could not limit %s (pid %s) by %s: %s", name, pid, self.method, exc)
            return {"error": f"{exc.__class__.__name__}: {exc}"}

    def pinned(self, name: str) -> tuple[int, ...]:
        with self._lock:
            return self._pinned.get(name, ())

    def release(self, name: str) -> None:
        """Forget ``name``'s CPUs and remove its (empty) cgroup; call after its group is gone."""
        with self._lock:
            self._pinned.pop(name, None)
        if self.method == "cgroup" and self.cgroup_root is not None:
            with contextlib.suppress(OSError):  # still busy or already gone
                (self.cgroup_root / f"{_CGROUP_PREFIX}{name}").rmdir()

    def _apply_cgroup(
        self, name: str, pid: int, cpus: float | None, memory_bytes: int | None
    ) -> dict[str, object]:
        assert self.cgroup_root is not None
        group = self.cgroup_root / f"{_CGROUP_PREFIX}{name}"
        group.mkdir(exist_ok=True)
        applied: dict[str, object] = {"method": "cgroup", "cgroup": str(group)}
        if cpus is not None:
            quota = max(1000, round(cpus * CPU_PERIOD_US))
            (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}\n")
            applied["cpu.max"] = f"{quota} {CPU_PERIOD_US}"
        if memory_bytes is not None and self.memory:
            (group / "memory.max").write_text(f"{memory_bytes}\n")
            applied["memory.max"] = memory_bytes
        (group / "cgroup.procs").write_text(f"{pid}\n")
        return applied

    def _apply_affinity(self, name: str, pid: int, cpus: float) -> dict[str, object]:
        with self._lock:
            self._pinned.pop(name, None)
            use: dict[int, int] = dict.fromkeys(self.cpus, 0)
            for held in self._pinned.values():
                for cpu in held:
                    if cpu in use:
                        use[cpu] += 1
            count = min(len(self.cpus), max(1, math.ceil(cpus)))
            chosen = tuple(sorted(sorted(use, key=lambda c: (use[c], c))[:count]))
            self._pinned[name] = chosen
        os.sched_setaffinity(pid, chosen)
        return {"method": "affinity", "cpus": list(chosen)}


# -- GPUs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU: ``id`` is its index as ``CUDA_VISIBLE_DEVICES`` takes it."""

    id: str
    name: str
    memory_bytes: int | None = None
    uuid: str | None = None


class GpusBusy(Conflict):
    """The GPUs asked for exist but others hold them now; the caller waits and asks again."""


def _nvml() -> list[GpuDevice] | None:
    try:
        nvml = importlib.import_module("pynvml")  # nvidia-ml-py, only if installed
    except ImportError:
        return None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError: no driver, no device
        log.info("NVML found no GPU: %s", exc)
        return None
    try:
        found = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            found.append(GpuDevice(str(index), name, memory, uuid))
        return found
    finally:
        nvml.nvmlShutdown()


def _nvidia_smi() -> list[GpuDevice]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "--query-gpu=index,uuid,name,memory.total"
    try:
        out = subprocess.run(
            [exe, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi found no GPU: %s", exc)
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out: str) -> list[GpuDevice]:
    """Devices from ``nvidia-smi --query-gpu=index,uuid,name,memory.total`` CSV (MiB).

    >>> parse_nvidia_smi("0, GPU-1a, Tesla T4, 15360\\n")
    [GpuDevice(id='0', name='Tesla T4', memory_bytes=16106127360, uuid='GPU-1a')]
    """
    found = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        memory = int(parts[3]) * 1024 * 1024 if parts[3].isdigit() else None
        found.append(GpuDevice(parts[0], parts[2], memory, parts[1] or None))
    return found


def discover_gpus() -> list[GpuDevice]:
    """The GPUs of this machine: NVML if ``nvidia-ml-py`` is installed, else ``nvidia-smi``,
    else none. A ``CUDA_VISIBLE_DEVICES`` set for the server limits it to those devices."""
    devices = _nvml()
    if devices is None:
        devices = _nvidia_smi()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        allowed = {v.strip() for v in visible.split(",") if v.strip()}
        devices = [d for d in devices if d.id in allowed or (d.uuid or "") in allowed]
    return devices


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


class GpuPool:
    """This machine's GPUs and who holds each; hands them out exclusively (thread-safe).

    ``devices`` is the injectable boundary: a list, or a function returning one; None:
    ``discover_gpus`` (run once, on first use).

    >>> pool = GpuPool([GpuDevice("0", "Tesla T4"), GpuDevice("1", "A100")])
    >>> pool.acquire("replica r1", 1, "a100")
    ('1',)
    >>> pool.acquire("run x", 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelyard.runtime.resources.GpusBusy: run x asks for 2 GPUs but 1 of 2 is free; GPU 1 ...
    """

    def __init__(
        self, devices: Sequence[GpuDevice] | Callable[[], Sequence[GpuDevice]] | None = None
    ) -> None:
        self._source = devices
        self._devices: list[GpuDevice] | None = None
        self._held: dict[str, str] = {}  # device id -> holder
        self._lock = threading.Lock()

    def devices(self) -> list[GpuDevice]:
        with self._lock:
            return list(self._known())

    def holders(self) -> dict[str, str]:
        """Device id -> who holds it."""
        with self._lock:
            return dict(self._held)

    def held_by(self, holder: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(d for d, h in self._held.items() if h == holder)

    def acquire(self, holder: str, count: int, accelerator: str | None = None) -> tuple[str, ...]:
        """``count`` free devices (of ``accelerator`` type) for ``holder``, all or none.

        InvalidInput when the machine never could (fewer such devices exist); GpusBusy when
        others hold them now. A holder asking again gets what it already holds.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(
                f"{holder}: gpus={count!r} is not accepted; expected an integer >= 0"
            )
        if count == 0:
            return ()
        with self._lock:
            devices = self._known()
            kind = [d for d in devices if _matches(d, accelerator)]
            mine = tuple(d.id for d in kind if self._held.get(d.id) == holder)
            if len(mine) >= count:
                return mine[:count]
            what = _describe(count, accelerator)
            _check_total(holder, devices, kind, count, accelerator)
            free = [d for d in kind if d.id not in self._held]
            if len(free) < count:
                held = "; ".join(
                    f"GPU {d.id} ({d.name}) is held by {self._held[d.id]}"
                    for d in kind
                    if d.id in self._held
                )
                verb = "is" if len(free) == 1 else "are"
                raise GpusBusy(
                    f"{holder} asks for {what} but {len(free)} of {len(kind)} {verb} free; "
                    f"{held}; it waits until they are released"
                )
            chosen = tuple(d.id for d in free[:count])
            for device in chosen:
                self._held[device] = holder
            return chosen

    def check(self, holder: str, count: int, accelerator: str | None = None) -> None:
        """InvalidInput when this machine never could give ``holder`` ``count`` GPUs."""
        if count:
            with self._lock:
                devices = self._known()
                kind = [d for d in devices if _matches(d, accelerator)]
                _check_total(holder, devices, kind, count, accelerator)

    def release(self, holder: str) -> None:
        with self._lock:
            for device in [d for d, h in self._held.items() if h == holder]:
                del self._held[device]

    def visible_env(self, ids: Sequence[str]) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` for a process holding ``ids``: those, or "" (none) on a
        machine that has GPUs; nothing on one that has none."""
        if ids:
            return {"CUDA_VISIBLE_DEVICES": ",".join(ids)}
        return {"CUDA_VISIBLE_DEVICES": ""} if self.devices() else {}

    def _known(self) -> list[GpuDevice]:
        if self._devices is None:
            source = self._source
            if source is None:
                found: Sequence[GpuDevice] = discover_gpus()
            elif callable(source):
                found = source()
            else:
                found = source
            self._devices = list(found)
        return self._devices


def _describe(count: int, accelerator: str | None) -> str:
    return _plural(count, "GPU") + (f" of type {accelerator!r}" if accelerator else "")


def _check_total(
    holder: str,
    devices: Sequence[GpuDevice],
    kind: Sequence[GpuDevice],
    count: int,
    accelerator: str | None,
) -> None:
    if len(kind) < count:
        have = ", ".join(f"GPU {d.id} ({d.name})" for d in devices) or "none"
        raise InvalidInput(
            f"{holder} asks for {_describe(count, accelerator)} but this machine has "
            f"{len(kind)} such (all GPUs: {have}); ask for at most {len(kind)}, or run it on "
            "a runtime with more (--runtime ray)"
        )


def _matches(device: GpuDevice, accelerator: str | None) -> bool:
    if not accelerator:
        return True
    return accelerator.lower().replace("nvidia-", "") in device.name.lower()


@dataclass
class LocalResources:
    """What the local runtime hands out: CPU/memory limits and GPUs (both injectable)."""

    cpu: CpuLimiter
    gpus: GpuPool

    @classmethod
    def detect(cls, gpus: GpuPool | None = None) -> LocalResources:
        return cls(CpuLimiter.detect(), gpus if gpus is not None else GpuPool())
