"""The JSON report every benchmark script can write with `--out`.

`check_out` runs before any measurement, so a bad path costs nothing: it refuses a path
that is, or lies in, one of the script's inputs (a model, a run folder, a dataset), one
that exists and is not a regular file, and an existing file that is not an earlier report
of the same script. `write_report` then writes the report atomically (a kill leaves the
previous file or the new one, never half of one), marked with the script's name under
"benchmark" so that a later run recognises it.
"""

import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_out(out, benchmark, inputs=(), option="--out"):
    """Raises a `KsegError` naming `out` if a report may not be written there.

    Args:
        out: str. The `--out` path.
        benchmark: str. The script's name; an existing file is replaced only if it is a
            report that `write_report` wrote for the same name.
        inputs: paths the script reads; `out` may be none of them, nor lie in one.
        option: str. The option's name, for the message.
    """
    from kseg.errors import KsegError
    from kseg.files import lies_in, load_json

    real = os.path.realpath(out)
    for source in filter(None, inputs):
        source_real = os.path.realpath(source)
        if lies_in(real, source_real):
            raise KsegError(f"{option} {out}: is or lies in the input {source}; choose another file")
    if not os.path.lexists(out):
        return
    if os.path.islink(out) or not os.path.isfile(out):
        raise KsegError(f"{option} {out}: exists and is not a regular file; choose another file")
    try:
        payload = load_json(out, "benchmark report")
    except KsegError:
        payload = None
    if not (isinstance(payload, dict) and payload.get("benchmark") == benchmark):
        raise KsegError(f"{option} {out}: exists and is not a report of this script; choose another file")


def write_report(out, benchmark, report):
    """Writes the dict `report` (numpy values become lists), marked as `benchmark`'s, to
    `out` atomically."""
    import numpy as np

    from kseg.atomic import write_bytes_atomic

    text = json.dumps({"benchmark": benchmark, **report}, indent=1, default=lambda value: np.asarray(value).tolist())
    write_bytes_atomic(out, text.encode("utf8"))


# CPU features that decide which kernels run: bfloat16 matmuls (oneDNN, Keras bf16) and
# int8 dot products (XNNPACK and oneDNN int8).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8")


def machine():
    """The CPU model, its cores and relevant instruction sets, the library versions and
    the load average, for a report."""
    import keras
    import tensorflow as tf

    model, flags = platform.processor(), []
    if sys.platform.startswith("linux"):
        with open("/proc/cpuinfo") as cpuinfo:
            lines = cpuinfo.read().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        present = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        flags = [flag for flag in CPU_FLAGS if flag in present]
    return {"cpu": model, "cpu_flags": flags, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "load_average": os.getloadavg()}
