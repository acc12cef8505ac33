"""A software prefetch hint for numba kernels (LLVM's ``llvm.prefetch``).

Delivery adds each synapse's weight to a ring slot chosen by its target and delay: one
scattered read-modify-write per synapse into a ring that at full microcircuit scale
(77,000 neurons x 60 slots x 2 ports x 8 bytes = 74 MB) lives in main memory.  Asking for
the cache line of a synapse some way ahead lets the memory system work on several misses
at once.  A prefetch changes no value, only timing.
"""

from __future__ import annotations

from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# the intrinsic's name carries its pointer type: "p0" since LLVM 15's opaque pointers,
# "p0i8" before (numba 0.59-0.60 ship LLVM 14)
_PREFETCH = "llvm.prefetch.p0" if binding.llvm_version_info >= (15,) else "llvm.prefetch.p0i8"


@intrinsic
def prefetch_write(typingctx, ary, i0, i1, i2):
    """Hint that ``ary[i0, i1, i2]`` (a 3-D array, indices in range) is about to be written;
    compiles to one prefetch instruction, no bounds or wraparound handling."""
    if not (isinstance(ary, types.Array) and ary.ndim == 3):
        return None
    sig = types.void(ary, i0, i1, i2)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        arr = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, v, t, types.intp)
               for v, t in zip(args[1:], signature.args[1:], strict=True)]
        ptr = cgutils.get_item_pointer2(
            context, builder, data=arr.data, shape=cgutils.unpack_tuple(builder, arr.shape),
            strides=cgutils.unpack_tuple(builder, arr.strides), layout=aryty.layout,
            inds=idx, wraparound=False, boundscheck=False)
        i32 = ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFETCH)
        # rw = 1 (write), locality = 3 (keep in all cache levels), cache type = 1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen
