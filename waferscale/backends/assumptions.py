"""The cost and simulation figures of the model that no public source gives: our modelling assumptions.

They live here, in one place, so that a user of the simulator can see what is assumed rather
than measured, and change it. Each name says what it stands for; each comment says why we
picked the number. The machine's own figures, sourced or assumed (clock, SRAM, lanes, fabric hop
and router delays, queues, reserved SRAM, the link between systems), are in its machine file,
``backends/machines/*.yaml``, each with its source or marked assumed (``machine.py``).
"""

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

# Tile-level simulation granularity: the runtime moves activations in chunks of this many
# tokens (a sample of 2048 tokens is 32 events per kernel). Smaller is finer and slower.
CHUNK_TOKENS = 64

# In layer-pipelined mode the graph outputs (logits) are consumed at the wafer edge, e.g. by an
# on-wafer loss or sampling kernel; their transfer off the wafer is not counted. The token ids
# stream in over the system I/O and are counted.
COUNT_OUTPUT_IO = False

# PE-level simulator (runtime/pe_sim.py): queue depth, hop and ramp cycles are the machine file's.
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

