"""The declarative pattern helper: slots, commutativity, shared nodes, alternatives, single use."""
from icl_compiler.passes.pattern import Pattern, Var, alt, op, rewrite_all
from icl_compiler.passes.util import is_const, replace_node
from tests.passes.common import B, Builder


def graph():
    b = Builder()
    x = b.input("x", (B, 4))
    c = b.const(2.0)
    y = b.op("Add", c, b.op("Relu", x))          # const first: commutative match
    z = b.op("Mul", y, y)                         # square of one node
    w = b.op("Sub", z, c)                         # Sub is not commutative
    return b.output(w), {"x": x, "c": c, "y": y, "z": z, "w": w}


def test_commutative_and_binding():
    g, v = graph()
    p = Pattern(op("Add", op("Relu", Var("x")), Var("c", is_const)))
    m = p.match_value(g, v["y"])
    assert m is not None and m["x"] == "x" and m["c"] == v["c"]


def test_shared_subexpression_and_alternatives():
    g, v = graph()
    inner = op("Add", Var("a"), Var("k"))
    sq = Pattern(alt(op("Pow", inner, Var("two")), op("Mul", inner, inner)))
    assert sq.match_value(g, v["z"]) is not None
    assert Pattern(op("Mul", Var("p"), Var("p"))).match_value(g, v["z"])["p"] == v["y"]


def test_non_commutative_and_single_use():
    g, v = graph()
    assert Pattern(op("Sub", Var("c", is_const), Var("z"))).match_value(g, v["w"]) is None
    assert Pattern(op("Sub", Var("z"), Var("c", is_const))).match_value(g, v["w"]) is not None
    # two distinct pattern ops never match the same node; reuse the object to mean "same node"
    p = Pattern(op("Mul", op("Add", Var("c"), Var("r")), op("Add", Var("c"), Var("r"))))
    assert p.match_value(g, v["z"]) is None
    # the Relu is used only by the Add; with the Add outside the pattern it is still single-use
    assert Pattern(op("Add", op("Relu", Var("x")), Var("c"))).match_value(g, v["y"]) is not None
    # but a node whose output escapes the match is rejected (unless single_use=False)
    b = Builder()
    r = b.op("Relu", b.input("x", (B, 4)))
    y = b.op("Add", r, b.const(1.0))
    g = b.output(y, r)
    root = op("Add", op("Relu", Var("x")), Var("c"))
    assert Pattern(root).match_value(g, y) is None
    assert Pattern(root, single_use=False).match_value(g, y) is not None


def test_rewrite_all_reaches_fixpoint():
    b = Builder()
    x = b.input("x", (B, 4))
    y = x
    for _ in range(3):
        y = b.op("Relu", b.op("Relu", y))
    g = b.output(y)
    n = rewrite_all(g, Pattern(op("Relu", op("Relu", Var("x")))),
                    lambda g, m: replace_node(g, m.root, "Relu", [m["x"]]))
    assert n == 5 and g.op_counts() == {"Relu": 1}
