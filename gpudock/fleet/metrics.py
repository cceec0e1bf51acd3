"""The names of the series gpudock exports, and of the dcgm-exporter series the fleet view reads.

One place for both sides (the exporter writes these names, the reader queries them), so they
cannot drift apart. Per-GPU series carry dcgm-exporter's own labels (``gpu`` index, ``UUID``,
``pci_bus_id`` in NVML's form, ``device``, ``modelName``) plus ``hostname``, so that a query joins
them with dcgm-exporter's on ``UUID`` (globally unique) and the host::

    DCGM_FI_DEV_GPU_UTIL * on(UUID) group_left(container) gpudock_gpu_holder_info

gpudock's ``device`` is ``nvidia<minor>`` (the ``/dev`` node, which is not always the index);
dcgm-exporter's is ``nvidia<DCGM GPU id>``: join on ``UUID``, never on ``device``.
"""

from __future__ import annotations

PREFIX = "gpudock_"

# -- per GPU (labels: GPU_LABELS)
GPU_INFO = "gpudock_gpu_info"  # 1; + minor
UTILIZATION = "gpudock_gpu_utilization_percent"
MEMORY_UTILIZATION = "gpudock_gpu_memory_utilization_percent"
MEMORY_USED = "gpudock_gpu_memory_used_bytes"
MEMORY_TOTAL = "gpudock_gpu_memory_total_bytes"
TEMPERATURE = "gpudock_gpu_temperature_celsius"
POWER = "gpudock_gpu_power_watts"
POWER_LIMIT = "gpudock_gpu_power_limit_watts"
GPU_ERROR = "gpudock_gpu_error_info"  # 1 while NVML answers an error for this GPU; + error

# -- MIG devices (labels: MIG_LABELS)
MIG_INFO = "gpudock_mig_device_info"
MIG_MEMORY_USED = "gpudock_mig_memory_used_bytes"
MIG_MEMORY_TOTAL = "gpudock_mig_memory_total_bytes"

# -- who holds each GPU, and what runs on it
HOLDER = "gpudock_gpu_holder_info"  # 1 per (GPU, running container holding it)
PROCESS_MEMORY = "gpudock_process_gpu_memory_bytes"

# -- the host
DRIVER = "gpudock_driver_info"  # 1; driver_version, cuda_driver_version, nvml_version, source
NVML_UP = "gpudock_nvml_up"
NVML_ERROR = "gpudock_nvml_error_info"
DOCKER_UP = "gpudock_docker_up"
DOCTOR_FINDING = "gpudock_doctor_finding_info"  # 1 per finding; id, severity, title
DOCTOR_LAST_RUN = "gpudock_doctor_last_run_timestamp_seconds"
LAST_POLL = "gpudock_exporter_last_poll_timestamp_seconds"
POLL_DURATION = "gpudock_exporter_poll_duration_seconds"
POLL_ERRORS = "gpudock_exporter_poll_errors"  # a counter: exposed as ..._total

HOST_LABEL = "hostname"
GPU_LABELS = ("hostname", "gpu", "UUID", "pci_bus_id", "device", "modelName")
MIG_LABELS = ("hostname", "gpu", "UUID", "GPU_I_ID", "GPU_I_PROFILE", "mig_uuid")
HOLDER_LABELS = (
    "hostname",
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "minor",
    "container",
    "container_id",
    "image",
    "mechanism",
    "mig_uuids",
)
PROCESS_LABELS = ("hostname", "gpu", "UUID", "pid", "container", "container_id", "container_pid", "mig_uuid")

# -- dcgm-exporter (default counters); the host label is "Hostname" before its 4.x late
# releases and "hostname" after: the reader accepts both.
DCGM_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # %
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
DCGM_FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB
DCGM_TEMP = "DCGM_FI_DEV_GPU_TEMP"  # C
DCGM_POWER = "DCGM_FI_DEV_POWER_USAGE"  # W
DCGM_XID = "DCGM_FI_DEV_XID_ERRORS"  # the last Xid seen
DCGM_HOST_LABELS = ("hostname", "Hostname")

# The port `gpudock exporter` listens on by default (dcgm-exporter has 9400; Prometheus's list of
# exporter ports, 9100-9999, is full, so gpudock takes one outside it).
DEFAULT_PORT = 10940
