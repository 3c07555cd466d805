"""The search codes' distance as a Numba intrinsic: squared L2 between two uint8 rows,
summed in 32-bit integer lanes.

Why an intrinsic: Numba types the arithmetic of small integers as int64, so a
plain loop over uint8 codes widens every byte to 64 bits and the compiler
vectorises it four lanes at a time (about 115 ns for a 784-byte row here).
This emits the loop in LLVM IR on vectors of 16-bit differences: with AVX2,
``vpmaddwd`` squares and adds 16 of them per instruction (about 35 ns for the
same row); elsewhere, the same loop on generic ``<16 x i32>`` vectors, which
LLVM lowers for the target it compiles for.

Determinism: every operation is on integers and nothing overflows (a
difference fits in 16 bits, a lane holds at most 2 * 255**2 per 16 columns,
so below 2**31 for any dimension up to 2**16 (a lane of the generic loop, one square
per 16 columns, stays lower still), and the lanes are added in 64
bits), so the result is the exact sum whatever the vector width or order:
the same bits on every machine.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _target_has_avx2() -> bool:
    """Whether the code Numba generates may use AVX2: an x86-64 host with AVX2, or
    ``NUMBA_CPU_FEATURES`` naming ``+avx2`` when ``NUMBA_CPU_NAME`` fixes the target."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if config.CPU_NAME:
        return "+avx2" in (config.CPU_FEATURES or "").split(",")
    try:
        return bool(llvm.get_host_cpu_features().get("avx2", False))
    except RuntimeError:  # features unknown: take the generic loop
        return False


_AVX2 = _target_has_avx2()


def _emit_sqdist(builder: ir.IRBuilder, pa: ir.Value, pq: ir.Value, n: ir.Value) -> ir.Value:
    """IR of sum((pa[k] - pq[k])**2 for k < n) over uint8 pointers, as an i64."""
    if _AVX2:
        step, lanes = 16, 8  # vpmaddwd: 16 x i16 -> 8 x i32
    else:
        step, lanes = 16, 16
    wide = ir.VectorType(_I16 if _AVX2 else _I32, step)
    acc_ty = ir.VectorType(_I32, lanes)
    bytes_ty = ir.VectorType(_I8, step)
    acc = cgutils.alloca_once_value(builder, ir.Constant(acc_ty, None))
    one = ir.Constant(_I64, 1)
    zero = ir.Constant(_I64, 0)
    nvec = builder.mul(builder.udiv(n, ir.Constant(_I64, step)), ir.Constant(_I64, step))
    if _AVX2:
        madd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(acc_ty, [wide, wide]), "llvm.x86.avx2.pmadd.wd")
    with cgutils.for_range_slice(builder, zero, nvec, ir.Constant(_I64, step)) as (off, _):
        xa = builder.load(builder.bitcast(builder.gep(pa, [off]), bytes_ty.as_pointer()), align=1)
        xq = builder.load(builder.bitcast(builder.gep(pq, [off]), bytes_ty.as_pointer()), align=1)
        d = builder.sub(builder.zext(xa, wide), builder.zext(xq, wide))
        sq = builder.call(madd, [d, d]) if _AVX2 else builder.mul(d, d)
        builder.store(builder.add(builder.load(acc), sq), acc)
    tail = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
    with cgutils.for_range_slice(builder, nvec, n, one) as (off, _):
        a = builder.zext(builder.load(builder.gep(pa, [off])), _I64)
        b = builder.zext(builder.load(builder.gep(pq, [off])), _I64)
        d = builder.sub(a, b)
        builder.store(builder.add(builder.load(tail), builder.mul(d, d)), tail)
    v = builder.load(acc)
    total = builder.load(tail)
    for t in range(lanes):
        total = builder.add(total, builder.sext(builder.extract_element(v, ir.Constant(_I32, t)),
                                                _I64))
    return total


@intrinsic
def sqdist_u8(typingctx, arr, row, q):  # type: ignore[no-untyped-def]
    """Squared L2 distance between ``arr[row, :]`` (a 2-d C uint8 array) and ``q`` (a 1-d C
    uint8 array of the same length), exact, as an int64."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.ndim == 2
            and arr.layout == "C" and isinstance(q, types.Array) and q.dtype == types.uint8
            and q.ndim == 1 and q.layout == "C" and isinstance(row, types.Integer)):
        return None
    sig = types.int64(arr, row, q)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aty, rty, qty = signature.args
        a = context.make_array(aty)(context, builder, args[0])
        qa = context.make_array(qty)(context, builder, args[2])
        r = context.cast(builder, args[1], rty, types.intp)
        pa = cgutils.get_item_pointer(context, builder, aty, a,
                                      [r, context.get_constant(types.intp, 0)])
        n = builder.extract_value(a.shape, 1)
        return _emit_sqdist(builder, pa, qa.data, n)

    return sig, codegen


if config.DISABLE_JIT:  # pure-Python debugging runs
    def sqdist_u8(arr, row, q):  # type: ignore[no-redef]
        t = arr[row].astype(np.int64) - q.astype(np.int64)
        return int((t * t).sum())
