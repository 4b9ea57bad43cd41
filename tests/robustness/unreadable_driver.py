"""Runs the "unreadable" case of every verb in a process that file permissions apply to.

    python unreadable_driver.py WORLD MODELS_JSON VERB...

Root reads any file whatever its mode, through the CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH capabilities. When run as root, this process drops both before it
starts any thread, so every thread (TensorFlow's included) is refused a file of mode 000,
as any other user would be. Prints one JSON object: verb -> the CLI's result and the
paths the test checks.
"""

import ctypes
import json
import os
import sys
import tempfile

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_file_capabilities():
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
    for field in ("effective", "permitted", "inheritable"):
        setattr(data[0], field, getattr(data[0], field) & keep)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def permissions_apply(folder):
    probe = tempfile.mktemp(dir=folder)
    with open(probe, "w") as handle:
        handle.write("x")
    os.chmod(probe, 0)
    try:
        open(probe).close()
        return False
    except PermissionError:
        return True
    finally:
        os.remove(probe)


def main():
    world, models, verbs = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    if os.geteuid() == 0:
        drop_file_capabilities()
    if not permissions_apply(world):
        print(json.dumps({"unsupported": "files of mode 000 stay readable here"}))
        return
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]
    import test_bad_inputs as suite
    from click.testing import CliRunner
    from kseg.cli.main import cli

    results = {}
    for verb in verbs:
        folder = tempfile.mkdtemp(dir=world)
        plan = suite.setup(verb, "unreadable", folder, models)
        for path in plan.unreadable:
            os.chmod(path, 0)
        try:
            result = CliRunner().invoke(cli, plan.arguments)
        finally:
            for path in plan.unreadable:
                os.chmod(path, 0o644)
        unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
        results[verb] = {
            "folder": folder, "exit_code": result.exit_code, "output": result.output,
            "stderr": result.stderr, "exception": repr(unexpected) if unexpected else None,
            "plan": vars(plan),
        }
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
