"""Runs a `kseg` command whose downloads all go to one address (a test's local server).

    python download_driver.py URL -- KSEG ARGUMENTS...

Every weights manifest entry is read as a file `kseg-test-NAME.bin` at URL (without a
hash), and keras.applications' downloads are sent to URL too, under a file name of their
own, so nothing in keras' cache can stand in for the download. Run it with KERAS_HOME set
to a temporary folder.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    separator = sys.argv.index("--")
    url, arguments = sys.argv[1], sys.argv[separator + 1:]

    from keras.src.utils import file_utils

    import kseg.models.manifest as manifest
    import kseg.models.pretrained as pretrained

    def entry(name, path=None):
        return manifest.WeightsEntry(name, f"kseg-test-{name}.bin", url)

    manifest.manifest_entry = entry
    pretrained.manifest_entry = entry
    real_get_file = file_utils.get_file

    def redirected(fname=None, origin=None, **kwargs):
        kwargs.pop("file_hash", None)
        return real_get_file(f"kseg-test-{os.path.basename(fname or 'application')}", url, **kwargs)

    file_utils.get_file = redirected

    from kseg.cli.main import cli

    cli.main(args=arguments, prog_name="kseg")


if __name__ == "__main__":
    main()
