"""Every figure of the machine model that no public source gives: our modelling assumptions.

They live here, in one place, so that a user of the simulator can see what is assumed rather
than measured, and change it. Each name says what it stands for; each comment says why we
picked the number. Sourced facts live in ``machine.py``.
"""

# WSE-3 clock. The WSE-2's 1.1 GHz is published (Hot Chips 34; machine.py); the WSE-3's is not,
# and we assume the same.
WSE3_CLOCK_HZ = 1.1e9
# WSE-3 f32 FMACs per cycle: not published; we assume a WSE-2's ratio of f32 to f16 lanes (1 : 4).
WSE3_F32_FMACS = 2.0

# Fabric latency. One cycle per hop: "PE-to-PE communication latency is also one cycle" (Cerebras,
# The Cerebras SDK: A Technical Overview, 2022, p. 3). The router pipeline depth is not published,
# so each route between kernels also pays a fixed delay at its ramps; not calibrated (no published
# kernel measurement crosses kernels).
HOP_CYCLES = 1
ROUTER_DELAY_CYCLES = 2

# One fabric wavelet carries 32 bits. We assume one tensor element per wavelet whatever its
# dtype (an f16 travels in the low half), as in the SDK's simple examples; packing two f16 per
# wavelet would double the fabric rate of f16 flows.
ELEMENTS_PER_WAVELET = 1

# Compute. A core's FMAC lanes run along the innermost (output-feature) dimension of its tile: a
# row of n outputs takes ceil(n / lanes) cycles, or longer where the SRAM ports cannot feed the
# lanes (datapath.py). What each instruction costs beyond that (the vector issue, the task start,
# the partial sums' add, loops, scalar loads) is the cost table of costs.py, each with its source or fit.
# The dtype each operand dtype accumulates in (datapath.py). f16 products accumulate in f16 (the
# FMACH instruction: 4 lanes fed exactly by the SRAM ports); f32 in f32. The NumPy numbers of the
# placed run accumulate in f32 whatever this says: it sets only the cost.
ACCUMULATOR = {"f16": "f16", "f32": "f32"}
# Quantised weights (passes/quantize.py). No Cerebras source gives a WSE core an int8, int4 or fp8
# FMAC rate (Hot Chips 34 and the SDK name FP16 and FP32 FMACs; searched for issue 30). We assume the
# weights are dequantised to f16 in the datapath: for each arriving element of A, one more vector
# instruction multiplies the tile row's codes by their scales into an f16 row in SRAM (a core has no
# vector registers), which the AXPY then reads, at the f16 FMAC rate. The codes save SRAM and streamed
# bytes; on the mesh they cost an extra instruction per weight row read (datapath.py ``dequant``).
DEQUANTIZE_IN_DATAPATH = True
# Non-matmul element work (add, gelu, exp, normalization): elements per cycle per core, as a
# fraction of the FMAC lanes. Transcendentals are assumed to cost 4 lane-cycles each.
ELEMENTWISE_LANE_FRACTION = 1.0
TRANSCENDENTAL_CYCLES = 4

# SRAM reserved on every core for code, the task table and the stack, so not usable for tensors.
# Sourced: a PE's code lives in its own memory beside its data ("Each PE has its own memory (used by
# it and no other) and its own program counter. It has its own executable code in its memory":
# Cerebras SDK docs, "A Conceptual View", sdk.cerebras.net/computing-with-cerebras), the 48 KB of
# machine.py ("The 48 KB of memory in a PE are laid out into 8 banks of 6 KB each": SDK docs, CSL
# Appendix, SIMD Mode); a DSD operation does a whole vector operation in "just one hardware
# instruction" (SDK docs, Data Structure Descriptors), so a program grows with its operations, not
# its tensors; and the SDK's memcpy "adds a small executable component to the kernel PEs" (SDK docs,
# Host Runtime and Tensor Streaming). No Cerebras document we found gives a program's size in bytes.
# (The 6 KiB this was before, one bank, had no source; a third-party sizing script for sparse GEMM
# on the WSE makes the same guess: "Reserve 6 kB of memory for program, dsd buffers etc.".)
# So the figure is our estimate of our own kernels' code, an assumption and not a measurement of
# compiled code: the largest per-core program we lower to, a core of the last row of a fused GEMM
# with a folded norm, an epilogue and the tree reduce, runs 16 DSD operations (A's AXPY; the partial
# sums' add-and-forward on the chain and on the tree's two levels; the norm's statistic, added and
# forwarded; the rsqrt and the scale, or a layernorm's two FMAs; up to six epilogue ops; the outputs'
# send), each with 8 instructions around it (loading its DSDs, the task's entry, loop and exit),
# and 128 instructions of start-up (colors and routes, the task table, the DSDs), at 4 bytes an
# instruction (the width is not published; we take a 32-bit word, a wavelet's width); plus 1 KiB
# for memcpy's component and the stack. 4 x (16 x 8 + 128) + 1024 = 2 KiB. Every kernel gets the
# largest program's reserve. The fit of llama-3.1-70b on four WSE-3s (tests/test_multi_wafer_fit.py,
# decode at a prompt of 128 + 256 new tokens) hangs on this figure: it fits up to 2.5 KiB; at 3 KiB
# the parts of 21 blocks take 95% of the mesh's cores at their narrowest and do not pack into its
# bands; at the former 6 KiB they need 899,199 cores, 1.8% more than the 883,350 a program gets.
RESERVED_SRAM_BYTES = 4 * (16 * 8 + 128) + 1024
# Fabric input and output queues: bytes of SRAM per core for each color a kernel uses.
QUEUE_BYTES_PER_COLOR = 64

# Tile-level simulation granularity: the runtime moves activations in chunks of this many
# tokens (a sample of 2048 tokens is 32 events per kernel). Smaller is finer and slower.
CHUNK_TOKENS = 64

# In layer-pipelined mode the graph outputs (logits) are consumed at the wafer edge, e.g. by an
# on-wafer loss or sampling kernel; their transfer off the wafer is not counted. The token ids
# stream in over the system I/O and are counted.
COUNT_OUTPUT_IO = False

# PE-level simulator (runtime/pe_sim.py) of the mesh GEMM. Queue sizes are not published: each
# router has, per color, an input queue of this many wavelets, and each core one per color it
# receives. Four covers the two-cycle credit round trip of one-wavelet-per-cycle flow.
PE_QUEUE_DEPTH = 4
# A wavelet crossing the ramp between a router and its core takes one cycle, like a hop. With
# HOP_CYCLES this is why a partial sum takes 3 cycles per row of the column reduce: hop into the
# router below, ramp to its core, and the core's add-and-forward back onto the ramp.
RAMP_CYCLES = 1
# Partial sums are double buffered: a core FMACs token t + 1 while token t's sums stream south.
PE_ACC_BUFFERS = 2

# Weight streaming (passes/streaming.py, runtime/stream_sim.py). A layer's weights stream in from
# MemoryX at the system I/O's full rate (no protocol overhead counted), into one of this many
# buffers, so the next layer's weights arrive while this one computes (double buffering).
WEIGHT_BUFFERS = 2
# The prefetch buffer of the next layer's weights is spread evenly over the cores of the mesh.
# The activations that cross from one layer to the next (the residual stream) stay in SRAM for the
# whole batch, spread evenly too, and twice: a layer's input is held while it writes its output.
RESIDENT_ACTIVATION_COPIES = 2

# Training (runtime/train_time.py). The system I/O (12 x 100 GbE) is full duplex: weight gradients
# stream out to MemoryX while the next layer's weights stream in, each at the full rate.
IO_FULL_DUPLEX = True
# MemoryX (its capacity, link, update rate and where the optimizer runs) and SwarmX (its tree, per-level
# bandwidth and latency) are components with their sources: backends/memoryx.py, backends/swarmx.py.
# Layer-pipelined training runs the optimizer on the wafer, on the cores that hold the weights:
# every core, an f32 elementwise op at the f32 FMAC rate (1 element per core per cycle on a WSE-2),
# ELEMENTWISE_LANE_FRACTION and TRANSCENDENTAL_CYCLES as for other elementwise work.

# Unstructured weight sparsity (passes/sparsify.py, backends/sparse.py). A sparse weight is held
# per core tile in a compressed format of our own: for each non-zero its value and a 16-bit column
# index within the tile (the width of a sparse wavelet's index field: 16-bit index + 16-bit value,
# Cerebras SDK white paper p. 4), and for each tile row its count of non-zeros (16 bits). Both are
# counted in SRAM and in streamed bytes.
SPARSE_INDEX_BYTES = 2
SPARSE_ROW_BYTES = 2
# The loop of the sparse GEMM: for each arriving element of A, one indexed AXPY over the non-zeros
# of that row of the core's tile. It reads each value with its index through one read port and
# gathers the partial sums through the other (we assume the indexed access runs at the port's full
# width: Cerebras says its cores run unstructured-sparse tensor ops at full rate, and gives no
# figure), so an f16 non-zero costs half a cycle where a dense f16 weight costs a quarter. Its
# instruction pays its vector issue (costs.py) like a dense one. An element whose tile row holds no non-zero
# is popped from the queue and dropped in this many cycles (assumed).
SPARSE_SKIP_CYCLES = 1
# A meta-device weight (no data) up to this many elements has its seeded random mask drawn, so its
# cost comes from that mask core by core. A bigger one (111M's MLP has 2.4M, 1.3B's 16.8M) has its
# mask drawn only in distribution: each core's count of non-zeros per tile row is binomial, and the slowest
# core of a rectangle is taken at the expected maximum of its cores' work (a normal approximation,
# checked against drawn masks in benchmarks/fidelity.py).
SPARSE_DRAW_LIMIT = 1 << 20

# Generation across systems (`wafer compile --generate --systems N`): a model too big for one wafer
# runs as a pipeline of layers over N systems, and the activations of each token cross from one
# system to the next. Cerebras does not publish how its inference clusters connect wafers; we assume
# the crossing goes over the systems' own I/O, 12 x 100 GbE = 150 GB/s (machine.py, Argonne SC24
# tutorial), at its full rate, and costs a fixed latency per crossing for the NICs, one switch and the
# wafer's I/O path. 2 us is our assumption, the order of a switched 100 GbE round trip's half with RDMA.
INTER_SYSTEM_LINK_NAME = "system I/O (12 x 100 GbE) through one Ethernet switch"
INTER_SYSTEM_LATENCY_S = 2e-6
