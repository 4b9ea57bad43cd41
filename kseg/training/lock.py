"""One training process per run folder, and temporaries of killed runs swept away.

`RunLock(run_dir)` takes an exclusive `fcntl.flock` on a hidden file in the run folder
(`.kseg-train.lock`). The operating system drops the lock when its process ends, however
it ends (SIGKILL included), so a lock is never left stuck; a second `kseg train` on the
same folder is refused at once, naming the process that holds it.

The lock is taken before the folder's content is checked, so two runs started at the same
moment cannot both find it empty:

    with RunLock(run_dir, create=True) as lock:
        lock.check_fresh()        # refuses a folder holding a run or a user's files
        sweep_temporaries(run_dir)
        ...                       # train

`lock_run_dir(config, resume)` does this for `train`: it picks (or checks) the folder,
locks it and sweeps it. `sweep_temporaries` removes only names that `kseg.outputs` gives
its temporary files and folders (`.NAME.XXXXXXXX.tmpSUFFIX`, `.NAME.XXXXXXXX.tmp`,
`.NAME.XXXXXXXX.old`).
"""

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import time

from kseg import runs
from kseg.errors import DiskFullError, KsegError, is_disk_full
from kseg.files import brief
from kseg.outputs import Outputs, is_temporary_name, missing_folders

LOCK_NAME = ".kseg-train.lock"
LOCK_ATTEMPTS = 100  # the lock is never waited for: taken at once, or refused naming its holder
_LOCK_TAG = b"kseg train lock, pid "
logger = logging.getLogger("kseg")
RUN_FILES = ("config.yaml", "classes.json", "log.csv", "training_curves.png", "checkpoints", "tensorboard")


class RunLockedError(KsegError):
    """Another process is training in this run folder."""


def sweep_temporaries(folder):
    """Removes, in `folder` and every folder below it, what killed writes left behind.

    Symbolic links are neither followed nor removed; names that are not exactly a
    temporary name of `kseg.outputs` (the lock file, a user's hidden files) are kept, and
    so is a temporary that cannot be removed.

    Returns:
        list of str. The paths removed.
    """
    removed = []
    for parent, folders, files in os.walk(folder, topdown=True, followlinks=False):
        for name in [*folders, *files]:
            path = os.path.join(parent, name)
            if not is_temporary_name(name) or os.path.islink(path):
                continue
            if name in folders:
                shutil.rmtree(path, ignore_errors=True)
                folders.remove(name)  # not walked into
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
            if not os.path.lexists(path):
                removed.append(path)
    return removed


class RunLock:
    """An exclusive lock on a run folder, held while a process trains in it.

    Args:
        run_dir: str. The run folder.
        create: bool. Create the folder (and its parents) if it does not exist; the
            folders created are remembered so `release(remove_created=True)` can take
            them away again.
        exclusive_create: bool. With `create`, the folder must not exist yet (a
            `FileExistsError` is raised if it does): used to pick a fresh default name.
    """

    def __init__(self, run_dir, create=False, exclusive_create=False):
        self.run_dir = os.fspath(run_dir)
        self.create = create
        self.exclusive_create = exclusive_create
        self.created = []  # folders made by this lock, deepest first
        self._descriptor = None

    @property
    def path(self):
        return os.path.join(self.run_dir, LOCK_NAME)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    def acquire(self):
        """Takes the lock (making the folder first with `create`); returns self.

        Raises:
            RunLockedError: another process holds it.
            KsegError: the folder cannot be made or is not a folder.
        """
        self._prepare_folder()
        try:
            return self._take()
        except BaseException:
            self.release(remove_created=True)  # a folder made just now is not left behind empty
            raise

    def _take(self):
        """Takes the lock in the folder `_prepare_folder` made ready; returns self."""
        for _ in range(LOCK_ATTEMPTS):  # another try only when the holder let go just then
            opened = self._open_lock_file()
            if opened is None:  # removed by its holder just now: try again
                continue
            descriptor, made = opened
            self._lock_or_raise(descriptor, made)
            # The holder before us may have removed the file between our open and our lock:
            # the lock is only ours if the name still leads to the file we locked.
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(descriptor), os.stat(self.path, follow_symlinks=False)):
                    break
            os.close(descriptor)
        else:
            raise KsegError(
                f"{self.path}: the lock file was replaced {LOCK_ATTEMPTS} times while kseg tried to take it "
                "(other kseg processes starting and stopping in this folder?); try again, or choose another "
                "--run-dir"
            )
        if not stat.S_ISREG(os.fstat(descriptor).st_mode) or (
            not made and os.pread(descriptor, 200, 0) != b"" and _read_pid(descriptor) is None
        ):
            os.close(descriptor)  # a file of that name that kseg did not write: keep it
            raise KsegError(
                f"{self.path}: a file kseg did not write has the name of kseg's lock file; "
                "choose another --run-dir"
            )
        self._descriptor = descriptor
        try:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, _LOCK_TAG + str(os.getpid()).encode() + b"\n")
        except OSError as error:
            self.release()
            raise self._os_error(error, "cannot write its lock file") from None
        return self

    def _open_lock_file(self):
        """(descriptor, whether this call made the file), or None when the file went away
        between two attempts to open it."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
        except FileExistsError:
            pass
        except OSError as error:
            raise self._os_error(error, "cannot create its lock file") from None
        try:
            return os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW), False
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._os_error(error, "cannot open its lock file") from None

    def _lock_or_raise(self, descriptor, made):
        """Takes the exclusive lock on `descriptor`, or closes it and says who holds it (the
        file goes too when this call `made` it and it cannot be locked at all)."""
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = f"pid {holder}" if holder else "pid unknown"
                raise RunLockedError(
                    f"{self.run_dir}: is being trained by another kseg process ({pid}); "
                    "wait for it or choose another --run-dir"
                ) from None
            if made:  # no process can lock it (e.g. ENOLCK): not left in a folder kseg may remove
                with contextlib.suppress(OSError):
                    os.remove(self.path)
            raise self._os_error(error, "cannot lock it") from None

    def _prepare_folder(self):
        if not self.exclusive_create:  # `lock_run_dir` refused a --run-dir that is not a folder
            if os.path.isdir(self.run_dir):
                return
            if not self.create:
                raise KsegError(f"{self.run_dir}: no such run folder (--run-dir)")
        missing = missing_folders(self.run_dir)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.run_dir)), exist_ok=True)
            os.mkdir(self.run_dir)  # with exclusive_create, FileExistsError when the name is taken
        except FileExistsError:
            if self.exclusive_create:
                raise
        except OSError as error:
            raise self._os_error(error, "cannot create the run folder") from None
        self.created = [path for path in missing if os.path.isdir(path)]

    def _os_error(self, error, what):
        if is_disk_full(error):
            return DiskFullError(f"{self.run_dir}: {what}: no space left on device")
        return KsegError(
            f"{self.run_dir}: {what} ({error.strerror or error}); choose another --run-dir"
        )

    def check_fresh(self):
        """Refuses a folder that holds anything but the lock and kseg temporaries.

        A folder holding a run points to --resume (or says it has no checkpoint to resume
        from); any other content is a user's and is left as it is.
        """
        entries = sorted(name for name in os.listdir(self.run_dir)
                         if name != LOCK_NAME and not is_temporary_name(name))
        checkpoints = os.path.join(self.run_dir, "checkpoints")
        if "checkpoints" in entries and os.path.isdir(checkpoints) and not os.path.islink(checkpoints) and all(
            is_temporary_name(name) for name in os.listdir(checkpoints)
        ):
            entries.remove("checkpoints")  # made by a run killed before it wrote anything
        if not entries:
            return
        checkpoint = os.path.join(self.run_dir, "checkpoints", "last.keras")
        if os.path.isfile(checkpoint):
            raise KsegError(
                f"{self.run_dir}: already holds a kseg run (checkpoints/last.keras); continue it with "
                "--resume, or choose another --run-dir for a new run"
            )
        if any(name in ("config.yaml", "checkpoints") for name in entries):
            raise KsegError(
                f"{self.run_dir}: holds a run that stopped before its first checkpoint (config.yaml, "
                "no checkpoints/last.keras); remove the folder to start again, or choose another --run-dir"
            )
        shown = ", ".join(brief(name, 40) for name in entries[:3])
        raise KsegError(
            f"{self.run_dir}: the folder is not empty ({len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: "
            f"{shown}{', ...' if len(entries) > 3 else ''}); kseg train writes a new run only into a new "
            "or empty folder: choose another --run-dir (or --resume for a kseg run)"
        )

    def remove_run_files(self):
        """Removes what a run writes (config.yaml, checkpoints/, ...) from the folder.

        Used when a fresh run fails before its first checkpoint: the folder was empty when
        it was locked, so these names are this run's own. A file that cannot be removed does
        not keep the others: the first such error is raised once all were tried.
        """
        errors = []
        for name in RUN_FILES:
            path = os.path.join(self.run_dir, name)
            if os.path.islink(path):
                continue
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.isfile(path):
                try:
                    os.remove(path)
                except OSError as error:
                    errors.append(error)
        sweep_temporaries(self.run_dir)
        if errors:
            raise errors[0]

    def release(self, remove_created=False):
        """Releases the lock (the lock file goes too); with `remove_created`, the folders
        this lock created are removed again if they are empty."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            # Removed while still locked: a process that opened the old file sees that the
            # name no longer leads to it and starts again.
            with contextlib.suppress(OSError):
                os.remove(self.path)
            os.close(descriptor)  # drops the flock
        if remove_created:
            for path in self.created:  # deepest first
                with contextlib.suppress(OSError):
                    os.rmdir(path)  # only while empty
            self.created = []


def _read_pid(descriptor):
    try:
        content = os.pread(descriptor, 200, 0)
    except OSError:
        return None
    digits = content.removeprefix(_LOCK_TAG).strip()
    return int(digits) if content.startswith(_LOCK_TAG) and digits.isdigit() else None


def default_run_dir(config):
    """runs/MODEL-DATA-YYYYmmdd-HHMMSS (`lock_run_dir` adds -2, -3, ... when it is taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(runs.DEFAULT_RUNS_ROOT, f"{config.model}-{config.data}-{stamp}")


def lock_run_dir(config, resume):
    """Locks the run folder of `config` (made first if needed) and returns the `RunLock`.

    A fresh run needs a new or empty folder: one holding a run or anything else is refused
    (nothing in it is touched). Without --run-dir a new name is chosen, never one in use.
    Temporaries of killed writes are swept from the whole folder, under the lock.
    """
    if config.run_dir:  # kseg's output policy: never among the run's inputs
        Outputs([config.data_dir, config.classes_file, config.init_from]).check_folder(
            config.run_dir, "--run-dir")
    if resume:
        lock = RunLock(config.run_dir).acquire()
    elif config.run_dir:
        lock = RunLock(config.run_dir, create=True).acquire()
        try:
            lock.check_fresh()
        except BaseException:
            lock.release(remove_created=True)
            raise
    else:
        base = default_run_dir(config)
        for number in range(1, 10000):
            with contextlib.suppress(FileExistsError):  # the name is taken: the next one
                lock = RunLock(base if number == 1 else f"{base}-{number}", exclusive_create=True).acquire()
                break
        else:
            raise KsegError(f"{base}: no free run folder name; give one with --run-dir")
    removed = sweep_temporaries(lock.run_dir)
    if removed:
        logger.info("%s: removed %d temporary file(s) left by a killed run", lock.run_dir, len(removed))
    return lock


