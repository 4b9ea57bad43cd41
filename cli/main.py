"""The `kseg` command: a Click group whose verbs are imported only when used.

Each verb lives in its own module of this package and imports TensorFlow inside its
function body, so `kseg --help` and `kseg --version` answer at once.

Errors meant for the user (`KsegError`) are printed as one line, `error: ...`, with exit
code 1; anything unexpected too, unless `--debug` asks for the traceback.
"""

import contextlib
import functools
import importlib
import json
import logging
import os
import sys
import tempfile

import click

from kseg import __version__

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# verb -> (one-line help, needs TensorFlow); the verb is the function of the same name in
# the module of the same name, kseg.cli.VERB.
COMMANDS = {
    "data": ("Verify datasets, show statistics, make the synthetic set.", False),
    "evaluate": ("Score a model or prediction files.", True),
    "export": ("Export to SavedModel, TFLite or ONNX.", True),
    "heatmap": ("ImageNet class heatmap of an image.", True),
    "models": ("List the registered models.", True),
    "predict": ("Segment images of any size.", True),
    "recipes": ("List the training recipes (kseg train --recipe NAME).", False),
    "train": ("Train an FCN on a dataset.", True),
    "weights": ("List, download and convert released FCN weights.", False),
}


class LazyGroup(click.Group):
    """A group that imports a verb's module only when that verb is run or asked for help."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        command = getattr(importlib.import_module(f"kseg.cli.{name}"), name)
        if COMMANDS[name][1] and not getattr(command.callback, "imports_tensorflow", False):
            command.callback = _after_quiet_tensorflow_import(command.callback)
        return command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][0]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        from kseg import signals
        from kseg.errors import KsegError, is_disk_full, is_out_of_memory
        from kseg.files import one_line

        signals.install()
        if getattr(sys.stdout, "errors", None) == "strict":
            # A file name whose bytes are not UTF-8 is shown as \udcXX, as on stderr, instead of
            # ending the verb in a UnicodeEncodeError once its work is done.
            sys.stdout.reconfigure(errors="backslashreplace")
        try:
            result = super().invoke(ctx)
            signals.raise_if_interrupted()  # a signal whose exception a library swallowed
            return result
        except click.UsageError as error:
            # One line, like every other error, with the way to the options.
            command = error.ctx.command_path if error.ctx else "kseg"
            click.echo(f"error: {one_line(error.format_message(), 1000)} (see `{command} --help`)", err=True)
            sys.exit(error.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt as error:
            name = getattr(error, "name", "Ctrl-C")
            click.echo(f"interrupted ({name}); unfinished outputs were removed", err=True)
            sys.exit(signals.exit_status(error))
        except Exception as error:  # KsegError; else a bug, or a failure kseg did not anticipate
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(error, KsegError):
                message = one_line(error, 1000)
            elif is_out_of_memory(error):  # the resource, named, whichever library ran out
                message = "out of memory (try smaller images, --tile, or a smaller batch)"
            elif is_disk_full(error):
                message = f"no space left on device ({one_line(error, 300)}); free some space and run it again"
            else:
                message = f"{type(error).__name__}: {one_line(error, 1000)} (run with --debug for the traceback)"
            click.echo(f"error: {message}", err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kseg")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """kseg: semantic segmentation with Fully Convolutional Networks (FCN-32s/16s/8s).

    Train on Cityscapes, Pascal VOC, CamVid or your own folders, evaluate with the FCN
    paper's metrics, predict on images of any size, and export to SavedModel, TFLite or
    ONNX. Run `kseg COMMAND --help` for the options of a command.

    \b
    Start here (no download needed):
      kseg predict street.png          segment a photo: your latest run, else kseg's CamVid model
      kseg export --format tflite      the same model, for a phone
      kseg data init DIR               describe your images/ and masks/ in DIR/classes.yaml
      kseg train --recipe folder-scratch --data-dir DIR   then train on them
      kseg recipes                     every training recipe and its measured results
    """
    handler = logging.StreamHandler()
    handler.setFormatter(_LevelFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    ctx.ensure_object(dict)["debug"] = debug


class _LevelFormatter(logging.Formatter):
    """Log lines as plain messages; warnings and errors begin with "warning: " / "error: "."""

    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        return f"warning: {message}" if record.levelno >= logging.WARNING else message


def _after_quiet_tensorflow_import(callback):
    """Wraps a verb so TensorFlow is imported (quietly) only when the verb runs, after its
    arguments are parsed: `kseg VERB --help` stays fast."""

    @functools.wraps(callback)
    def run(*args, **kwargs):
        import_tensorflow_quietly()
        from kseg.images import quiet_decoder_warnings

        quiet_decoder_warnings()  # kseg names each bad file itself
        return callback(*args, **kwargs)

    run.imports_tensorflow = True
    return run


def _keras_backend_name():
    """The backend keras will use (KERAS_BACKEND, else keras.json), without importing keras."""
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        path = os.path.join(home, "keras.json")
        with contextlib.suppress(OSError, ValueError, AttributeError), open(path, encoding="utf8") as handle:
            name = json.load(handle).get("backend")
    return name or "tensorflow"


def import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 sent to a temporary file.

    TensorFlow's C++ start-up notices ignore TF_CPP_MIN_LOG_LEVEL; if the import fails,
    what it wrote is replayed so the real cause is still seen. Under another keras backend
    (KERAS_BACKEND=jax or torch) TensorFlow is not imported at all.
    """
    if _keras_backend_name() != "tensorflow":
        return

    with contextlib.ExitStack() as stack:
        captured = None
        if sys.stderr is not None:  # None where fd 2 was closed when Python started
            sys.stderr.flush()
            with contextlib.suppress(OSError):  # fd 2 closed, or no temporary file: a plain import
                saved = os.dup(2)
                stack.callback(os.close, saved)
                captured = stack.enter_context(tempfile.TemporaryFile())
        if captured is not None:
            stack.callback(os.dup2, saved, 2)  # before either file is closed
            os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            if captured is not None:
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
            raise
