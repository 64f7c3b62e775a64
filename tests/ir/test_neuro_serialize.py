"""Loading the neuromorphic IR (ir/neuro_serialize.py) trusts nothing: every field is checked
against the type the IR declares, every array against the spec the description implies and for
finite values, and the references between records (issue 16, item 11).  A tampered description
either loads into a graph that verifies and runs, or is one ProgramFormatError."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from icl_compiler.errors import CompileError
from icl_compiler.ir import neuro_serialize as ns
from icl_compiler.ir.neuro import verify_neuro
from icl_compiler.ir.neuro_serialize import ProgramFormatError, array_specs, from_dict, to_dict
from icl_compiler.passes.lower import lower
from icl_compiler.passes.quantise import quantise
from icl_compiler.semantics.interpreter import Interpreter
from tests.helpers import attention_graph

# values that are wrong for most fields, and right for a few (an int for an int field)
VALUES = [None, True, "x", -1, 0, 3, 2**70, 1e308, float("nan"), float("inf"), [], {},
          "a" * 5000, 0.5]


@pytest.fixture(scope="module")
def graphs():
    rng = np.random.default_rng(0)
    ng = lower(attention_graph(rng, heads=2, norm="rowsum", t_max=6))
    q8, _ = quantise(ng, rng.uniform(0, 1, (2, 6, 6)), weight_bits=8)
    q16, _ = quantise(lower(attention_graph(rng, heads=1, t_max=6, f="relu2")),
                      rng.uniform(0, 1, (2, 6, 6)), weight_bits=16)
    return {"float": ng, "fixed8": q8, "fixed16": q16}


def _saved(ng):
    desc, arrays = to_dict(ng)
    return json.loads(json.dumps(desc)), arrays


def _leaves(o, path=()):
    """(path, kind) of every field, one per distinct kind of record (a population's model, a
    synapse group's role), so each kind of field is mutated once per kind of record."""
    yield path
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(o, list):
        seen = set()
        for i, v in enumerate(o):
            kind = (v.get("model"), v.get("role"), bool(v.get("q")), bool(v.get("bias"))) \
                if isinstance(v, dict) else None
            if kind not in seen:
                seen.add(kind)
                yield from _leaves(v, path + (i,))


def _apply(desc, path, how, value):
    o = desc
    for p in path[:-1]:
        o = o[p]
    if how == "delete":
        del o[path[-1]]
    elif how == "extra":
        o[path[-1]]["not_a_field"] = 1
    else:
        o[path[-1]] = value


@pytest.mark.parametrize("which", ["float", "fixed8"])
def test_every_tampered_field_is_one_error_or_a_program_that_runs(graphs, which):
    desc, arrays = _saved(graphs[which])
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 6))
    cases = loaded = 0
    for path in list(_leaves(desc)):
        if not path:
            continue
        mutations = [("set", v) for v in VALUES] + [("delete", None)]
        target = desc
        for p in path:
            target = target[p]
        if isinstance(target, dict):
            mutations.append(("extra", None))
        for how, v in mutations:
            d = copy.deepcopy(desc)
            _apply(d, path, how, v)
            cases += 1
            try:
                specs = array_specs(d)
                ng = from_dict(d, {k: a for k, a in arrays.items() if k in specs})
                verify_neuro(ng)
            except ProgramFormatError as e:
                assert "\n" not in str(e) and e.file in ("program.json", "weights.npz")
                continue
            except CompileError as e:  # NeuroVerifyError: an invariant of the graph
                assert "\n" not in str(e)
                continue
            loaded += 1  # what loads must run (a harmless value, e.g. another layer number)
            with np.errstate(all="ignore"):
                Interpreter(ng).run(x)
    assert cases > 1000 and loaded < cases / 5, (cases, loaded)


@pytest.mark.parametrize("value, words", [
    (np.nan, r"holds NaN or inf \(1 of"), (np.inf, "holds NaN or inf")])
def test_a_non_finite_weight_is_refused_naming_the_array(graphs, value, words):
    """Item 11: a float program with a NaN weight loaded and output NaN silently."""
    desc, arrays = _saved(graphs["float"])
    key = next(k for k in arrays if k.startswith("w/"))
    arrays = dict(arrays)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = value
    with pytest.raises(ProgramFormatError, match=words) as ei:
        from_dict(desc, arrays)
    assert (ei.value.file, ei.value.key) == ("weights.npz", key)


def test_array_specs_follow_the_precision_and_the_sizes(graphs):
    for which, ng in graphs.items():
        desc, arrays = _saved(ng)
        specs = array_specs(desc)
        assert set(specs) == set(arrays)
        for k, (shape, dtypes, _) in specs.items():
            assert arrays[k].shape == shape and arrays[k].dtype.name in dtypes, (which, k)
    desc, arrays = _saved(graphs["fixed8"])
    key = next(k for k in arrays if k.startswith("w/") and arrays[k].dtype == np.int8)
    wrong = dict(arrays, **{key: arrays[key].astype(np.float64)})
    with pytest.raises(ProgramFormatError, match=r"float64\[.*declared int8"):
        from_dict(desc, wrong)
    with pytest.raises(ProgramFormatError, match="missing") as ei:
        from_dict(desc, {k: a for k, a in arrays.items() if k != key})
    assert ei.value.key == key


@pytest.mark.parametrize("break_it, words", [
    (lambda d: d["populations"][0].update(size=2**30), r"size: 1073741824 is not an integer in "
                                                        r"\[1, 16777216\]"),
    (lambda d: d["populations"].append(dict(d["populations"][0])), "duplicate population"),
    (lambda d: d["synapses"][0].update(pre="nowhere"), "unknown pre population 'nowhere'"),
    (lambda d: d["heads"].pop(), "slot neurons of no head"),
    (lambda d: d["heads"][0].update(k_syn="nowhere"), r"heads\[0\]\.k_syn: unknown synapse"),
    (lambda d: d["io"].update(output_pop="nowhere"), "io.output_pop: unknown population"),
    (lambda d: d.update(io=None), "no I/O contract"),
    (lambda d: d["populations"][0].update(model="sigmoid"), r"model: 'sigmoid' is not one of"),
    (lambda d: d["populations"][0].update(scale=float("nan")), "scale: nan is not a finite"),
    (lambda d: d["heads"][0].update(eps=1e400), "eps: inf is not a finite number"),
    (lambda d: d["populations"][0].update(colour="red"), r"unknown field\(s\) 'colour'"),
    (lambda d: d["populations"][0].pop("layer"), r"missing field\(s\) layer"),
    (lambda d: d.update(precision="double"), "precision: 'double' is not one of"),
])
def test_broken_references_and_fields_name_the_record(graphs, break_it, words):
    desc, arrays = _saved(graphs["fixed8"])
    break_it(desc)
    with pytest.raises(ProgramFormatError, match=words):
        from_dict(desc, arrays)


def test_fixed_point_needs_the_quantisers_parameters(graphs):
    desc, arrays = _saved(graphs["fixed8"])
    h = desc["heads"][0]
    slots = next(p for p in desc["populations"] if p["name"] == h["slots"])
    slots["q"] = None
    with pytest.raises(ProgramFormatError, match=rf"population {h['slots']}: fixed point needs "
                                                 r"the quantiser's r, r2"):
        from_dict(desc, arrays)


def test_a_one_hot_input_must_match_the_vocabulary():
    import icl_compiler as icl
    from tests.helpers import fixture

    prog = icl.compile(fixture("tok_identity_trilmul_1l1h")[0], max_context=16)
    desc, arrays = _saved(prog.ng)
    desc["io"]["vocab"] += 1
    with pytest.raises(ProgramFormatError, match="io.vocab"):
        from_dict(desc, arrays)


def test_the_bounds_are_stated_once():
    assert ns.MAX_POPULATION_SIZE == 2**24 and ns.MAX_ATTR_ARRAY_BYTES == 2**20
