"""Throughput benchmarks (`sslflow bench ...`): measured on the current machine, printed, optionally saved."""
