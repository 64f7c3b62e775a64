"""Write a set of named files into an output directory, atomically and without surprises.

``write_output_dir(target, files, force=..., is_previous=..., owned=...)`` is what
``Program.save`` (and so ``icl-compile -o OUT``) will call.  What the user gets:

- **Only the compiler's files are replaced.**  Files the user keeps in OUT (notes, inputs,
  subfolders) stay; of the previous program's files (``owned``), those not written this time
  (an old ``output.npy``) are removed, since they no longer describe the program.  A directory
  that exists, is not empty and holds no previous program (``is_previous``) is refused unless
  ``force=True`` (then its files are kept as well).
- **A symlink stays a link.**  ``-o link`` writes into the directory the link points to.  A
  dangling link, a link loop or a link to a file is refused.
- **The swap is atomic.**  The new directory is built next to the target
  (``.NAME.tmp-PID-START-RAND``: the new files, plus hard links of the kept files, subfolders
  rebuilt with links inside) and exchanged with the old one in one ``renameat2(RENAME_EXCHANGE)``;
  a reader sees the old program or the new one, never a mix, and OUT never goes missing.  Where
  the file system cannot exchange, two renames through ``.NAME.old-PID-START-RAND`` are used
  instead.  When OUT is the current directory (``-o .``), contains it, or is a mount point, the
  directory itself must stay (a shell standing in it would be left in a deleted directory), so
  each file is replaced atomically in place instead, in the order given (put the file that marks
  a complete program last); the set as a whole is then not atomic.
- **Leftovers of killed runs are cleaned up.**  ``.NAME.tmp-*`` and ``.NAME.old-*`` next to
  OUT (and ``.NAME.tmp-*`` inside it, from in-place runs) whose process is dead are removed by
  the next run; if OUT is missing because a run died between the two fallback renames, the
  previous program is moved back from ``.NAME.old-*`` first.  ``Written.cleaned`` lists them.
- **Every file-system error is one OutputError** (a CompileError, ``exit_code`` 3) whose one-line
  message names the path and the OS reason; nothing is left behind (the temp directory and any
  parent folders this call created are removed, the previous program is kept).

``files`` maps a plain file name to its bytes or to a writer ``callback(path)`` that creates the
file at ``path`` (e.g. ``lambda p: numpy.savez_compressed(p, **arrays)``).  Written files are
fsync'ed before the swap.  Exceptions other than OSError from a writer propagate unchanged (after
the same cleanup).

How Program.save will call it (after the refactor of runtime/program.py)::

    files = {"weights.npz": lambda p: np.savez_compressed(p, **arrays),
             "report.json": report_bytes, **(extra_files or {}),
             "program.json": program_bytes}          # last: it marks a complete program
    return write_output_dir(directory, files, force=force,
                            is_previous=lambda d: _is_program_file(d / "program.json"),
                            owned=PROGRAM_FILES + ("report.json", "output.npy",
                                                   "partition.svg")).path

and the CLI will print ``OutputError`` as ``icl-compile: <message>`` with ``exit_code``.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Union

from ..errors import CompileError

Writer = Union[bytes, Callable[[Path], None]]
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = None


class OutputError(CompileError):
    """The output directory cannot be written (read-only or full file system, permissions, a
    dangling symlink, ...).  The CLI exits with ``exit_code``."""

    exit_code = 3

    def __init__(self, path, reason: str):
        self.path = str(path)
        super().__init__(f"cannot write output directory {path}: {reason}")


@dataclass
class Written:
    path: Path  # as the caller named it (a symlink keeps its name)
    real: Path  # the directory written (a symlink's target)
    method: str  # "exchange", "renames", "in-place" or "new"
    kept: list[str] = field(default_factory=list)  # entries of the user's kept
    removed: list[str] = field(default_factory=list)  # previous program files not rewritten
    cleaned: list[str] = field(default_factory=list)  # leftovers of killed runs handled


# -- small OS helpers ------------------------------------------------------------------------------

def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); OSError if unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.renameat2  # noqa: B018 - glibc >= 2.28
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(a))
    if _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                       _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(a), None, str(b))


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in (b"Z", b"X") else fields[19].decode()


def _tag() -> str:
    pid = os.getpid()
    return f"{pid}-{_starttime(pid) or 0}-{secrets.token_hex(4)}"


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(e: OSError, user: Path) -> str:
    text = e.strerror or str(e)
    where = e.filename if e.filename not in (None, str(user)) else None
    return f"{text} ({where})" if where else text


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- the steps ------------------------------------------------------------------------------------

def _check_names(files: Mapping[str, Writer]) -> None:
    if not files:
        raise ValueError("write_output_dir needs at least one file")
    for n in files:
        if not isinstance(n, str) or not n or n in (".", "..") or "/" in n or "\0" in n:
            raise ValueError(f"not a plain file name: {n!r}")


def _resolve(user: Path) -> Path:
    """The directory to write: a symlink's target; OutputError for what cannot be one."""
    try:
        st = os.lstat(user)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(user, _reason(e, user)) from None
    real = Path(os.path.realpath(user))
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            tst = os.stat(user)
        except OSError as e:
            what = ("a symlink loop" if e.errno == errno.ELOOP else
                    f"a symlink to {os.readlink(user)}, which does not exist"
                    if e.errno == errno.ENOENT else f"a symlink ({_reason(e, user)})")
            raise OutputError(user, f"the path is {what}") from None
        if not stat.S_ISDIR(tst.st_mode):
            raise OutputError(user, f"the path is a symlink to {real}, which is not a directory")
    elif st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputError(user, "the path exists and is not a directory")
    if real.parent == real:
        raise OutputError(user, "cannot replace the root directory")
    return real


_LEFT = r"^\.{name}\.(tmp|old)-(?:(\d+)-(\d+)-[0-9a-f]+|.+)$"


def _stale(m: re.Match) -> bool:
    pid, start = m.group(2), m.group(3)
    if pid is None:
        return True  # an older version's temp name (tempfile.mkdtemp): no owner recorded
    return _starttime(int(pid)) != start


def _clean_leftovers(real: Path) -> list[str]:
    """Remove what killed runs left next to (and, from in-place runs, inside) ``real``; if
    ``real`` is missing but a fallback ``.old`` holds the previous program, move it back."""
    pat = re.compile(_LEFT.format(name=re.escape(real.name)))
    out = []
    try:
        around = sorted(os.listdir(real.parent))
    except FileNotFoundError:
        around = []
    for entry in around:
        m = pat.match(entry)
        if not m or not _stale(m):
            continue
        p = real.parent / entry
        if m.group(1) == "old" and not os.path.lexists(real) and (p / "x").is_dir():
            os.rename(p / "x", real)
            out.append(f"{p}/x (restored as {real})")
        _rmtree(p)
        out.append(str(p))
    if real.is_dir():
        for entry in sorted(os.listdir(real)):
            m = pat.match(entry)
            if m and m.group(1) == "tmp" and _stale(m):
                _rmtree(real / entry)
                out.append(str(real / entry))
    return out


def _write_files(stage: Path, files: Mapping[str, Writer]) -> None:
    for name, data in files.items():
        path = stage / name
        if isinstance(data, (bytes, bytearray, memoryview)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            data(path)
            if not path.is_file():
                raise OSError(errno.ENOENT, "the writer did not create the file", str(path))
            _fsync_path(path)


def _replicate(src: Path, dst: Path) -> None:
    """Make ``dst`` hold what ``src`` holds without copying data: hard links for files,
    subfolders rebuilt (links inside), symlinks recreated; copies where links are refused."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        for e in sorted(os.listdir(src)):
            _replicate(src / e, dst / e)
        shutil.copystat(src, dst, follow_symlinks=False)
        if os.geteuid() == 0:
            os.chown(dst, st.st_uid, st.st_gid)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    else:
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP,
                               errno.EOPNOTSUPP) or not stat.S_ISREG(st.st_mode):
                raise
            shutil.copy2(src, dst)


def _contains_cwd(real: Path) -> bool:
    try:
        cwd = Path(os.getcwd())
    except OSError:
        return False
    return cwd == real or real in cwd.parents


def check_output_dir(target: str | os.PathLike, *, force: bool = False,
                     is_previous: Callable[[Path], bool] | None = None) -> None:
    """What :func:`write_output_dir` would refuse, checked up front without writing anything
    (the CLI calls it before compiling, so a foreign ``-o`` is not found out minutes later):
    a path that cannot be a directory, or a non-empty directory without a previous program and
    without ``force``.  Write errors can still come at the write itself."""
    user = Path(target)
    real = _resolve(user)
    try:
        if real.is_dir():
            pat = re.compile(_LEFT.format(name=re.escape(real.name)))
            entries = [e for e in os.listdir(real) if not pat.match(e)]
            if entries and not force and not (is_previous is not None and is_previous(real)):
                raise OutputError(user, _FOREIGN)
    except OSError as e:
        raise OutputError(user, _reason(e, user)) from None


_FOREIGN = ("the directory is not empty and holds no previous program; choose another directory "
            "or pass --force")


def write_output_dir(target: str | os.PathLike, files: Mapping[str, Writer], *,
                     force: bool = False, is_previous: Callable[[Path], bool] | None = None,
                     owned: Iterable[str] = ()) -> Written:
    """Write ``files`` into the directory ``target`` (see the module docstring)."""
    _check_names(files)
    user = Path(target)
    real = _resolve(user)
    owned = set(owned)
    created: list[Path] = []  # parent folders this call creates, deepest first
    stage: Path | None = None
    try:
        cleaned = _clean_leftovers(real)
        exists = real.is_dir()
        entries: list[str] = []
        previous = False
        if exists:
            pat = re.compile(_LEFT.format(name=re.escape(real.name)))
            entries = sorted(e for e in os.listdir(real) if not pat.match(e))
            previous = bool(entries) and is_previous is not None and bool(is_previous(real))
            if entries and not previous and not force:
                raise OutputError(user, _FOREIGN)
        else:  # parent folders along the path as given (not through a dangling link)
            p = user.absolute().parent
            while not os.path.lexists(p) and p != p.parent:
                created.append(p)
                p = p.parent
            user.absolute().parent.mkdir(parents=True, exist_ok=True)
            real = _resolve(user)
        drop = {e for e in entries if e in owned and e not in files} if previous else set()
        kept = [e for e in entries if e not in files and e not in drop]
        if exists and (_contains_cwd(real) or os.path.ismount(real)):
            stage = real / f".{real.name}.tmp-{_tag()}"
            os.mkdir(stage, 0o700)
            _write_files(stage, files)
            _commit_in_place(real, stage, files, drop)
            _rmtree(stage)
            stage = None
            _fsync_path(real, directory=True)
            return Written(user, real, "in-place", kept, sorted(drop), cleaned)
        stage = real.parent / f".{real.name}.tmp-{_tag()}"
        os.mkdir(stage, 0o777)  # the umask decides, as for any new directory
        _write_files(stage, files)
        if not exists:
            _fsync_path(stage, directory=True)
            os.rename(stage, real)
            stage = None
            _fsync_path(real.parent, directory=True)
            return Written(user, real, "new", [], [], cleaned)
        for e in kept:
            _replicate(real / e, stage / e)
        st = os.stat(real)
        os.chmod(stage, stat.S_IMODE(st.st_mode))
        if os.geteuid() == 0:
            os.chown(stage, st.st_uid, st.st_gid)
        _fsync_path(stage, directory=True)
        method = _swap(real, stage)
        _rmtree(stage)  # now the previous directory
        stage = None
        _fsync_path(real.parent, directory=True)
        return Written(user, real, method, kept, sorted(drop), cleaned)
    except OSError as e:
        _undo(stage, created)
        raise OutputError(user, _reason(e, user)) from None
    except BaseException:
        _undo(stage, created)
        raise


def _swap(real: Path, stage: Path) -> str:
    try:
        _exchange(stage, real)
        return "exchange"
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    old = real.parent / f".{real.name}.old-{_tag()}"
    os.mkdir(old, 0o700)
    try:
        os.rename(real, old / "x")
    except BaseException:
        _rmtree(old)
        raise
    try:
        os.rename(stage, real)
    except BaseException:
        os.rename(old / "x", real)  # put the previous program back
        _rmtree(old)
        raise
    os.rename(old / "x", stage)  # so that the caller removes the previous directory
    _rmtree(old)
    return "renames"


def _commit_in_place(real: Path, stage: Path, files: Mapping[str, Writer],
                     drop: set[str]) -> None:
    """Replace each file with one rename, keeping a hard link of the old one to roll back."""
    backup = stage / ".previous"
    os.mkdir(backup, 0o700)
    done: list[tuple[str, bool]] = []  # (name, had an old version)
    try:
        for n in list(files) + sorted(drop):
            dst = real / n
            had = os.path.lexists(dst)
            if had:
                os.link(dst, backup / n, follow_symlinks=False)
            if n in files:
                os.replace(stage / n, dst)
            else:
                os.unlink(dst)
            done.append((n, had))
    except BaseException:
        for n, had in reversed(done):
            try:
                if had:
                    os.replace(backup / n, real / n)
                else:
                    os.unlink(real / n)
            except OSError:
                pass
        raise


def _undo(stage: Path | None, created: list[Path]) -> None:
    if stage is not None:
        _rmtree(stage)
    for d in created:
        try:
            d.rmdir()
        except OSError:
            break
