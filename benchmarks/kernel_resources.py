"""Compile the fused layer's Triton kernels for an H100 without one, and print what each uses.

    python benchmarks/kernel_resources.py [--arch 90] [--width 50] [--directions 2 16] [--activations tanh gelu]

Triton compiles for a named GPU architecture without a GPU present (its own ``ptxas`` comes
with the package). For each kernel of ``pinn/fused.py`` at the default launch settings, in
float32 (three TF32 products, one, and IEEE float32 products) and float64, and in the
diagonal mode, this prints the registers per thread, the bytes spilled to each thread's stack,
the shared memory per program and whether it fits the architecture's limit (227 KB on an
H100), as read from the compiled binary with ``cuobjdump``. The first layer's kernels run along
the coordinate axes where the directions are as many as its inputs (the forward engine's
case), else along random ones. Catches what Triton's CPU interpreter lets through: code the
compiler rejects, tiles that do not fit. Run it without ``TRITON_INTERPRET`` set.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pinn import fused, models

#: the most shared memory one program (thread block) may use, in bytes, by compute capability
SHARED_MEMORY_PER_PROGRAM = {90: 232448, 89: 101376, 86: 101376, 80: 166912, 75: 65536}


#: the kernels' activations by model.activation's names
ACTIVATION_CODES = {name: code for name, module in models.ACTIVATIONS.items()
                    if (code := fused.activation_code(module())) is not None}


def compile_kernel(name: str, dtype: str, fan_in: int, width: int, directions: int, precision: str,
                   arch: int, mode: str = "laplacian", activation: str = "tanh") -> dict:
    """Compile one kernel for sm_``arch``; its registers, spills and shared memory."""
    pad = fused._pad
    if name.startswith("_first"):  # as many directions as inputs: the axes (forward engine), else random ones
        constants = dict(D=fan_in, MO=width, D_P=pad(fan_in), MO_P=pad(width), AXES=directions == fan_in)
    else:
        constants = dict(MI=fan_in, MO=width, MI_P=pad(fan_in), MO_P=pad(width))
    constants.update(K=directions, ACT=ACTIVATION_CODES[activation], HAS_BIAS=True, DIAGONAL=mode == "diagonal", PRECISION=precision)
    if "backward" in name:
        constants.update(BLOCK=fused.BACKWARD_BLOCK, HAS_GV=True, HAS_GJ=True, HAS_GS=True)
        if not name.startswith("_first"):  # as _FusedLayer.backward decides (with a bias)
            constants.update(BIAS_ROW=width < pad(width) and width <= fan_in)
        options = dict(num_warps=fused.BACKWARD_WARPS, num_stages=fused.BACKWARD_STAGES)
        if name.startswith("_first"):
            constants.update(K_P=triton.next_power_of_2(directions))
    else:
        constants.update(BLOCK=fused.FORWARD_BLOCK)
        options = dict(num_warps=fused.FORWARD_WARPS)
    kernel = getattr(fused, name)
    signature, attributes = {}, {}
    for i, arg in enumerate(kernel.arg_names):
        if arg in constants:
            signature[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            signature[arg] = "*" + dtype
            attributes[(i,)] = [["tt.divisibility", 16]]  # as Triton specializes torch's aligned tensors
        else:
            signature[arg] = "i32"
    compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants, attrs=attributes),
                              target=GPUTarget("cuda", arch, 32), options=options)
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "kernel.cubin"
        binary.write_bytes(compiled.asm["cubin"])
        cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        usage = subprocess.run([str(cuobjdump), "-res-usage", str(binary)], capture_output=True, text=True,
                               check=True).stdout
    registers, stack = (int(re.search(rf"{key}:(\d+)", usage).group(1)) for key in ("REG", "STACK"))
    return {"registers": registers, "spilled": stack, "shared": compiled.metadata.shared}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability times ten (90: H100)")
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=2, help="the first layer's inputs (the dimension d)")
    parser.add_argument("--directions", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--activations", nargs="+", default=["tanh"], choices=list(ACTIVATION_CODES),
                        help="the first in every case below; the others with the default float32 products "
                             "in the laplacian mode, and with --all-cases in every case too")
    parser.add_argument("--all-cases", action="store_true")
    args = parser.parse_args()
    if fused.interpreting():
        raise SystemExit("error: TRITON_INTERPRET is set: Triton then interprets instead of compiling; unset it")
    if (reason := fused.why_unavailable(torch.device("cuda"))) is not None:
        raise SystemExit(f"error: the kernels cannot be compiled here: {reason}")
    if args.arch not in SHARED_MEMORY_PER_PROGRAM:
        raise SystemExit(f"error: --arch {args.arch}: known are {', '.join(map(str, SHARED_MEMORY_PER_PROGRAM))}")
    limit = SHARED_MEMORY_PER_PROGRAM[args.arch]
    print(f"# triton {triton.__version__}, sm_{args.arch}, width {args.width}, first layer's inputs {args.inputs}; "
          f"blocks {fused.FORWARD_BLOCK}/{fused.BACKWARD_BLOCK}, warps {fused.FORWARD_WARPS}/{fused.BACKWARD_WARPS}, "
          f"backward stages {fused.BACKWARD_STAGES}")
    print(f"{'kernel':>23} {'activation':>10} {'mode':>9} {'dtype':>6} {'products':>8} {'K':>3} {'registers':>9} "
          f"{'spilled':>8} {'shared':>8}  fits")
    cases = [("laplacian", "fp32", fused.FLOAT32_PRODUCTS), ("laplacian", "fp32", "tf32"), ("laplacian", "fp32", "ieee"),
             ("laplacian", "fp64", "ieee"), ("diagonal", "fp32", fused.FLOAT32_PRODUCTS)]
    for activation in args.activations:
        for directions in args.directions:
            for mode, dtype, precision in cases if args.all_cases or activation == args.activations[0] else cases[:1]:
                for name in fused.KERNELS:
                    fan_in = args.inputs if name.startswith("_first") else args.width
                    r = compile_kernel(name, dtype, fan_in, args.width, directions, precision, args.arch, mode,
                                       activation)
                    fits = "yes" if r["shared"] <= limit else "NO"
                    print(f"{name.strip('_'):>23} {activation:>10} {mode:>9} {dtype:>6} {precision:>8} {directions:>3} "
                          f"{r['registers']:>9} {r['spilled']:>8} {r['shared']:>8}  {fits}", flush=True)


if __name__ == "__main__":
    main()
