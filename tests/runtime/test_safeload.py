"""Bounded, safe loading of a saved program (runtime/safeload.py; issue 16, item 7): FIFOs and
devices refused without blocking, size caps from fstat and from the declared shapes, npz members
checked from their header before they are decompressed, unreferenced members never read,
symlinks out of the directory refused; one ProgramFileError naming the file and key."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.runtime.safeload import ArraySpec, ProgramFileError, load_program_files

GiB = 2**30
W = np.arange(12, dtype=np.int8).reshape(3, 4)
B = np.arange(3, dtype=np.int64)


def specs_of(doc: dict) -> dict:
    """The test format: program.json lists each array's shape and dtype."""
    return {k: ArraySpec(tuple(s), (d,)) for k, (s, d) in doc["arrays"].items()}


def write_program(d: Path, arrays=None, declared=None, compressed=True) -> Path:
    arrays = {"w": W, "b": B} if arrays is None else arrays
    declared = declared or {k: [list(a.shape), a.dtype.name] for k, a in arrays.items()}
    d.mkdir(exist_ok=True)
    (d / "program.json").write_text(json.dumps({"format": "t", "arrays": declared}))
    (np.savez_compressed if compressed else np.savez)(d / "weights.npz", **arrays)
    return d


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail instead of hanging (an open() of a FIFO blocks until a writer comes)."""
    def boom(*a):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def peak_memory(limit: int):
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak / 2**20:.1f} MiB"


def npy_header(shape, dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def zeros_member(shape, dtype):
    """(deflated bytes, uncompressed size, crc) of an .npy member of zeros, built in ~0.1 s
    whatever its size: the zeros are 16 MiB blocks, each compressed once after a full flush."""
    head = npy_header(shape, dtype)
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    chunk = 16 << 20
    assert n % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)]
    zc = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    z = bytes(chunk)
    for _ in range(n // chunk):
        parts.append(zc)
        crc = zlib.crc32(z, crc)
    parts.append(c.flush())
    return b"".join(parts), len(head) + n, crc


def write_zip(path: Path, members) -> None:
    """A zip from (name, method, data as stored, uncompressed size, crc) members."""
    out, central = io.BytesIO(), []
    for name, method, data, size, crc in members:
        off = out.tell()
        nb = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc,
                              len(data), size, len(nb), 0) + nb + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0,
                                   0x21, crc, len(data), size, len(nb), 0, 0, 0, 0, 0, off)
                       + nb)
    cd = out.tell()
    for c in central:
        out.write(c)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                          out.tell() - cd, cd, 0))
    path.write_bytes(out.getvalue())


def member_of(arr: np.ndarray, name: str, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    raw = buf.getvalue()
    if method == zipfile.ZIP_DEFLATED:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = c.compress(raw) + c.flush()
    else:
        data = raw
    return (name + ".npy", method, data, len(raw), zlib.crc32(raw))


# -- it loads what it should ------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [True, False])
def test_loads_the_declared_arrays(tmp_path, compressed):
    d = write_program(tmp_path / "p", {"w": W, "b": B, "f": np.asfortranarray(W.T)},
                      compressed=compressed)
    doc, arrays = load_program_files(d, specs_of)
    assert doc["format"] == "t" and set(arrays) == {"w", "b", "f"}
    np.testing.assert_array_equal(arrays["w"], W)
    np.testing.assert_array_equal(arrays["f"], W.T)
    assert arrays["b"].dtype == np.int64 and arrays["w"].flags.writeable


def test_a_real_saved_program_loads_like_numpy(tmp_path):
    import icl_compiler as icl
    from tests.helpers import fixture

    path, x, meta = fixture("tok_relu_perhead_fillneginf_1l2h")
    prog = icl.compile(path, precision="fixed", calibration=x, max_context=meta["t_max"])
    out = prog.save(tmp_path / "out")

    def today(doc):  # the program format (1 and 2): shapes from the populations and synapses
        ne = doc["neuro"]
        size = {p["name"]: p["size"] for p in ne["populations"]}
        sp = {f"bias/{p['name']}": ArraySpec((p["size"],), ("int64", "float64"))
              for p in ne["populations"] if p["bias"]}
        for p in ne["populations"]:
            if p.get("norm"):  # icl-program/2: norm parameters of the population
                for k in ("gamma", "beta"):
                    sp[f"norm/{p['name']}/{k}"] = ArraySpec((p["size"],), ("float64",))
        sp.update({f"w/{s['name']}": ArraySpec((size[s["post"]], size[s["pre"]]),
                                                ("int8", "int64", "float64"))
                   for s in ne["synapses"]})
        for items in (ne["populations"], ne["synapses"]):
            for it in items:
                for v in it["attrs"].values():
                    if isinstance(v, dict) and "__array__" in v:
                        sp[v["__array__"]] = ArraySpec(None, ("float64", "int64"), 2**20)
        return sp

    doc, arrays = load_program_files(out, today)
    with np.load(out / "weights.npz") as z:
        assert set(arrays) == set(z.files)
        for k in z.files:
            np.testing.assert_array_equal(arrays[k], z[k], err_msg=k)
            assert arrays[k].dtype == z[k].dtype
    assert doc["format"].startswith("icl-program/")


# -- issue 16 item 7 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["program.json", "weights.npz"])
def test_a_fifo_is_refused_without_blocking(tmp_path, name):
    d = write_program(tmp_path / "p")
    (d / name).unlink()
    os.mkfifo(d / name)
    with deadline(5), pytest.raises(ProgramFileError, match=rf"{name}: is a FIFO, not a "
                                                            r"regular file"):
        load_program_files(d, specs_of)


def test_program_json_linked_to_dev_zero_is_refused(tmp_path):
    d = write_program(tmp_path / "p")
    (d / "program.json").unlink()
    (d / "program.json").symlink_to("/dev/zero")
    with deadline(5), peak_memory(2**20), pytest.raises(
            ProgramFileError, match=r"program.json: is a symlink out of the program directory "
                                    r"\(to /dev/zero\)"):
        load_program_files(d, specs_of)
    (d / "zero").symlink_to("/dev/zero")  # a link inside that leads out is out as well
    (d / "program.json").unlink()
    (d / "program.json").symlink_to("zero")
    with pytest.raises(ProgramFileError, match="symlink out of the program directory"):
        load_program_files(d, specs_of)


def test_a_device_inside_the_directory_is_refused(tmp_path):
    d = write_program(tmp_path / "p")
    (d / "program.json").unlink()
    try:
        os.mknod(d / "program.json", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    with deadline(5), pytest.raises(ProgramFileError, match="is a character device"):
        load_program_files(d, specs_of)


def test_weights_symlinked_out_of_the_directory_is_refused(tmp_path):
    d = write_program(tmp_path / "p")
    os.rename(d / "weights.npz", tmp_path / "elsewhere.npz")
    (d / "weights.npz").symlink_to(tmp_path / "elsewhere.npz")
    with pytest.raises(ProgramFileError, match=r"weights.npz: is a symlink out of the program "
                                               r"directory"):
        load_program_files(d, specs_of)
    os.rename(tmp_path / "elsewhere.npz", d / "v2.npz")  # a link inside the directory is fine
    (d / "weights.npz").unlink()
    (d / "weights.npz").symlink_to("v2.npz")
    np.testing.assert_array_equal(load_program_files(d, specs_of)[1]["w"], W)


def test_oversized_program_json_is_refused_before_reading(tmp_path):
    d = write_program(tmp_path / "p")
    with open(d / "program.json", "r+b") as f:
        f.truncate(100 * 2**20)  # a sparse 100 MiB file: reading it would show in the peak
    with peak_memory(2**20), pytest.raises(ProgramFileError, match=r"program.json: is 104857600 "
                                                                   r"bytes, more than the limit "
                                                                   r"of 67108864"):
        load_program_files(d, specs_of)


def test_unused_gigabyte_member_is_never_decompressed(tmp_path):
    """A 1 MiB weights.npz with an unused 1 GiB member was fully decompressed and loaded."""
    d = write_program(tmp_path / "p")
    big = zeros_member((GiB,), np.uint8)
    write_zip(d / "weights.npz", [member_of(W, "w"), ("unused.npy", zipfile.ZIP_DEFLATED, *big),
                                  member_of(B, "b")])
    assert (d / "weights.npz").stat().st_size < 2**20 + 4096
    t0 = time.monotonic()
    with peak_memory(8 * 2**20):
        doc, arrays = load_program_files(d, specs_of)
    assert time.monotonic() - t0 < 1 and set(arrays) == {"w", "b"}


def test_a_matrix_replaced_by_a_gigabyte_vector_is_refused_from_its_header(tmp_path):
    """The referenced matrix replaced by a 1 GiB vector was decompressed before its shape was
    rejected."""
    d = write_program(tmp_path / "p", {"w": W},
                      declared={"w": [[1 << 14, 1 << 14], "float32"]})  # a 1 GiB matrix
    write_zip(d / "weights.npz", [("w.npy", zipfile.ZIP_DEFLATED,
                                   *zeros_member((1 << 28,), np.float32))])
    t0 = time.monotonic()
    with peak_memory(2**20), pytest.raises(ProgramFileError, match=r"weights.npz: array 'w': "
                                                                   r"shape \[268435456\], "
                                                                   r"declared \[16384, 16384\]"):
        load_program_files(d, specs_of)
    assert time.monotonic() - t0 < 1


def test_weights_larger_than_declared_is_refused_before_reading(tmp_path):
    d = write_program(tmp_path / "p")
    with open(d / "weights.npz", "ab") as f:
        f.truncate(50 * 2**20)
    with peak_memory(2**20), pytest.raises(ProgramFileError, match=r"weights.npz: is 52428800 "
                                                                   r"bytes, more than the"):
        load_program_files(d, specs_of)


def test_program_declaring_too_much_is_refused(tmp_path):
    d = write_program(tmp_path / "p", declared={"w": [[1 << 20, 1 << 20], "float64"],
                                                "b": [[3], "int64"]})
    with pytest.raises(ProgramFileError, match=r"program.json: declares 8796093022232 bytes of "
                                               r"arrays, more than the limit"):
        load_program_files(d, specs_of)


# -- members that lie ---------------------------------------------------------------------------------

def _zip_with_w(d: Path, member) -> None:
    write_zip(d / "weights.npz", [member, member_of(B, "b")])


def test_member_whose_uncompressed_size_exceeds_the_declaration(tmp_path):
    d = write_program(tmp_path / "p")
    name, m, data, size, crc = member_of(W, "w")
    _zip_with_w(d, (name, m, data, 10 * GiB % 2**32, crc))
    with peak_memory(2**20), pytest.raises(
            ProgramFileError, match=r"array 'w': uncompressed size 2147483648 bytes exceeds the "
                                    r"declared 12"):
        load_program_files(d, specs_of)


def test_member_with_data_after_the_array(tmp_path):
    d = write_program(tmp_path / "p")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, W)
    raw = buf.getvalue() + b"\0" * 1000  # a bomb would hide here
    _zip_with_w(d, ("w.npy", zipfile.ZIP_STORED, raw, len(raw), zlib.crc32(raw)))
    with pytest.raises(ProgramFileError, match=r"array 'w': uncompressed size 1140 bytes, but "
                                               r"its header declares 140"):
        load_program_files(d, specs_of)


@pytest.mark.parametrize("case, words", [
    ("dtype", r"array 'w': dtype int16, declared int8"),
    ("object", r"array 'w': dtype object, declared int8"),
    ("bzip2", r"array 'w': compression method 12"),
    ("crc", r"array 'w': cannot be read \(Bad CRC-32"),
    ("truncated", r"array 'w': truncated \(8 of 12 bytes\)"),
    ("missing", r"array 'w': missing from the archive"),
    ("header", r"array 'w': cannot be read"),
])
def test_bad_members(tmp_path, case, words):
    d = write_program(tmp_path / "p")
    if case == "dtype":
        member = member_of(W.astype(np.int16), "w")
    elif case == "object":
        raw = npy_header((3, 4), object) + b"\x80" * 12
        member = ("w.npy", zipfile.ZIP_STORED, raw, len(raw), zlib.crc32(raw))
    elif case == "bzip2":
        import bz2

        name, _, _, size, crc = member_of(W, "w")
        buf = io.BytesIO()
        np.lib.format.write_array(buf, W)
        member = (name, zipfile.ZIP_BZIP2, bz2.compress(buf.getvalue()), size, crc)
    elif case == "crc":
        name, m, data, size, crc = member_of(W, "w")
        member = (name, m, data, size, crc ^ 1)
    elif case == "truncated":
        buf = io.BytesIO()
        np.lib.format.write_array(buf, W)
        raw = buf.getvalue()[:-4]
        member = ("w.npy", zipfile.ZIP_STORED, raw, len(raw) + 4, zlib.crc32(raw))
    elif case == "missing":
        member = member_of(W, "other")
    else:
        raw = b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}   \n"
        member = ("w.npy", zipfile.ZIP_STORED, raw, 140, zlib.crc32(raw))
    _zip_with_w(d, member)
    with pytest.raises(ProgramFileError, match=words) as ei:
        load_program_files(d, specs_of)
    assert str(ei.value).startswith(str(d / "weights.npz")) and ei.value.key == "w"


# -- the files themselves ---------------------------------------------------------------------------

@pytest.mark.parametrize("case, words", [
    ("no dir", r"p: holds no program \(it does not exist\)"),
    ("no json", r"program.json: missing \(not a saved program\?\)"),
    ("no weights", r"weights.npz: missing"),
    ("json dir", r"program.json: is a directory, not a regular file"),
    ("bad json", r"program.json: is not valid JSON"),
    ("json list", r"program.json: holds a JSON list, not an object"),
    ("deep json", r"program.json: is not valid JSON"),
    ("huge int", r"program.json: is not valid JSON"),
    ("not zip", r"weights.npz: is not a valid npz archive"),
    ("callback", r"program.json: malformed \(KeyError"),
])
def test_file_problems_are_one_error(tmp_path, case, words):
    d = tmp_path / "p"
    if case != "no dir":
        write_program(d)
    j = d / "program.json"
    if case == "no json":
        j.unlink()
    elif case == "no weights":
        (d / "weights.npz").unlink()
    elif case == "json dir":
        j.unlink()
        j.mkdir()
    elif case == "bad json":
        j.write_text("{nope")
    elif case == "json list":
        j.write_text("[1]")
    elif case == "deep json":
        j.write_text("[" * 100000 + "]" * 100000)
    elif case == "huge int":
        j.write_text('{"arrays": {}, "n": ' + "9" * 100000 + "}")
    elif case == "not zip":
        (d / "weights.npz").write_bytes(b"PK\3\4 not really")
    elif case == "callback":
        j.write_text("{}")
    with pytest.raises(ProgramFileError, match=words) as ei:
        load_program_files(d, specs_of)
    assert isinstance(ei.value, CompileError) and "\n" not in str(ei.value)


def test_specs_may_be_a_mapping_and_need_a_bound(tmp_path):
    d = write_program(tmp_path / "p")
    doc, arrays = load_program_files(d, {"w": ArraySpec((3, 4), ("int8",))})
    assert set(arrays) == {"w"}  # b is not asked for: never read
    with pytest.raises(ProgramFileError, match="needs max_bytes"):
        load_program_files(d, {"w": ArraySpec(None, ("int8",))})
    with pytest.raises(ProgramFileError, match="not a list of sizes"):
        load_program_files(d, {"w": ArraySpec((3, -4), ("int8",))})
    with pytest.raises(ProgramFileError, match=r"array 'w': 12 bytes, more than the limit of 8"):
        load_program_files(d, {"w": ArraySpec(None, ("int8",), 8)})
