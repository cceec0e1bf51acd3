"""Many GPU hosts on the Prometheus the fleet already runs: the exporter and the fleet reader.

Plain Python, no Textual. :mod:`gpudock.fleet.metrics` names every series gpudock exports and the
dcgm-exporter series it reads; :mod:`gpudock.fleet.exporter` turns one host's poll (a
``HostSnapshot`` and its holders map) and its doctor findings into those series;
:mod:`gpudock.fleet.hpc` writes dcgm-exporter's HPC job mapping files; :mod:`gpudock.fleet.reader`
reads hosts x GPUs back from the Prometheus HTTP API in one query.
"""
