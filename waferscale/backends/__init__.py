"""The machine and the mesh: machine descriptions (WSE-2, WSE-3, custom meshes) with their
sources and our assumptions, mesh kernels (decomposition, SRAM, cost, numerics), lowering of a
graph to kernels and flows, and the data of a lowered, placed and routed program."""
