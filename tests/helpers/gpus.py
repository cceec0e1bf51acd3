"""Hand-built HostSnapshots for launcher tests: minors deliberately differ from NVML indices."""

from __future__ import annotations

from gpudock.model import Gpu, HostSnapshot

UUIDS = (
    "GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01",
    "GPU-a81c77d0-3e5f-4b6a-9c2d-1e0f2a3b4c02",
    "GPU-a81c0000-3e5f-4b6a-9c2d-1e0f2a3b4c03",
    "GPU-77c0ffee-0b1c-4d2e-8f3a-4b5c6d7e8f04",
)
BUS = ("00000000:05:00.0", "00000000:0A:00.0", "00000000:18:00.0", "00000000:3B:00.0")
MINORS = (3, 0, 1, 2)  # the card at 0000:05:00.0 is /dev/nvidia3, as on real boards


def shuffled_host(driver: str = "535.129.03", cuda: str = "12.2") -> HostSnapshot:
    """Four cards whose minors are not their indices (index 0 is /dev/nvidia3)."""
    gpus = tuple(
        Gpu(
            index=i,
            uuid=UUIDS[i],
            name="NVIDIA A100-SXM4-80GB",
            pci_bus_id=BUS[i],
            minor=MINORS[i],
            memory_total_mib=81920,
            memory_used_mib=1000 * i,
            power_w=100.0 + i,
            power_limit_w=400.0,
            temperature_c=40 + i,
            utilization_gpu=10 * i,
            utilization_memory=i,
        )
        for i in range(4)
    )
    return HostSnapshot(driver, cuda, f"12.{driver}", gpus)


def plugin_host() -> HostSnapshot:
    """The plugin documentation's host: driver 387.26, minors equal to indices."""
    gpus = tuple(Gpu(index=i, uuid=UUIDS[i], pci_bus_id=BUS[i], minor=i) for i in range(4))
    return HostSnapshot("387.26", "9.1", None, gpus)
