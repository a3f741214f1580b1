"""The bounds every input is checked against before any work starts, in one place, each with why.

They are far above anything the project simulates (the largest published GPT-style models have
about 100 layers, d_model 25,600 and vocabularies of 256 K), and low enough that no check lets a
typo turn into an allocation of terabytes or an hour of tracing.
"""

MAX_BATCH = 1 << 20  # samples per compile
MAX_TOKENS = 1 << 24  # batch x seq: the token ids alone are 8 bytes each, and every kernel loops per chunk
MAX_LAYERS = 1024
MAX_D_MODEL = 1 << 16
MAX_HEADS = 4096
MAX_VOCAB = 1 << 22
MAX_CONTEXT = 1 << 20  # positions
MAX_SEED = 2 ** 32 - 1  # what NumPy's and torch's generators take
MAX_PARAMS = 10 ** 13  # a config's parameters (traced on the meta device, but counted and printed)
MAX_SYSTEMS = 1024  # `wafer compile --systems`: Cerebras' largest clusters are 64 systems
MAX_TRAIN_STEPS = 100_000  # `wafer run --train`: the NumPy interpreter takes seconds per step of a tiny model
MAX_STREAM_TOKENS = 1 << 26  # `wafer run --train --stream-tokens`: 8 bytes each
MAX_PE_OPERAND_BYTES = 2 << 30  # `simulate-kernel --level pe`: A and W, before the simulator's own state


def check_int(name: str, value, low: int, high: int, hint: str = "") -> int:
    """``value`` as an int in [low, high], else one UsageError line naming it."""
    from .errors import UsageError

    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be a whole number from {low:,} to {high:,} (got {value!r}){hint}")
    if not low <= value <= high:
        raise UsageError(f"{name} = {value:,} is out of range: it must be from {low:,} to {high:,}{hint}")
    return value

# Files a user hands us (safe_read.py). Each is read only if it is a regular file no larger than its bound,
# so that a symlink to /dev/zero, a FIFO or a stray 200 MB file is one error line, not memory or a hang.
MiB = 1 << 20
MAX_REPORT_FILE_BYTES = 64 * MiB  # report.json / placement.json of `wafer report DIR`: a tiny model's placement
#   is 28 KB, and both grow with the kernels placed (a few MB for the zoo's largest models)
MAX_IR_FILE_BYTES = 64 * MiB  # a .ir dump: about 300 bytes per op, and the zoo's largest graphs have ~10^4 ops
MAX_MLIR_FILE_BYTES = 16 << 30  # a torch-mlir .mlir may carry its weights as dense_resource blobs (a 7B model in
#   f16 is 14 GB); MLIR reads the file itself, so this only stops a device or a runaway file
MAX_HF_CONFIG_BYTES = 16 * MiB  # a Hugging Face config.json is a few KB (label maps make some larger)
MAX_SPEC_BYTES = 1 * MiB  # a sweep spec is a screenful of keys; lists of thousands of values still fit
MAX_POINTS_FILE_BYTES = 1 << 30  # a sweep's points.jsonl: about 1 KB per point, MAX_GRID (100,000) points of
#   one spec, and resumes with other specs append to it
MAX_POINTS_LINE_BYTES = 1 * MiB  # one point's row (about 1 KB)
MAX_DATA_BYTES = MAX_STREAM_TOKENS  # `wafer run --train --data`: one token per byte (8 bytes once tokenized)
MAX_JSON_DEPTH = 64  # nesting of any JSON or YAML we read: ours nests 6 deep, Hugging Face configs 4
MAX_NUMBER_CHARS = 40  # digits of a number in JSON or YAML: the largest count we write (cycles, bytes, FLOPs)
#   has under 25; longer ones only overflow float conversion or hit Python's 4,300-digit int parsing limit
MAX_YAML_NODES = 100_000  # nodes of a sweep spec once its aliases are expanded (a "billion laughs" stops here)
MAX_ERROR_VALUE_CHARS = 80  # a value quoted in an error message is cut to this many characters
# `wafer simulate-kernel --level pe`: the simulator steps every core of the grid once per cycle in NumPy, and
# each cycle also costs a fixed 30-130 us of Python (runtime/pe_sim.py; measured on the 2-core dev machine).
# The largest benchmark cases (benchmarks/fidelity.py, pe_speed.py) step 72,039 cycles (a sparse 32-token,
# long-K GEMM) and 8.3e9 PE-cycles (a full WSE-2 GEMM, 15 s chain / 60 s tree): both fit; a million tokens
# on a 4x4 mesh (2e8 cycles, hours) or 64x4096x4096 f32 on 64x64 (340,735 cycles, a minute or more) do not.
MAX_PE_SIM_CYCLES = 200_000
MAX_PE_SIM_PE_CYCLES = 10 ** 10  # cycles x cores
