"""Runs a `kseg` command that stops at a chosen point so a test can send it a signal there.

    python signal_driver.py MODE TARGET -- KSEG ARGUMENTS...

MODE:
    write    inside the write of the destination whose base name is TARGET (its
             temporary is complete, not yet renamed into place)
    after    right after the function TARGET ("module:function" or "module:Class.method")
             returned
    swallow  like write, then the process signals itself (SIGTERM) from inside a
             `__del__` method, where Python prints the exception and drops it, and
             carries on as if nothing had happened

In the stopping modes the process prints "PAUSED <detail>" and sleeps until the signal
(or for $SIGNAL_DRIVER_PAUSE seconds).
"""

import contextlib
import functools
import importlib
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pause(detail):
    print(f"\nPAUSED {detail}", flush=True)
    time.sleep(float(os.environ.get("SIGNAL_DRIVER_PAUSE", "600")))


class SignalsItselfWhenCollected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here and its exception is dropped


def main():
    separator = sys.argv.index("--")
    mode, target, arguments = sys.argv[1], sys.argv[2], sys.argv[separator + 1:]

    import kseg.outputs

    if mode in ("write", "swallow"):
        real_atomic_path = kseg.outputs.writing

        @contextlib.contextmanager
        def stopping_atomic_path(path, directory=False):
            with real_atomic_path(path, directory) as temporary:
                yield temporary
                if os.path.basename(os.fspath(path)) == target:
                    if mode == "write":
                        pause(temporary)
                    else:
                        print(f"\nSWALLOWING {temporary}", flush=True)
                        SignalsItselfWhenCollected()  # collected at once

        kseg.outputs.writing = stopping_atomic_path
        for name, module in list(sys.modules.items()):
            if name.startswith("kseg") and getattr(module, "writing", None) is real_atomic_path:
                module.writing = stopping_atomic_path
        # Modules imported later take the name from kseg.outputs as well.
    elif mode == "after":
        module_name, qualified = target.split(":")
        owner = importlib.import_module(module_name)
        *parents, function_name = qualified.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        real = getattr(owner, function_name)

        @functools.wraps(real)
        def stopping(*args, **kwargs):
            result = real(*args, **kwargs)
            pause(target)
            return result

        setattr(owner, function_name, stopping)
    else:
        raise SystemExit(f"unknown mode {mode}")

    from kseg.cli.main import cli

    cli.main(args=arguments, prog_name="kseg")


if __name__ == "__main__":
    main()
