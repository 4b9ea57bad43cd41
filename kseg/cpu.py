"""What this machine's CPU computes natively, as /proc/cpuinfo tells it.

`--mixed-precision auto` (training) and the bf16 inference warning ask the same question:
does the CPU compute bfloat16 natively (AVX512-BF16 or AMX)? Both read the answer here.
"""

# /proc/cpuinfo flags of x86 CPUs that compute bfloat16 natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def native_bf16_flags(cpuinfo):
    """The flags of NATIVE_BF16_FLAGS that /proc/cpuinfo text lists (in that order)."""
    found = set()
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() in ("flags", "Features"):
            found.update(value.split())
    return [flag for flag in NATIVE_BF16_FLAGS if flag in found]


def read_cpuinfo(path=CPUINFO):
    """The text of /proc/cpuinfo, or "" where there is none."""
    try:
        with open(path, encoding="utf8", errors="replace") as handle:
            return handle.read(8 << 20)
    except OSError:
        return ""


def cpu_has_bf16():
    """Whether this CPU has native bfloat16 instructions; None where it cannot be told."""
    cpuinfo = read_cpuinfo()
    return bool(native_bf16_flags(cpuinfo)) if cpuinfo else None
