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
