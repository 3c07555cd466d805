"""LLVM prefetch as a Numba intrinsic: ask the memory system for a vector row early.

A beam search spends most of its time waiting for vectors that are not in
cache. hnswlib and DiskANN issue a prefetch for the next candidates' vectors
before computing distances; Numba has no prefetch, so this emits
``llvm.prefetch`` for every 64-byte line of ``arr[row, :]``. Applying a delta
waits the same way on id-table buckets, lists and in-degree counters scattered
over the index: ``prefetch_item`` asks for the line of one element.
"""

from typing import Any

from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)
_READ, _KEEP_IN_ALL_LEVELS, _DATA = (ir.Constant(_I32, v) for v in (0, 3, 1))


def _prefetch_target(context, builder, signature, args) -> tuple[Any, ir.Value, ir.Function]:
    """For a call ``(arr, i)``: the array, an i8 pointer to ``arr[i]`` (to ``arr[i, 0]``
    for a 2-d array) and the ``llvm.prefetch`` function to call on it."""
    arrty, ity = signature.args
    ary = context.make_array(arrty)(context, builder, args[0])
    i = context.cast(builder, args[1], ity, types.intp)
    at = [i] + [context.get_constant(types.intp, 0)] * (arrty.ndim - 1)
    ptr = cgutils.get_item_pointer(context, builder, arrty, ary, at)
    i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), _I32, _I32, _I32])
    return ary, i8p, cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")


@intrinsic
def prefetch_row(typingctx, arr, row):
    """Prefetch the cache lines of ``arr[row, :]`` (a 2-d C array) for reading."""
    sig = types.void(arr, row)

    def codegen(context, builder, signature, args):
        ary, i8p, fn = _prefetch_target(context, builder, signature, args)
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        ncols = builder.extract_value(ary.shape, 1)
        nbytes = builder.mul(ncols, context.get_constant(types.intp, itemsize))
        zero = context.get_constant(types.intp, 0)
        line = context.get_constant(types.intp, 64)
        with cgutils.for_range_slice(builder, zero, nbytes, line) as (off, _):
            builder.call(fn, [builder.gep(i8p, [off]), _READ, _KEEP_IN_ALL_LEVELS, _DATA])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch_item(typingctx, arr, i):
    """Prefetch the cache line holding ``arr[i]`` (a 1-d array) for reading."""
    sig = types.void(arr, i)

    def codegen(context, builder, signature, args):
        _, i8p, fn = _prefetch_target(context, builder, signature, args)
        builder.call(fn, [i8p, _READ, _KEEP_IN_ALL_LEVELS, _DATA])
        return context.get_dummy_value()

    return sig, codegen


if config.DISABLE_JIT:  # pure-Python debugging runs: a prefetch is only a hint

    def prefetch_row(arr, row):  # type: ignore[no-redef]
        return None

    def prefetch_item(arr, i):  # type: ignore[no-redef]
        return None
