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
from typing import Any

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
    step = 16
    lanes = 8 if _AVX2 else 16  # vpmaddwd: 16 x i16 -> 8 x i32
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


# --------------------------------------------------------------------------- float32

# float32 distances are summed in FLOAT_LANES independent lanes: lane l adds the terms
# of the columns k with k % FLOAT_LANES == l, in column order (a product rounded to
# float32, then the sum rounded: no fused multiply-add), and the lanes are then added
# in halves (l + FLOAT_LANES/2 into l, down to one). The order is part of the
# definition, not the compiler's choice, so every machine gets the same bits.
FLOAT_LANES = 64
_VEC = 16  # the lanes are held as FLOAT_LANES // _VEC vectors of this width
_F32 = ir.FloatType()
# Numba's fastmath pass adds "fast" to every float instruction that has no flags, which
# would let LLVM reorder these sums; "nsz" (signed zeros may be ignored: no sum here can
# be -0.0) is a flag that changes nothing and keeps the pass away.
_EXACT = ("nsz",)


def _emit_float_sum(builder: ir.IRBuilder, pa: ir.Value, pb: ir.Value, n: ir.Value,
                    dot: bool) -> ir.Value:
    """IR of the lane sum of (pa[k] - pb[k])**2 (``dot``: of pa[k] * pb[k]) over float32
    pointers, as a float32."""
    vty = ir.VectorType(_F32, _VEC)
    nacc = FLOAT_LANES // _VEC
    accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, None))  # +0.0 each
            for _ in range(nacc)]
    block = ir.Constant(_I64, FLOAT_LANES)
    nfull = builder.mul(builder.udiv(n, block), block)
    ptr_ty = vty.as_pointer()

    def _fadd(x: ir.Value, y: ir.Value) -> ir.Value:
        return builder.fadd(x, y, flags=_EXACT)

    def term(xa: ir.Value, xb: ir.Value) -> ir.Value:
        if dot:
            return builder.fmul(xa, xb, flags=_EXACT)
        d = builder.fsub(xa, xb, flags=_EXACT)
        return builder.fmul(d, d, flags=_EXACT)

    with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), nfull, block) as (off, _):
        for v in range(nacc):
            at = builder.add(off, ir.Constant(_I64, v * _VEC))
            xa = builder.load(builder.bitcast(builder.gep(pa, [at]), ptr_ty), align=4)
            xb = builder.load(builder.bitcast(builder.gep(pb, [at]), ptr_ty), align=4)
            builder.store(_fadd(builder.load(accs[v]), term(xa, xb)), accs[v])
    # the last n % FLOAT_LANES columns go to lanes 0.. the same way: masked loads fill the
    # missing columns with +0.0, whose term (+0.0) leaves every lane as it was (a lane
    # starts at +0.0 and is never -0.0, and x + 0.0 == x for every other x)
    rest = builder.sub(n, nfull)
    mask_ty = ir.VectorType(ir.IntType(1), _VEC)
    load = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [ptr_ty, _I32, mask_ty, vty]),
        f"llvm.masked.load.v{_VEC}f32.p0")
    zeros = ir.Constant(vty, [0.0] * _VEC)
    with builder.if_then(builder.icmp_unsigned(">", rest, ir.Constant(_I64, 0))):
        for v in range(nacc):
            at = builder.add(nfull, ir.Constant(_I64, v * _VEC))
            lanes_idx = ir.Constant(ir.VectorType(_I64, _VEC),
                                    [v * _VEC + t for t in range(_VEC)])
            rest_v = builder.insert_element(ir.Constant(ir.VectorType(_I64, _VEC), None), rest,
                                            ir.Constant(_I32, 0))
            rest_v = builder.shuffle_vector(rest_v, rest_v,
                                            ir.Constant(ir.VectorType(_I32, _VEC), [0] * _VEC))
            mask = builder.icmp_unsigned("<", lanes_idx, rest_v)
            xa = builder.call(load, [builder.bitcast(builder.gep(pa, [at]), ptr_ty),
                                     ir.Constant(_I32, 4), mask, zeros])
            xb = builder.call(load, [builder.bitcast(builder.gep(pb, [at]), ptr_ty),
                                     ir.Constant(_I32, 4), mask, zeros])
            builder.store(_fadd(builder.load(accs[v]), term(xa, xb)), accs[v])
    vals = [builder.load(a) for a in accs]
    while len(vals) > 1:  # vector halves: lane l + FLOAT_LANES/2 into lane l, ...
        half = len(vals) // 2
        vals = [_fadd(vals[i], vals[i + half]) for i in range(half)]
    v = vals[0]
    width = _VEC
    while width > 1:
        half = width // 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, half),
                                                      list(range(half))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, half),
                                                      list(range(half, width))))
        v = _fadd(lo, hi)
        width = half
    return builder.extract_element(v, ir.Constant(_I32, 0))


def _row_pointer(context, builder, aty, a, row, rty):  # type: ignore[no-untyped-def]
    r = context.cast(builder, row, rty, types.intp)
    return cgutils.get_item_pointer(context, builder, aty, a,
                                    [r, context.get_constant(types.intp, 0)])


def is_c_array(ty: Any, dtype: Any, ndim: int) -> bool:
    """Whether the Numba type ``ty`` is a C-contiguous ``ndim``-d array of ``dtype``: what
    the intrinsics here take."""
    return (isinstance(ty, types.Array) and ty.dtype == dtype and ty.ndim == ndim
            and ty.layout == "C")


def _row_query_intrinsic(name: str, dtype: Any, result: Any, emit: Any, doc: str) -> Any:
    """The intrinsic ``name(arr, row, q)`` over a 2-d C array ``arr`` and a 1-d C array
    ``q`` of ``dtype``, whose body ``emit(builder, row pointer, q pointer, length)``
    gives."""
    def typer(typingctx, arr, row, q):  # type: ignore[no-untyped-def]
        if not (is_c_array(arr, dtype, 2) and is_c_array(q, dtype, 1)
                and isinstance(row, types.Integer)):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aty, rty, qty = signature.args
            a = context.make_array(aty)(context, builder, args[0])
            qa = context.make_array(qty)(context, builder, args[2])
            pa = _row_pointer(context, builder, aty, a, args[1], rty)
            return emit(builder, pa, qa.data, builder.extract_value(a.shape, 1))

        return result(arr, row, q), codegen

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


sqdist_u8 = _row_query_intrinsic(
    "sqdist_u8", types.uint8, types.int64, _emit_sqdist,
    """Squared L2 distance between ``arr[row, :]`` (a 2-d C uint8 array) and ``q`` (a 1-d C
    uint8 array of the same length), exact, as an int64.""")
sqdist_f32_query = _row_query_intrinsic(
    "sqdist_f32_query", types.float32, types.float32,
    lambda b, pa, pq, n: _emit_float_sum(b, pa, pq, n, False),
    """Squared L2 distance between ``arr[row, :]`` (a 2-d C float32 array) and ``q`` (a 1-d
    C float32 array), summed in the lane order described above.""")
dot_f32_query = _row_query_intrinsic(
    "dot_f32_query", types.float32, types.float32,
    lambda b, pa, pq, n: _emit_float_sum(b, pa, pq, n, True),
    """Dot product of ``arr[row, :]`` and ``q`` (float32, C layout), summed in the lane
    order described above.""")


@intrinsic
def sqdist_f32_rows(typingctx, arr, i, j):  # type: ignore[no-untyped-def]
    """Squared L2 distance between rows ``i`` and ``j`` of a 2-d C float32 array, summed
    in the lane order described above."""
    if not (is_c_array(arr, types.float32, 2) and isinstance(i, types.Integer)
            and isinstance(j, types.Integer)):
        return None
    sig = types.float32(arr, i, j)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aty, ity, jty = signature.args
        a = context.make_array(aty)(context, builder, args[0])
        pa = _row_pointer(context, builder, aty, a, args[1], ity)
        pb = _row_pointer(context, builder, aty, a, args[2], jty)
        return _emit_float_sum(builder, pa, pb, builder.extract_value(a.shape, 1), False)

    return sig, codegen


if config.DISABLE_JIT:  # pure-Python debugging runs
    def sqdist_u8(arr, row, q):  # type: ignore[no-redef]
        t = arr[row].astype(np.int64) - q.astype(np.int64)
        return int((t * t).sum())


def lane_sum(terms: np.ndarray) -> np.float32:
    """The float32 sum of ``terms`` (float32, one per column) in the kernels' order: the
    reference the tests compare the compiled kernels with, and the body of pure-Python
    runs. (Padding the last block with +0.0 changes no lane: a lane starts at +0.0 and
    can never be -0.0, and x + 0.0 == x for every other x.)"""
    terms = np.asarray(terms, dtype=np.float32).ravel()
    pad = (-terms.shape[0]) % FLOAT_LANES
    rows = np.concatenate([terms, np.zeros(pad, dtype=np.float32)]).reshape(-1, FLOAT_LANES)
    lanes = np.zeros(FLOAT_LANES, dtype=np.float32)
    for r in rows:
        lanes = lanes + r
    while lanes.shape[0] > 1:
        half = lanes.shape[0] // 2
        lanes = lanes[:half] + lanes[half:]
    return np.float32(lanes[0])
