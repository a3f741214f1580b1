"""Execution: the NumPy interpreter and the placed program's numbers; the tile-level
discrete-event simulation of a placed program and its latency bound; the PE-level, cycle-by-cycle
simulator of the mesh GEMM that the tile level is checked against."""
