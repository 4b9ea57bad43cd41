"""Runs a `kseg` command and interrupts it inside one phase, as a user or a library may.

    python phase_driver.py HOW TARGET SIGNAL -- KSEG ARGUMENTS...

TARGET is a function ("module:function" or "module:Class.method"), often a third-party
converter kseg calls (keras' SavedModel writer, the TFLite converter, tf2onnx). When kseg
first calls it, the process sends itself SIGNAL (SIGINT or SIGTERM) in one of these ways:

    during    from another thread, SIGNAL_DRIVER_DELAY seconds (default 0.2) into the call,
              while TARGET runs: the exception lands wherever the main thread then is
    swallow   at the start of the call, inside a `try: ... except KeyboardInterrupt: pass`,
              then TARGET runs to its end: a converter that swallows the interruption
    wrap      at the start of the call, and the interruption comes out of TARGET as a
              RuntimeError, as a C++ binding reports an exception raised in a callback

The driver prints "PHASE <how> <target>" when it sends the signal.
"""

import functools
import importlib
import os
import signal
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _resolve(target):
    module_name, qualified = target.split(":")
    owner = importlib.import_module(module_name)
    *parents, name = qualified.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def _send(how, target, signum):
    print(f"\nPHASE {how} {target}", flush=True)
    os.kill(os.getpid(), signum)
    time.sleep(0.5)  # the handler runs here (main thread)


def main():
    separator = sys.argv.index("--")
    how, target, signal_name = sys.argv[1:separator]
    arguments = sys.argv[separator + 1:]
    signum = getattr(signal, signal_name)
    owner, name = _resolve(target)
    real = getattr(owner, name)
    fired = []

    @functools.wraps(real)
    def interrupted(*args, **kwargs):
        if fired:
            return real(*args, **kwargs)
        fired.append(True)
        if how == "during":
            delay = float(os.environ.get("SIGNAL_DRIVER_DELAY", "0.2"))

            def later():
                time.sleep(delay)
                print(f"\nPHASE {how} {target}", flush=True)
                os.kill(os.getpid(), signum)

            threading.Thread(target=later, daemon=True).start()
        elif how == "swallow":
            try:
                _send(how, target, signum)
            except KeyboardInterrupt:
                print("SWALLOWED", flush=True)
        elif how == "wrap":
            try:
                _send(how, target, signum)
            except KeyboardInterrupt as error:
                raise RuntimeError(f"converter failed: {type(error).__name__}") from None
        else:
            raise SystemExit(f"unknown way {how}")
        return real(*args, **kwargs)

    setattr(owner, name, interrupted)

    from kseg.cli.main import cli

    cli.main(args=arguments, prog_name="kseg")


if __name__ == "__main__":
    main()
