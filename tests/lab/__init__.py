"""The multi-host lab: hosts as network namespaces (``hosts.py``), each reaching the
database only through a latency- and fault-injecting TCP proxy (``proxy.py``). Used by
``tests/multiprocess/test_partition.py`` and ``benchmarks/lab.py``."""
