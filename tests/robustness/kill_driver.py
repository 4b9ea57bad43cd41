"""Runs a `kseg` command that stops inside a file write, so a test can SIGKILL it there.

    python kill_driver.py NAME -- KSEG ARGUMENTS...

Every atomic write of kseg goes through `kseg.atomic.atomic_path`. Here it is wrapped so
that the write of a destination whose base name is NAME runs for real (the temporary
file or folder is completely written) and then, before it is renamed into place, the
process prints "WRITING <path>" and waits to be killed.
"""

import contextlib
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    separator = sys.argv.index("--")
    name, arguments = sys.argv[1], sys.argv[separator + 1:]

    import kseg.atomic
    import kseg.export
    import kseg.images
    import kseg.training.checkpoints
    import kseg.training.logs

    real_atomic_path = kseg.atomic.atomic_path

    @contextlib.contextmanager
    def pausing_atomic_path(path, directory=False):
        with real_atomic_path(path, directory) as temporary:
            yield temporary
            if os.path.basename(os.fspath(path)) == name:
                print(f"\nWRITING {temporary}", flush=True)
                time.sleep(600)

    for module in (kseg.atomic, kseg.export, kseg.images, kseg.training.checkpoints, kseg.training.logs):
        module.atomic_path = pausing_atomic_path

    from kseg.cli.main import cli

    cli.main(args=arguments, prog_name="kseg")


if __name__ == "__main__":
    main()
