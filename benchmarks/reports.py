"""The JSON report every benchmark script can write with `--out`.

`check_out` runs before any measurement, so a bad path costs nothing; `write_report` then
writes the report. Both follow kseg's output policy (`kseg.outputs`): never over an input
(a model, a run folder, a dataset) or inside one, never over a file kseg did not write,
and atomically. The report is marked with the script's name under "benchmark".
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
        benchmark: str. The script's name (recorded in the report).
        inputs: paths the script reads; `out` may be none of them, nor lie in one.
        option: str. The option's name, for the message.
    """
    from kseg.outputs import check

    check(out, "benchmark report", inputs, option=option)


def write_report(out, benchmark, report):
    """Writes the dict `report` (numpy values become lists), marked as `benchmark`'s, to
    `out` atomically, and lists it among kseg's outputs in its folder."""
    import numpy as np

    from kseg.outputs import check, write_bytes

    text = json.dumps({"benchmark": benchmark, **report}, indent=1, default=lambda value: np.asarray(value).tolist())
    with check(out, "benchmark report"):
        write_bytes(out, text.encode("utf8"))


# CPU features that decide which kernels run: bfloat16 matmuls (oneDNN, Keras bf16) and
# int8 dot products (XNNPACK and oneDNN int8).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8")


def machine_line(info):
    """One line naming the machine of a `machine()` report: CPU, cores, instruction sets."""
    missing = [flag for flag in CPU_FLAGS if flag not in info["cpu_flags"]]
    return (f"machine: {info['cpu']}, {info['cores']} cores; has {', '.join(info['cpu_flags']) or 'none of'} "
            f"{'(lacks ' + ', '.join(missing) + ')' if missing else ''}; TensorFlow {info['tensorflow']}, "
            f"keras {info['keras']}")


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
        family = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("cpu family")), "")
        number = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model\t")), "")
        if family:  # the same "model name" covers several generations (AMD EPYC: families 25, 26)
            model = f"{model} (family {family}, model {number})"
        present = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        flags = [flag for flag in CPU_FLAGS if flag in present]
    return {"cpu": model, "cpu_flags": flags, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "load_average": os.getloadavg()}
