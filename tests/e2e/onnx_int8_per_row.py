#!/usr/bin/python3
"""Rewrites a model written by `mvmoe export --int8` so that its activations are quantized as
mvmoe's int8 path quantizes them -- int8, symmetric, one scale per row (token) -- instead of
DynamicQuantizeLinear's one uint8 scale and zero point per tensor; everything else (the int8
weights, their scales, the graph around them) is kept. ONNX Runtime running the result should
then give mvmoe's `eval --precision int8` logits up to float rounding: the test uses it to check
that the exported file carries exactly mvmoe's int8 model, so that the larger differences of the
real file come from the activation quantization alone (docs/EXPORT.md, "int8").

    onnx_int8_per_row.py IN.onnx OUT.onnx

Each DynamicQuantizeLinear(x) -> (q, a_scale, a_zero_point) feeding MatMulInteger(q, w,
a_zero_point) becomes, with mvmoe's rule (linear_int8.c: s = max|x|/127, q = round-half-even(
x * (127/max|x|)) clipped to +-127):
    amax = ReduceMax(Abs(x), axes=[-1], keepdims=1); a_scale = amax / 127
    q = Cast<int8>(Clip(Round(x * (127 / amax)), -127, 127)); MatMulInteger(q, w)
keeping the names q and a_scale, so the Cast -> Mul(·, Mul(a_scale, w_scale)) after it now
scales each row by its own a_scale. (A row of zeros gives 0/0: the models here have none.)
Run it with ONNX Runtime's optimizations at "basic": its MatMulIntegerToFloat fusion (level
"extended") takes the A scale as one number and gives wrong results for per-row scales.
"""
import sys

import onnx
from onnx import TensorProto, helper


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: onnx_int8_per_row.py IN.onnx OUT.onnx")
    m = onnx.load(sys.argv[1])
    g = m.graph
    consumers = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    g.initializer.extend([helper.make_tensor("perrow.127", TensorProto.FLOAT, [], [127.0]),
                          helper.make_tensor("perrow.-127", TensorProto.FLOAT, [], [-127.0])])
    nodes, rewritten = [], 0
    for n in g.node:
        if n.op_type != "DynamicQuantizeLinear":
            nodes.append(n)
            continue
        x, (q, scale, zp) = n.input[0], n.output
        users = consumers.get(zp, [])
        if len(users) != 1 or users[0].op_type != "MatMulInteger" or list(users[0].input[::2]) != [q, zp]:
            sys.exit(f"{n.name}: not the DynamicQuantizeLinear -> MatMulInteger pattern of mvmoe export --int8")
        del users[0].input[2]          # int8 A: symmetric, no zero point
        p = n.name + "/perrow"
        nodes += [
            helper.make_node("Abs", [x], [p + "/abs"]),
            helper.make_node("ReduceMax", [p + "/abs"], [p + "/amax"], axes=[-1], keepdims=1),
            helper.make_node("Div", [p + "/amax", "perrow.127"], [scale]),
            helper.make_node("Div", ["perrow.127", p + "/amax"], [p + "/inv"]),
            helper.make_node("Mul", [x, p + "/inv"], [p + "/scaled"]),
            helper.make_node("Round", [p + "/scaled"], [p + "/round"]),
            helper.make_node("Clip", [p + "/round", "perrow.-127", "perrow.127"], [p + "/clip"]),
            helper.make_node("Cast", [p + "/clip"], [q], to=TensorProto.INT8),
        ]
        rewritten += 1
    if not rewritten:
        sys.exit(f"{sys.argv[1]}: no DynamicQuantizeLinear node (not an int8 export)")
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, sys.argv[2])
    print(f"{sys.argv[2]}: {rewritten} products with per-row int8 activations")


if __name__ == "__main__":
    main()
