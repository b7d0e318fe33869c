"""What GPUs this machine has, through NVML (``nvidia-ml-py``), with a fake for tests.

No NVIDIA driver is a normal state (the preview engine, or CPU generation for tiny sets), not an
error: :func:`probe` never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GpuInfo", "GpuProbe", "probe", "fake_probe"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_used: int  # bytes
    memory_total: int  # bytes
    utilization: int  # percent
    temperature: int  # degrees C
    power: float  # watts
    uuid: str = ""


@dataclass
class GpuProbe:
    driver: str | None = None
    cuda_driver: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    problem: str | None = None  # why there is no GPU information, in words

    @property
    def available(self) -> bool:
        return bool(self.gpus)

    def summary(self) -> str:
        if not self.gpus:
            return f"no GPU ({self.problem or 'none found'}): preview engine only, or NSynth on the CPU for tiny sets"
        names = ", ".join(sorted({g.name for g in self.gpus}))
        return f"{len(self.gpus)} GPU{'s' if len(self.gpus) > 1 else ''}: {names} (driver {self.driver})"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe() -> GpuProbe:
    """Read every GPU's name, memory, load, temperature and power. Never raises."""
    try:
        import pynvml
    except ImportError:
        return GpuProbe(problem="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        reason = "no NVIDIA driver" if "LibraryNotFound" in type(exc).__name__ or "Not Found" in str(exc) else str(exc)
        return GpuProbe(problem=reason)
    result = GpuProbe()
    try:
        result.driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            v = pynvml.nvmlSystemGetCudaDriverVersion()
            result.cuda_driver = f"{v // 1000}.{v % 1000 // 10}"
        except pynvml.NVMLError:
            pass

        def read(fn, handle, default):
            """fn(handle), or the default where this GPU does not report it."""
            try:
                return fn(handle)
            except pynvml.NVMLError:
                return default

        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util = read(lambda d: pynvml.nvmlDeviceGetUtilizationRates(d).gpu, h, 0)
            temp = read(lambda d: pynvml.nvmlDeviceGetTemperature(d, pynvml.NVML_TEMPERATURE_GPU), h, 0)
            power = read(lambda d: pynvml.nvmlDeviceGetPowerUsage(d) / 1000.0, h, 0.0)
            uuid = read(lambda d: _text(pynvml.nvmlDeviceGetUUID(d)), h, "")
            result.gpus.append(GpuInfo(i, _text(pynvml.nvmlDeviceGetName(h)), int(mem.used), int(mem.total),
                                       int(util), int(temp), float(power), uuid))
    except pynvml.NVMLError as exc:
        result.problem = f"NVML error: {exc}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    return result


def fake_probe(count: int = 2, name: str = "NVIDIA H100 80GB HBM3", load: int = 87) -> GpuProbe:
    """A fixed probe result for tests and screenshots."""
    gpus = [GpuInfo(i, name, (30 + 5 * i) * 2**30, 80 * 2**30, load - 3 * i, 61 + i, 512.5 - 10 * i, f"GPU-fake-{i}")
            for i in range(count)]
    return GpuProbe(driver="580.65.06", cuda_driver="13.0", gpus=gpus)
