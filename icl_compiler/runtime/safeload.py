"""Read a saved program's ``program.json`` and ``weights.npz`` with bounds (issue 16, item 7).

``load_program_files(directory, specs)`` returns ``(doc, arrays)``.  Before anything is read:

- each file must be a regular file (``os.stat`` first: a FIFO, a device or a directory is
  refused without being opened; then it is opened with ``O_NONBLOCK | O_NOFOLLOW`` and must be
  the same file); a symlink must stay inside the directory (ONNX external data refuses the
  same); the files are opened relative to one descriptor of the directory, so a concurrent save
  (runtime/outdir.py exchanges directories) yields the old or the new pair, never a mix;
- ``program.json`` may hold at most ``max_json_bytes`` (64 MiB); its size is read from ``fstat``
  and no more than that is read; all declared arrays together at most ``max_array_bytes``;
- ``specs`` (a mapping or a callback of the parsed program.json, because the program format is
  being retyped) gives each expected array's shape and dtypes; ``weights.npz`` may be no larger
  than those arrays plus zip and npy overheads;
- each referenced member is checked against its spec *before it is decompressed*: stored or
  deflated only (a bzip2/lzma member would be decompressed in one unbounded call), its npy
  header read from the member stream (shape, dtype, no objects), and its uncompressed size
  recorded in the zip must equal the header plus the declared data; then exactly that many bytes
  are read, and the zip's CRC is checked;
- members no spec names are ignored and never decompressed.

Every failure is one :class:`ProgramFileError` (a CompileError) whose one-line message names the
file and, for an array, its key.

How ``icl_compiler.load`` will call it (after the refactor of runtime/program.py)::

    def specs(doc):                 # the shapes program.json declares
        return program_array_specs(doc)  # e.g. {"w/syn": ArraySpec((post, pre), ("int8",))}
    doc, arrays = load_program_files(directory, specs)
    if doc.get("format") != FORMAT: ...
    ng = NeuroGraph.from_dict(doc["neuro"], arrays)
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np

from ..errors import CompileError

MAX_PROGRAM_JSON = 64 * 2**20
MAX_ARRAY_BYTES = 8 * 2**30  # all arrays together (a program declaring more is refused)
NPY_HEADER_MAX = 10000  # numpy's own bound on an npy header
ZIP_SLACK = 1 << 20  # zip directory, local headers, deflate expansion of incompressible data


class ProgramFileError(CompileError):
    """A saved program's file is missing, unsafe, too large or does not match its declaration."""

    def __init__(self, file, reason: str, *, key: str | None = None):
        self.file = str(file)
        self.key = key
        where = f"{file}: array {key!r}" if key is not None else str(file)
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class ArraySpec:
    """What one array of weights.npz must be: its shape (None: any shape of at most
    ``max_bytes``) and the dtype names it may have."""

    shape: tuple[int, ...] | None
    dtypes: tuple[str, ...]
    max_bytes: int | None = None

    def nbytes_bound(self) -> int:
        if self.shape is not None and not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in self.shape):
            raise ValueError(f"shape {list(self.shape)[:8]} is not a list of sizes")
        if not self.dtypes:
            raise ValueError("no dtype allowed")
        if self.shape is None:
            if self.max_bytes is None:
                raise ValueError("an ArraySpec without a shape needs max_bytes")
            return int(self.max_bytes)
        item = max(np.dtype(d).itemsize for d in self.dtypes)
        return int(math.prod(self.shape)) * item


Specs = Union[Mapping[str, ArraySpec], Callable[[dict], Mapping[str, ArraySpec]]]

_KIND = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK:
         "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def _open_regular(dfd: int, real_dir: str, directory: Path, name: str) -> tuple[int, int]:
    """An fd of ``directory/name`` (a regular file whose symlinks stay in the directory) and
    its size, never blocking on a FIFO or reading a device."""
    path = directory / name
    try:
        lst = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        raise ProgramFileError(path, "missing (not a saved program?)") from None
    except OSError as e:
        raise ProgramFileError(path, e.strerror or str(e)) from None
    target = name
    if stat.S_ISLNK(lst.st_mode):
        real = os.path.realpath(os.path.join(real_dir, name))
        if os.path.commonpath([real_dir, real]) != real_dir:
            raise ProgramFileError(path, f"is a symlink out of the program directory (to {real})"
                                         "; copy the file into the directory")
        target = real  # inside: open it by its real path, without following links again
    try:
        st = os.stat(target, dir_fd=dfd)
    except OSError as e:
        raise ProgramFileError(path, e.strerror or str(e)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise ProgramFileError(path, f"is {kind}, not a regular file")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError as e:
        raise ProgramFileError(path, e.strerror or str(e)) from None
    fst = os.fstat(fd)
    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
        os.close(fd)
        raise ProgramFileError(path, "changed while it was being opened")
    return fd, fst.st_size


def _read_json(fd: int, size: int, path: Path, cap: int) -> dict:
    if size > cap:
        raise ProgramFileError(path, f"is {size} bytes, more than the limit of {cap}")
    chunks, left = [], size + 1  # one byte more: a file that grew is noticed
    while left > 0:
        b = os.read(fd, min(left, 1 << 20))
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    data = b"".join(chunks)
    if len(data) > size:
        raise ProgramFileError(path, "grew while it was being read")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, huge int literals
        raise ProgramFileError(path, f"is not valid JSON ({str(e)[:120]})") from None
    if not isinstance(doc, dict):
        raise ProgramFileError(path, f"holds a JSON {type(doc).__name__}, not an object")
    return doc


def _read_member(z: zipfile.ZipFile, path: Path, key: str, spec: ArraySpec) -> np.ndarray:
    name = key + ".npy"
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ProgramFileError(path, "missing from the archive", key=key) from None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ProgramFileError(path, f"compression method {info.compress_type} (only stored "
                                     "or deflated members are read)", key=key)
    bound = spec.nbytes_bound()
    if info.file_size > bound + NPY_HEADER_MAX + 16:
        raise ProgramFileError(path, f"uncompressed size {info.file_size} bytes exceeds the "
                                     f"declared {bound}", key=key)
    try:
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy format version {version}")
            header = f.tell()
            if dtype.hasobject or dtype.name not in spec.dtypes:
                raise ProgramFileError(path, f"dtype {dtype.name}, declared "
                                             f"{' or '.join(spec.dtypes)}", key=key)
            nbytes = int(math.prod(shape)) * dtype.itemsize
            if spec.shape is not None and tuple(shape) != tuple(spec.shape):
                raise ProgramFileError(path, f"shape {list(shape)}, declared "
                                             f"{list(spec.shape)}", key=key)
            if spec.shape is None and nbytes > bound:
                raise ProgramFileError(path, f"{nbytes} bytes, more than the limit of {bound}",
                                       key=key)
            if info.file_size != header + nbytes:
                raise ProgramFileError(path, f"uncompressed size {info.file_size} bytes, but "
                                             f"its header declares {header + nbytes}", key=key)
            buf = bytearray(nbytes)
            view, got = memoryview(buf), 0
            while got < nbytes:
                n = f.readinto(view[got:])
                if not n:
                    raise ProgramFileError(path, f"truncated ({got} of {nbytes} bytes)", key=key)
                got += n
            f.read(1)  # reach the member's end: the CRC is checked there
    except ProgramFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError) as e:  # bad header, bad CRC, encrypted member, ...
        raise ProgramFileError(path, f"cannot be read ({str(e)[:120]})", key=key) from None
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_json_file(directory: str | os.PathLike, name: str = "program.json", *,
                   max_bytes: int = MAX_PROGRAM_JSON) -> dict:
    """Only the JSON object of ``directory/name``, with the same checks (a regular file, at
    most ``max_bytes``); e.g. to tell whether a directory holds a previous program."""
    d = Path(directory)
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ProgramFileError(d, e.strerror or str(e)) from None
    try:
        real_dir = os.path.realpath(f"/proc/self/fd/{dfd}") if os.path.isdir("/proc/self/fd") \
            else os.path.realpath(d)
        fd, size = _open_regular(dfd, real_dir, d, name)
        try:
            return _read_json(fd, size, d / name, max_bytes)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def load_program_files(directory: str | os.PathLike, specs: Specs, *,
                       max_json_bytes: int = MAX_PROGRAM_JSON,
                       max_array_bytes: int = MAX_ARRAY_BYTES,
                       json_name: str = "program.json",
                       weights_name: str = "weights.npz") -> tuple[dict, dict[str, np.ndarray]]:
    """Read ``program.json`` and the arrays ``specs`` declares from ``weights.npz``."""
    d = Path(directory)
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        why = ("not a directory" if e.errno == errno.ENOTDIR else
               "holds no program (it does not exist)" if e.errno == errno.ENOENT else
               e.strerror or str(e))
        raise ProgramFileError(d, why) from None
    try:
        real_dir = os.path.realpath(f"/proc/self/fd/{dfd}") if os.path.isdir("/proc/self/fd") \
            else os.path.realpath(d)
        fd, size = _open_regular(dfd, real_dir, d, json_name)
        try:
            doc = _read_json(fd, size, d / json_name, max_json_bytes)
        finally:
            os.close(fd)
        if callable(specs):
            try:
                specs = specs(doc)
            except ProgramFileError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ProgramFileError(d / json_name, f"malformed ({type(e).__name__}: "
                                                      f"{str(e)[:100]})") from None
        wpath = d / weights_name
        try:
            bounds = {k: s.nbytes_bound() for k, s in specs.items()}
        except (ValueError, TypeError, AttributeError) as e:
            raise ProgramFileError(d / json_name, f"declares an impossible array ({e})") from None
        if sum(bounds.values()) > max_array_bytes:
            raise ProgramFileError(d / json_name, f"declares {sum(bounds.values())} bytes of "
                                                  f"arrays, more than the limit of "
                                                  f"{max_array_bytes}")
        cap = sum(bounds.values()) + len(bounds) * (NPY_HEADER_MAX + 1024) + ZIP_SLACK
        cap += sum(bounds.values()) // 200  # deflate's worst-case expansion
        fd, size = _open_regular(dfd, real_dir, d, weights_name)
        with os.fdopen(fd, "rb") as f:
            if size > cap:
                raise ProgramFileError(wpath, f"is {size} bytes, more than the {cap} that the "
                                              f"{len(bounds)} declared arrays can take")
            try:
                z = zipfile.ZipFile(f)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
                raise ProgramFileError(wpath, f"is not a valid npz archive ({str(e)[:100]})") \
                    from None
            with z:
                arrays = {k: _read_member(z, wpath, k, s) for k, s in specs.items()}
    finally:
        os.close(dfd)
    return doc, arrays
