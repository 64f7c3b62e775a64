"""A Lava network dies with its parent, and so does its shared memory.

What Lava 0.10 leaves behind
----------------------------
``Runtime.initialize`` (the ``MultiProcessing`` message infrastructure) forks, from the calling
thread, one OS process per process model and per runtime service, plus the server of a
``multiprocessing.managers.SharedMemoryManager``.  The channel buffers are POSIX shared-memory
segments (``/dev/shm/psm_*``) that the parent creates through that manager and registers with
multiprocessing's resource tracker (a fork+exec'd helper that ignores SIGINT and SIGTERM and
unlinks whatever is still registered once every holder of its pipe has exited).  Nothing ties the
forked processes to the parent: when it dies without ``stop()`` (SIGKILL, SIGTERM's default
action, the OOM killer) they wait on their channels for ever, hold the tracker's pipe open, and
so the segments are never unlinked either.  A KeyboardInterrupt inside Lava's own ``stop()``
escaped the forced cleanup, and the interpreter's exit then joined live actors.

What a :class:`Guard` does (one per network, from ``compile_network`` to ``shutdown``)
-------------------------------------------------------------------------------------
1. *Children.*  While :meth:`Guard.forking` is active in a thread, every process that thread
   forks (``os.register_at_fork``) records its pid and start time in the guard's registry
   directory, sets ``PR_SET_PDEATHSIG = SIGKILL`` when it was forked from the main thread (the
   kernel ties that signal to the forking *thread*, which for the main thread lives as long as
   the process; from another thread it would fire when that thread ends, so there the reaper
   alone is used), exits at once if the parent already died, ignores SIGINT (the parent stops
   the network) and takes the default action on SIGTERM and SIGHUP.  Those three signals are
   blocked across the fork and unblocked once the child has its own handlers, so a SIGTERM sent
   the instant after the fork (Lava terminating a process it just started) never runs the
   parent's handler in the child.
2. *A reaper.*  A small Python process (this file run as a script, standard library only) in its
   own session, so that signals sent to the process group (Ctrl-C, ``timeout``, ``kill -9
   -PGID``) do not reach it, waits on a pidfd of the parent.  If the parent dies before the guard
   is closed, it SIGKILLs the recorded children (pid and start time must both match) and unlinks
   the recorded segments, telling the resource tracker so (no "leaked shared_memory" warnings).
   When the guard closes normally the parent writes ``done`` and the reaper exits.
3. *The next run.*  A registry whose owner and reaper are both dead (a cgroup-wide kill) is
   cleaned by the next :meth:`Guard.start` in any process of the same user.
4. *Signals in the parent.*  From ``start`` to ``close`` SIGINT, SIGTERM and SIGHUP (unless
   ignored) raise :class:`NetworkInterrupted` in the main thread, which unwinds to ``shutdown``;
   later signals are held back until the cleanup is done.  ``close`` then restores the previous
   handlers and re-delivers the first signal (``signal.raise_signal``), so the process ends as
   it would have: KeyboardInterrupt for SIGINT, death by SIGTERM.  If a user's handler returns
   instead, :class:`InterruptedRun` (a RuntimeError) is raised.

The segments created through Lava's ``SharedMemoryManager`` are recorded as they are made (one
short write each, at compile time).  Nothing here runs per Lava step.  Imports Lava lazily: this
module must stay importable by a bare interpreter (the reaper runs it with ``python -I -S``).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import threading
import time

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")  # a POSIX shm segment name we may unlink
_PR_SET_PDEATHSIG = 1
_local = threading.local()  # .guard: the guard whose forking() is active in this thread
_hooks_installed = False
_hooks_lock = threading.Lock()
_prctl = None


class NetworkInterrupted(BaseException):
    """A signal arrived while a Lava network was alive (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on the way swallows it).  ``Guard.close`` re-delivers it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class InterruptedRun(RuntimeError):
    """The Lava run was interrupted by a signal whose handler returned; the network was stopped."""


# -- small helpers (also used by the reaper) -----------------------------------------------------

def starttime(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), or None if it
    is gone or a zombie.  (pid, start time) names a process; a pid alone may be reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


def _kill_recorded(directory: str) -> list[int]:
    killed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return killed
    for entry in entries:
        if not entry.startswith("pid-"):
            continue
        try:
            pid = int(entry[4:])
            with open(os.path.join(directory, entry)) as f:
                start = f.read().strip()
        except (OSError, ValueError):
            continue
        if pid > 1 and pid != os.getpid() and start and starttime(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


def _unlink_recorded(directory: str, tracker_fd: int | None = None,
                     unregister=None) -> list[str]:
    """Unlink the recorded segments that still exist; those were registered with the resource
    tracker and never unregistered, so tell it (through ``tracker_fd`` or ``unregister``)."""
    try:
        with open(os.path.join(directory, "shm")) as f:
            names = [n for n in f.read().split() if _NAME.match(n)]
    except OSError:
        return []
    try:
        import _posixshmem

        shm_unlink = _posixshmem.shm_unlink
    except ImportError:  # pragma: no cover - CPython on Linux has it
        def shm_unlink(name):
            os.unlink("/dev/shm" + name)
    done = []
    for name in dict.fromkeys(names):
        try:
            shm_unlink("/" + name)
        except OSError:
            continue  # gone already (unlinked by Lava, the reaper or the tracker)
        done.append(name)
        msg = f"UNREGISTER:/{name}:shared_memory\n".encode("ascii")
        try:
            if unregister is not None:
                unregister("/" + name, "shared_memory")
            elif tracker_fd is not None:
                os.write(tracker_fd, msg)
        except Exception:  # noqa: BLE001 - the tracker is gone: nothing to tell
            pass
    return done


def clean_registry(directory: str, tracker_fd: int | None = None, unregister=None) -> dict:
    """Kill the recorded processes that are still alive, unlink the recorded segments that still
    exist and remove the registry.  Idempotent; safe against pid reuse."""
    killed = _kill_recorded(directory)
    shm = _unlink_recorded(directory, tracker_fd, unregister)
    shutil.rmtree(directory, ignore_errors=True)
    return {"killed": killed, "shm": shm}


# -- the registry ---------------------------------------------------------------------------------

def registry_root() -> str | None:
    """This user's private folder of registries (``$TMPDIR/icl-lava-UID``, mode 0700), or None if
    it cannot be made safe (then registries live in fresh private temp folders and stale ones are
    not looked for)."""
    root = os.path.join(tempfile.gettempdir(), f"icl-lava-{os.getuid()}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(root)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return root


def reap_stale(root: str | None = None) -> list[dict]:
    """Clean the registries whose owner and reaper are both dead.  Returns what was cleaned."""
    root = registry_root() if root is None else root
    if root is None:
        return []
    out = []
    try:
        entries = os.listdir(root)
    except OSError:
        return out
    for entry in entries:
        m = re.match(r"^(\d+)-(\d+)-", entry)
        if not m:
            continue
        path = os.path.join(root, entry)
        if starttime(int(m.group(1))) == m.group(2):
            continue  # its owner is alive (a network of another process)
        try:
            with open(os.path.join(path, "reaper")) as f:
                rpid, rstart = f.read().split()
            if starttime(int(rpid)) == rstart:
                continue  # its reaper is at work
        except (OSError, ValueError):
            pass
        res = clean_registry(path)
        out.append({"registry": path, **res})
    return out


# -- fork hooks -----------------------------------------------------------------------------------

def _before_fork() -> None:
    """While a guard forks, SIGINT/SIGTERM/SIGHUP are blocked across the fork: a signal that
    reaches the new child before its hook has reset the handlers (Lava terminating a process it
    has just forked) would otherwise run the parent's handler in the child.  It stays pending
    and is delivered, with the child's own handlers, when the hook unblocks it."""
    if getattr(_local, "guard", None) is not None:
        _local.fork_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)


def _restore_fork_mask() -> None:
    old = getattr(_local, "fork_mask", None)
    if old is not None:
        _local.fork_mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _after_fork_in_child() -> None:
    g = getattr(_local, "guard", None)
    if g is None:
        return
    try:
        _child_setup(g)
    finally:
        _restore_fork_mask()


def _child_setup(g) -> None:
    _local.guard = None  # grandchildren are not the guard's
    try:
        if g.main_thread and _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - never break Lava's fork over bookkeeping
        pass
    if os.getppid() != g.owner_pid:
        os._exit(1)  # the parent died before the death signal was armed
    try:
        if g.directory is not None:
            pid = os.getpid()
            with open(os.path.join(g.directory, f"pid-{pid}"), "w") as f:
                f.write(starttime(pid) or "")
    except OSError:
        pass
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    except (OSError, ValueError):
        pass


def _install_hooks() -> None:
    global _hooks_installed, _prctl
    with _hooks_lock:
        if not _hooks_installed:
            if sys.platform.startswith("linux"):
                try:
                    import ctypes

                    _prctl = ctypes.CDLL(None, use_errno=True).prctl
                except (OSError, AttributeError):  # pragma: no cover
                    _prctl = None
            os.register_at_fork(before=_before_fork, after_in_parent=_restore_fork_mask,
                                after_in_child=_after_fork_in_child)
            _hooks_installed = True
        _patch_lava_shared_memory()  # idempotent


def _patch_lava_shared_memory() -> None:
    """Record every segment Lava's SharedMemoryManager creates while a guard is forking."""
    try:
        from lava.magma.runtime.message_infrastructure import shared_memory_manager as smm
    except Exception:  # noqa: BLE001 - no Lava: the guard only handles processes
        return
    cls = smm.SharedMemoryManager
    orig = cls.create_shared_memory
    if getattr(orig, "_icl_recorded", False):
        return

    def create_shared_memory(self, size: int):
        handle = orig(self, size)
        g = getattr(_local, "guard", None)
        if g is not None:
            g.record_shm(handle.name)
        return handle

    create_shared_memory._icl_recorded = True
    cls.create_shared_memory = create_shared_memory


# -- the guard -----------------------------------------------------------------------------------

class Guard:
    """Ties one Lava network's OS processes and shared memory to this process (see the module
    docstring).  ``start()`` before ``create_runtime``, which runs inside ``forking()``;
    ``close()`` after the network was stopped (it also kills whatever is left)."""

    def __init__(self):
        self.owner_pid = os.getpid()
        self.main_thread = threading.current_thread() is threading.main_thread()
        self.directory: str | None = None
        self.pending: int | None = None  # the first signal received, re-delivered by close()
        self.stale: list[dict] = []  # registries of dead runs cleaned by start()
        self.stats: dict = {}
        self._reaper = None
        self._shm_file = None
        self._old_handlers: dict = {}
        self._shielded = False
        self._closed = False

    def start(self) -> "Guard":
        """Clean stale registries, make this one, start the reaper, install the signal handlers.
        (Assign the guard where ``close`` will find it *before* calling this: a signal may
        arrive as soon as the handlers are in place.)"""
        _install_hooks()
        self.stale = reap_stale()
        root = registry_root()
        start = starttime(self.owner_pid) or "0"
        try:
            self.directory = tempfile.mkdtemp(prefix=f"{self.owner_pid}-{start}-",
                                              dir=root or tempfile.gettempdir())
            self._shm_file = open(os.path.join(self.directory, "shm"), "a", buffering=1)
        except OSError:
            self.directory = None  # degrade: death signal only, no reaper
        if self.directory is not None:
            self._spawn_reaper(start)
        self._install_signals()
        return self

    # -- bookkeeping -------------------------------------------------------------------------
    @contextlib.contextmanager
    def forking(self):
        """The processes this thread forks inside the ``with`` block belong to this guard."""
        _local.guard = self
        try:
            yield self
        finally:
            _local.guard = None

    def record_shm(self, name: str) -> None:
        if self._shm_file is not None and _NAME.match(name):
            try:
                self._shm_file.write(name + "\n")
            except (OSError, ValueError):
                pass

    def _spawn_reaper(self, start: str) -> None:
        import subprocess
        from multiprocessing import resource_tracker

        try:
            resource_tracker.ensure_running()
            tfd = resource_tracker.getfd()
        except Exception:  # noqa: BLE001
            tfd = None
        args = [sys.executable, "-I", "-S", os.path.abspath(__file__), "--reap", self.directory,
                str(self.owner_pid), start, str(tfd if tfd is not None else -1)]
        try:
            self._reaper = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True,
                pass_fds=(tfd,) if tfd is not None else (), start_new_session=True)
        except OSError:
            self._reaper = None
            return
        with open(os.path.join(self.directory, "reaper"), "w") as f:
            f.write(f"{self._reaper.pid} {starttime(self._reaper.pid) or 0}")

    # -- signals -----------------------------------------------------------------------------
    def _install_signals(self) -> None:
        if not self.main_thread:
            return  # Python runs signal handlers in the main thread only
        for sig in HANDLED_SIGNALS:
            old = signal.getsignal(sig)
            if old in (signal.SIG_IGN, None):
                continue  # ignored (nohup, background job) or set outside Python: leave it
            self._old_handlers[sig] = old
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.pending is None:
            self.pending = signum
            if not self._shielded:
                self._shielded = True  # later signals wait until the network is cleaned up
                raise NetworkInterrupted(signum)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)
            except (ValueError, TypeError, OSError):
                pass
        self._old_handlers = {}

    def pause_signals(self) -> None:
        """Give SIGINT/SIGTERM/SIGHUP back to their previous handlers while the network waits
        between runs (a streaming session between steps: the user's code runs then, and the
        network's processes ignore SIGINT).  ``resume_signals`` takes them again."""
        if not self._closed and self.pending is None:
            self._restore_signals()

    def resume_signals(self) -> None:
        if not self._closed and not self._old_handlers:
            self._install_signals()

    # -- the end -----------------------------------------------------------------------------
    def close(self) -> dict:
        """Kill what is left of the network, unlink its segments, dismiss the reaper, restore the
        signal handlers, then re-deliver a signal received meanwhile.  Idempotent."""
        if self._closed:
            return self.stats
        self._closed = True
        self._shielded = True
        try:
            self.stats = self._cleanup()
        finally:
            self._restore_signals()
        if self.pending is not None:
            sig, self.pending = self.pending, None
            try:
                signal.raise_signal(sig)  # the previous handler: KeyboardInterrupt, or death
            except BaseException as e:
                raise e from None  # (not "during handling of NetworkInterrupted")
            raise InterruptedRun(f"the Lava run was interrupted by {signal.Signals(sig).name}; "
                                 "its network was stopped")
        return self.stats

    def _cleanup(self) -> dict:
        stats = {"killed": [], "shm": []}
        if self._shm_file is not None:
            try:
                self._shm_file.close()
            except OSError:
                pass
        if self.directory is not None:
            from multiprocessing import resource_tracker

            killed = _kill_recorded(self.directory)
            if killed:
                _reap_children(killed)
            stats = {"killed": killed,
                     "shm": _unlink_recorded(self.directory, unregister=resource_tracker.unregister)}
            shutil.rmtree(self.directory, ignore_errors=True)
        if self._reaper is not None:
            try:
                self._reaper.stdin.write(b"done")
                self._reaper.stdin.close()
            except OSError:
                pass
            try:
                self._reaper.wait(timeout=2)
            except Exception:  # noqa: BLE001 - it has nothing left to do: do not wait for it
                self._reaper.kill()
        return stats


def _reap_children(pids: list[int], timeout: float = 2.0) -> None:
    """Collect the exit status of children killed by the guard (multiprocessing's own children
    through multiprocessing, so that its bookkeeping stays right)."""
    import multiprocessing

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        multiprocessing.active_children()
        if not any(starttime(p) for p in pids):
            return
        time.sleep(0.01)


# -- the reaper (``python -I -S lifecycle.py --reap DIR OWNER START TRACKER_FD``) ----------------

def _reaper_main(argv: list[str]) -> int:
    directory, owner, start, tfd = argv[0], int(argv[1]), argv[2], int(argv[3])
    for sig in HANDLED_SIGNALS:  # like the resource tracker: only SIGKILL stops it
        signal.signal(sig, signal.SIG_IGN)
    tracker_fd = tfd if tfd >= 0 else None
    pidfd = None
    dead = False
    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        dead = True
    except (AttributeError, OSError):
        pidfd = None  # no pidfd (kernel < 5.3): poll the parent pid
    if not dead and starttime(owner) != start:
        dead = True  # the owner died and its pid was reused before we looked
    while not dead:
        fds = [0] + ([pidfd] if pidfd is not None else [])
        try:
            ready, _, _ = select.select(fds, [], [], None if pidfd is not None else 0.2)
        except InterruptedError:
            continue
        if 0 in ready:
            data = os.read(0, 64)
            if b"done" in data:
                return 0  # the guard was closed: its owner cleaned up
            if not data:
                dead = True  # EOF without "done": the owner is gone
        if pidfd is not None and pidfd in ready:
            dead = True
        if pidfd is None and os.getppid() != owner:
            dead = True
    try:
        clean_registry(directory, tracker_fd)
    except OSError as e:  # pragma: no cover
        if e.errno != errno.ENOENT:
            raise
    return 0


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--reap":
    sys.exit(_reaper_main(sys.argv[2:]))
