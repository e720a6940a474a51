r"""Triton kernels for the forward engine's layers (``derivatives.triton``): a linear map and the
activation's chain rule in one pass over the points, and its backward pass in another.

A hidden layer of a Laplacian jet (:mod:`pinn.jet`) maps the incoming value :math:`a`, first
derivatives :math:`J_k` (``K`` directions) and Laplacian :math:`L` by the weight, then applies
the activation:

.. math::
    h = W a + b, \quad h_k = W J_k, \quad h_L = W L, \qquad
    a' = \sigma(h), \quad J'_k = \sigma'(h)\, h_k, \quad
    L' = \sigma'(h)\, h_L + \sigma''(h) \textstyle\sum_k h_k^2 .

Unfused, each of these is a kernel of its own that reads and writes ``K + 2`` rows of width
``m`` per point through memory, and the backward pass reads tensors saved for it. On a large
point set that memory traffic, not the arithmetic, sets the step's time. Here each block of
points is read once, multiplied by the weight in registers, and written once; nothing of the
pre-activation is saved. The backward pass recomputes :math:`h, h_k, h_L` from the layer's
inputs (which the previous layer's backward pass needs anyway) and, with
:math:`(g_a, G_k, g_L)` the gradients arriving for :math:`(a', J'_k, L')`,

.. math::
    g_h = \sigma' g_a + \sigma'' \textstyle\sum_k G_k h_k + g_L (\sigma'' h_L + \sigma''' \sum_k h_k^2),
    \quad g_{h_k} = \sigma' G_k + 2 \sigma'' g_L h_k, \quad g_{h_L} = \sigma' g_L,

then the inputs' gradients :math:`g_h W`, :math:`g_{h_k} W`, :math:`g_{h_L} W` and the weight's
:math:`g_h^\top a + \sum_k g_{h_k}^\top J_k + g_{h_L}^\top L` (summed over its blocks by a fixed
number of programs, each writing one partial sum, so the result does not depend on timing).
The ``diagonal`` mode carries one second derivative per direction instead of their sum,
:math:`D'_k = \sigma' W D_k + \sigma'' h_k^2`, with the same terms per direction in the
backward pass. The first layer has a pair of its own (:class:`_FirstLayer`): there the
directions are the same at every point and the second derivatives zero.

Supported: the ``laplacian`` and ``diagonal`` modes of the forward and stochastic engines;
activations tanh, sine, sigmoid, silu, gelu and softplus; layers up to 64 wide (and first
layers of up to 128 inputs and directions) of an MLP or of a modified MLP's encoders and
gates (whose gating stays unfused); float32 and float64; on a CUDA GPU with Triton installed.
Float32 matrix products are three TF32 tensor-core products each (close to float32's
accuracy, see ``FLOAT32_PRODUCTS``), or one where ``trainer.tf32`` allows TF32. Everywhere
else a layer falls back to the unfused path. With
``TRITON_INTERPRET=1`` set before Triton is first imported, the kernels run on the CPU in
Triton's interpreter (slowly): that is how the tests check them on a machine without a GPU.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn

from pinn.errors import ConfigError
from pinn.models import MLP, ModifiedMLP, OutputTransform, Sine

try:
    import triton
    import triton.language as tl
    from triton.runtime.errors import OutOfResources
except ImportError:  # the fused kernels are optional; derivatives.triton=true says what is missing
    triton = None

#: The oldest Triton the kernels are known to compile with (benchmarks/kernel_resources.py, for
#: an H100, with Triton 3.5.1). An older one (3.0, which PyTorch 2.4 brings, say) is refused
#: rather than tried.
OLDEST_TRITON = (3, 5)

#: activations with a kernel: their number in the kernels' ``ACT`` switch (gelu in its exact,
#: erf form only, as the forward engine takes it; softplus with its default beta and threshold)
ACTIVATIONS = {nn.Tanh: 0, Sine: 1, nn.Sigmoid: 2, nn.SiLU: 3, nn.GELU: 4, nn.Softplus: 5}
#: the forward engine's modes the kernels carry (not ``hessian``)
MODES = ("laplacian", "diagonal")
#: the module's Triton kernels, by name
KERNELS = ("_forward_kernel", "_backward_kernel", "_first_forward_kernel", "_first_backward_kernel")
# Launch settings (benchmarks/triton_blocks.py times others). Compiled for an H100 (sm_90,
# Triton 3.5-3.9, width 50 padded to 64, float32; benchmarks/kernel_resources.py): 8 warps keep
# the forward kernel's tiles in registers, and one pipeline stage keeps the backward kernel's
# shared memory under 100 KB. The backward kernel takes 255 registers in each of its 256
# threads, the whole register file of a multiprocessor: one program runs on each at a time,
# looping over blocks of points.
FORWARD_BLOCK, FORWARD_WARPS = 32, 8
BACKWARD_BLOCK, BACKWARD_WARPS, BACKWARD_STAGES, PROGRAMS_PER_SM = 32, 8, 1, 1
#: the widest layer the kernels take: each keeps a weight tile of up to 64 x 64 in registers
#: and shared memory (128 x 128 needs more shared memory than an H100 has per program); wider
#: layers stay unfused
MAX_WIDTH = 64
#: the most inputs and directions of a first layer (its outputs are at most MAX_WIDTH): its
#: kernels keep a 128 x 64 weight tile and one sum per direction (compiled for an H100 at 128
#: inputs and directions with Triton 3.6 and 3.9: at most 131 KB of shared memory and 504 bytes
#: spilled per thread; benchmarks/kernel_resources.py --inputs 128 --directions 128), so
#: that the exact Laplacian in 100 dimensions runs its first layer fused too
MAX_FIRST_INPUTS = MAX_FIRST_DIRECTIONS = 128
#: float32 matrix products inside the kernels, unless trainer.tf32 asks for single TF32 ones:
#: "tf32x3" splits each factor into two TF32 numbers and adds three tensor-core products, within
#: a factor of two of float32's rounding error (emulated by benchmarks/tf32.py for 50-wide
#: layers: relative error 2.3e-7 against float32's 1.3e-7, and 3.0e-4 for one TF32 product);
#: "ieee" multiplies in float32 on the ordinary cores, where the backward kernel spills (920
#: bytes per thread)
FLOAT32_PRODUCTS = "tf32x3"


def _interpret_setting() -> bool:
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


# Triton fixes this when it is imported (its kernels become interpreted ones or compiled ones).
_INTERPRETING = triton is not None and _interpret_setting()


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET`` when it was imported)."""
    return _INTERPRETING


def _older_than_oldest(version: str) -> bool:
    """Whether Triton ``version`` ("3.6.0", "3.6.0+git1234"; else not judged) is older than
    :data:`OLDEST_TRITON`. (String methods only: torch.compile traces this.)"""
    major, minor = (version.split(".") + ["", ""])[:2]
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) < OLDEST_TRITON


def why_unavailable(device: torch.device) -> str | None:
    """Why the kernels cannot run on ``device`` (``None``: they can)."""
    if triton is None:
        return "Triton is not installed (pip install triton, or a CUDA build of PyTorch, which brings it)"
    if _older_than_oldest(triton.__version__):
        return (f"Triton {triton.__version__} is older than {'.'.join(map(str, OLDEST_TRITON))}, the oldest they are "
                "known to compile with (PyTorch 2.9 and later bring a recent enough one)")
    if device.type == "cuda":
        return None
    if device.type == "cpu" and interpreting():
        return interpreter_problem()
    return f"they run on a CUDA GPU, not on {device.type} (TRITON_INTERPRET=1 runs them on the CPU, for tests only)"


def activation_code(module: nn.Module) -> int | None:
    """The kernels' number for ``module``'s activation (``None``: they have none for it)."""
    if isinstance(module, nn.GELU) and module.approximate != "none":
        return None
    if isinstance(module, nn.Softplus) and (module.beta != 1 or module.threshold != 20):
        return None
    return ACTIVATIONS.get(type(module))


def _small(layer: nn.Linear, *tensors: Tensor, max_inputs: int = MAX_WIDTH) -> bool:
    """Widths the kernels take, and element offsets that fit 32 bits: the largest in each input
    tensor, and in the largest output or gradient, ``(N, K, width)``."""
    n, k = tensors[1].shape[:2]
    offsets = [sum((size - 1) * stride for size, stride in zip(t.shape, t.stride())) for t in tensors]
    offsets.append(n * k * max(layer.in_features, layer.out_features))
    return layer.in_features <= max_inputs and layer.out_features <= MAX_WIDTH and max(offsets) < 2**31


def applies(layer: nn.Module, activation: nn.Module, value: Tensor, jac: Tensor, sec: Tensor | None) -> bool:
    """Whether the fused layer computes ``activation(layer(...))`` of this jet: a plain linear
    layer of at most ``MAX_WIDTH`` inputs and outputs, a supported activation, first derivatives
    stored per point (not one set shared by every point, as the first layer's are) and second
    derivatives that are not the seed's zero, all small enough for the kernels' 32-bit offsets."""
    return (type(layer) is nn.Linear and activation_code(activation) is not None and sec is not None
            and jac.stride(0) != 0 and value.dtype in (torch.float32, torch.float64)
            and layer.weight.dtype == value.dtype and _small(layer, value, jac, sec)
            and why_unavailable(value.device) is None)


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))  # tl.dot needs every dimension of at least 16


def _precision(dtype: torch.dtype) -> str:
    if dtype != torch.float32:
        return "ieee"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else FLOAT32_PRODUCTS


if triton is not None:

    @triton.jit
    def _tanh(h):
        """tanh from exp, which every Triton backend and its interpreter have: (1 - e) / (1 + e)
        with e = exp(-2|h|), which loses relative accuracy as |h| -> 0 (1 - e cancels), so
        near zero the Taylor series h - h³/3 + 2h⁵/15 - 17h⁷/315 + 62h⁹/2835, switched to
        where both are within a few units in the last place (|h| < 0.3 in float32, 0.05 in
        float64)."""
        a = tl.abs(h)
        e = tl.exp(-2.0 * a)
        s = a * a
        series = a * (1.0 + s * (-1.0 / 3.0 + s * (2.0 / 15.0 + s * (-17.0 / 315.0 + s * (62.0 / 2835.0)))))
        if h.dtype.is_fp64():
            t = tl.where(a < 0.05, series, (1.0 - e) / (1.0 + e))
        else:
            t = tl.where(a < 0.3, series, (1.0 - e) / (1.0 + e))
        return tl.where(h < 0, -t, t)

    @triton.jit
    def _sigmoid(h, e):
        """σ(h) and 1 - σ(h), each from e = exp(-|h|) without cancellation: 1 / (1 + e) and
        e / (1 + e) are σ(|h|) and 1 - σ(|h|)."""
        above, below = 1.0 / (1.0 + e), e / (1.0 + e)
        return tl.where(h >= 0, above, below), tl.where(h >= 0, below, above)

    @triton.jit
    def _activation(h, ACT: tl.constexpr):
        """σ(h), σ', σ'', σ‴ (the forward engine's rules, pinn/jet.py, with 1 - 2σ = r - σ)."""
        if ACT == 0:  # tanh
            t = _tanh(h)
            d1 = 1.0 - t * t
            return t, d1, -2.0 * t * d1, -2.0 * d1 * (1.0 - 3.0 * t * t)
        elif ACT == 1:  # sine
            s = tl.sin(h)
            c = tl.cos(h)
            return s, c, -s, -c
        elif ACT == 2:  # sigmoid
            s, r = _sigmoid(h, tl.exp(-tl.abs(h)))
            q = s * r
            return s, q, q * (r - s), q * ((r - s) * (r - s) - 2.0 * q)
        elif ACT == 3:  # silu, h σ(h)
            s, r = _sigmoid(h, tl.exp(-tl.abs(h)))
            q = s * r
            u = 2.0 + h * (r - s)
            return h * s, s * (1.0 + h * r), q * u, q * (r - s) * u + q * (r - s - 2.0 * h * q)
        elif ACT == 4:  # gelu, h Φ(h) with Φ from erf
            cdf = 0.5 * (1.0 + tl.math.erf(h * 0.7071067811865476))  # 1/√2
            pdf = tl.exp(-0.5 * h * h) * 0.3989422804014327  # 1/√(2π)
            return h * cdf, cdf + h * pdf, pdf * (2.0 - h * h), pdf * (h * h * h - 4.0 * h)
        else:  # softplus, log(1 + e^h), and h itself above 20 (nn.Softplus's default threshold)
            e = tl.exp(-tl.abs(h))
            s, r = _sigmoid(h, e)
            q = s * r
            u = 1.0 + e  # log(1 + e) = log(u) e / (u - 1): log1p without cancellation, which Triton lacks
            exact = u == 1.0  # e below half an ulp of 1, where log(1 + e) is e
            log1p = tl.where(exact, e, tl.log(u) * e / tl.where(exact, 1.0, u - 1.0))
            linear = h > 20.0
            return (tl.where(linear, h, tl.maximum(h, 0.0) + log1p), tl.where(linear, 1.0, s),
                    tl.where(linear, 0.0, q), tl.where(linear, 0.0, q * (r - s)))

    @triton.jit
    def _along(along_ptr, k, cout, D: tl.constexpr, MO: tl.constexpr, AXES: tl.constexpr):
        """:math:`h_k = W v_k` ``(MO_P,)``, zero-padded: row ``k`` of ``along`` ``(K, MO)``, or with
        ``AXES`` (``along`` is then ``W`` itself, ``(MO, D)``) its column ``k``."""
        if AXES:
            return tl.load(along_ptr + cout * D + k, mask=cout < MO, other=0.0)
        return tl.load(along_ptr + k * MO + cout, mask=cout < MO, other=0.0)

    @triton.jit
    def _weight_transposed(w_ptr, cin, cout, MI: tl.constexpr, MO: tl.constexpr):
        """Wᵀ of the (MO, MI) weight, as a zero-padded (MI_P, MO_P) tile."""
        return tl.load(w_ptr + cout[None, :] * MI + cin[:, None], mask=(cin[:, None] < MI) & (cout[None, :] < MO),
                       other=0.0)

    @triton.jit
    def _forward_kernel(v_ptr, j_ptr, s_ptr, w_ptr, b_ptr, ov_ptr, oj_ptr, os_ptr, n,
                        sv, sj0, sj1, ss0, ss1,
                        MI: tl.constexpr, MO: tl.constexpr, MI_P: tl.constexpr, MO_P: tl.constexpr,
                        K: tl.constexpr, BLOCK: tl.constexpr, ACT: tl.constexpr, HAS_BIAS: tl.constexpr,
                        DIAGONAL: tl.constexpr, PRECISION: tl.constexpr):
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        cin, cout = tl.arange(0, MI_P), tl.arange(0, MO_P)
        in_mask = (rows[:, None] < n) & (cin[None, :] < MI)
        out_mask = (rows[:, None] < n) & (cout[None, :] < MO)
        wt = _weight_transposed(w_ptr, cin, cout, MI, MO)
        h = tl.dot(tl.load(v_ptr + rows[:, None] * sv + cin[None, :], mask=in_mask, other=0.0), wt,
                   input_precision=PRECISION)
        if HAS_BIAS:
            h += tl.load(b_ptr + cout, mask=cout < MO, other=0.0)[None, :]
        a, d1, d2, d3 = _activation(h, ACT)
        tl.store(ov_ptr + rows[:, None] * MO + cout[None, :], a, mask=out_mask)
        square_sum = tl.zeros((BLOCK, MO_P), dtype=h.dtype)
        for k in range(K):
            hk = tl.dot(tl.load(j_ptr + rows[:, None] * sj0 + k * sj1 + cin[None, :], mask=in_mask, other=0.0), wt,
                        input_precision=PRECISION)
            tl.store(oj_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], d1 * hk, mask=out_mask)
            if DIAGONAL:  # D'_k = σ' W D_k + σ'' h_k², one per direction
                hdk = tl.dot(tl.load(s_ptr + rows[:, None] * ss0 + k * ss1 + cin[None, :], mask=in_mask, other=0.0),
                             wt, input_precision=PRECISION)
                tl.store(os_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], d1 * hdk + d2 * hk * hk,
                         mask=out_mask)
            else:
                square_sum += hk * hk
        if not DIAGONAL:
            hl = tl.dot(tl.load(s_ptr + rows[:, None] * ss0 + cin[None, :], mask=in_mask, other=0.0), wt,
                        input_precision=PRECISION)
            tl.store(os_ptr + rows[:, None] * MO + cout[None, :], d1 * hl + d2 * square_sum, mask=out_mask)

    @triton.jit
    def _backward_kernel(v_ptr, j_ptr, s_ptr, w_ptr, b_ptr, gv_ptr, gj_ptr, gs_ptr,
                         dv_ptr, dj_ptr, ds_ptr, partial_ptr, n,
                         sv, sj0, sj1, ss0, ss1,
                         MI: tl.constexpr, MO: tl.constexpr, MI_P: tl.constexpr, MO_P: tl.constexpr,
                         K: tl.constexpr, BLOCK: tl.constexpr, ACT: tl.constexpr,
                         HAS_BIAS: tl.constexpr, HAS_GV: tl.constexpr, HAS_GJ: tl.constexpr, HAS_GS: tl.constexpr,
                         DIAGONAL: tl.constexpr, PRECISION: tl.constexpr, BIAS_ROW: tl.constexpr):
        pid = tl.program_id(0)
        cin, cout = tl.arange(0, MI_P), tl.arange(0, MO_P)
        wt = _weight_transposed(w_ptr, cin, cout, MI, MO)
        w = tl.trans(wt)  # W (MO_P, MI_P)
        if HAS_BIAS:
            bias = tl.load(b_ptr + cout, mask=cout < MO, other=0.0)
        dw = tl.zeros((MO_P, MI_P), dtype=wt.dtype)
        db = tl.zeros((MO_P,), dtype=wt.dtype)
        for block in range(pid, tl.cdiv(n, BLOCK), tl.num_programs(0)):
            rows = block * BLOCK + tl.arange(0, BLOCK)
            in_mask = (rows[:, None] < n) & (cin[None, :] < MI)
            out_mask = (rows[:, None] < n) & (cout[None, :] < MO)
            value = tl.load(v_ptr + rows[:, None] * sv + cin[None, :], mask=in_mask, other=0.0)
            h = tl.dot(value, wt, input_precision=PRECISION)
            if HAS_BIAS:
                h += bias[None, :]
            a, d1, d2, d3 = _activation(h, ACT)
            if HAS_GS and not DIAGONAL:
                gl = tl.load(gs_ptr + rows[:, None] * MO + cout[None, :], mask=out_mask, other=0.0)
            # g_h, accumulated term by term; rows past n carry zero gradients and so add nothing
            gh = tl.zeros((BLOCK, MO_P), dtype=h.dtype)
            if HAS_GV:
                gh += d1 * tl.load(gv_ptr + rows[:, None] * MO + cout[None, :], mask=out_mask, other=0.0)
            square_sum = tl.zeros((BLOCK, MO_P), dtype=h.dtype)
            for k in range(K):
                jk = tl.load(j_ptr + rows[:, None] * sj0 + k * sj1 + cin[None, :], mask=in_mask, other=0.0)
                hk = tl.dot(jk, wt, input_precision=PRECISION)
                square_sum += hk * hk
                ghk = tl.zeros((BLOCK, MO_P), dtype=h.dtype)
                if HAS_GJ:
                    gk = tl.load(gj_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], mask=out_mask, other=0.0)
                    gh += d2 * gk * hk
                    ghk += d1 * gk
                if HAS_GS and DIAGONAL:  # this direction's D'_k = σ' W D_k + σ'' h_k²
                    gdk = tl.load(gs_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], mask=out_mask, other=0.0)
                    sk = tl.load(s_ptr + rows[:, None] * ss0 + k * ss1 + cin[None, :], mask=in_mask, other=0.0)
                    hdk = tl.dot(sk, wt, input_precision=PRECISION)
                    gh += gdk * (d2 * hdk + d3 * hk * hk)
                    ghk += 2.0 * d2 * gdk * hk
                    ghdk = d1 * gdk
                    tl.store(ds_ptr + rows[:, None] * (K * MI) + k * MI + cin[None, :],
                             tl.dot(ghdk, w, input_precision=PRECISION), mask=in_mask)
                    dw += tl.dot(tl.trans(ghdk), sk, input_precision=PRECISION)
                elif HAS_GS:
                    ghk += 2.0 * d2 * gl * hk
                if HAS_GJ or HAS_GS:
                    tl.store(dj_ptr + rows[:, None] * (K * MI) + k * MI + cin[None, :],
                             tl.dot(ghk, w, input_precision=PRECISION), mask=in_mask)
                    dw += tl.dot(tl.trans(ghk), jk, input_precision=PRECISION)
            if HAS_GS and not DIAGONAL:
                sec = tl.load(s_ptr + rows[:, None] * ss0 + cin[None, :], mask=in_mask, other=0.0)
                hl = tl.dot(sec, wt, input_precision=PRECISION)
                gh += gl * (d2 * hl + d3 * square_sum)
                ghl = d1 * gl
                tl.store(ds_ptr + rows[:, None] * MI + cin[None, :], tl.dot(ghl, w, input_precision=PRECISION),
                         mask=in_mask)
                dw += tl.dot(tl.trans(ghl), sec, input_precision=PRECISION)
            tl.store(dv_ptr + rows[:, None] * MI + cin[None, :], tl.dot(gh, w, input_precision=PRECISION),
                     mask=in_mask)
            dw += tl.dot(tl.trans(gh), value, input_precision=PRECISION)
            db += tl.sum(gh, axis=0)
        row = partial_ptr + pid * (MO_P * MI_P + MO_P)  # this program's [dW, db]
        if BIAS_ROW:  # db in row MO of the padded dW: see _FusedLayer.backward
            tl.store(row + cout[:, None] * MI_P + cin[None, :], dw, mask=cout[:, None] < MO)
            tl.store(row + MO * MI_P + cout, db, mask=cout < MO)
        else:
            tl.store(row + cout[:, None] * MI_P + cin[None, :], dw)
            tl.store(row + MO_P * MI_P + cout, db)

    @triton.jit
    def _first_forward_kernel(x_ptr, along_ptr, w_ptr, b_ptr, ov_ptr, oj_ptr, os_ptr, n, sx,
                              D: tl.constexpr, MO: tl.constexpr, D_P: tl.constexpr, MO_P: tl.constexpr,
                              K: tl.constexpr, AXES: tl.constexpr, BLOCK: tl.constexpr, ACT: tl.constexpr,
                              HAS_BIAS: tl.constexpr, DIAGONAL: tl.constexpr, PRECISION: tl.constexpr):
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        cin, cout = tl.arange(0, D_P), tl.arange(0, MO_P)
        out_mask = (rows[:, None] < n) & (cout[None, :] < MO)
        wt = _weight_transposed(w_ptr, cin, cout, D, MO)
        x = tl.load(x_ptr + rows[:, None] * sx + cin[None, :], mask=(rows[:, None] < n) & (cin[None, :] < D), other=0.0)
        h = tl.dot(x, wt, input_precision=PRECISION)
        if HAS_BIAS:
            h += tl.load(b_ptr + cout, mask=cout < MO, other=0.0)[None, :]
        a, d1, d2, d3 = _activation(h, ACT)
        tl.store(ov_ptr + rows[:, None] * MO + cout[None, :], a, mask=out_mask)
        square_sum = tl.zeros((MO_P,), dtype=h.dtype)
        for k in range(K):
            hk = _along(along_ptr, k, cout, D, MO, AXES)  # W v_k
            square_sum += hk * hk
            tl.store(oj_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], d1 * hk[None, :], mask=out_mask)
            if DIAGONAL:
                tl.store(os_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], d2 * (hk * hk)[None, :],
                         mask=out_mask)
        if not DIAGONAL:
            tl.store(os_ptr + rows[:, None] * MO + cout[None, :], d2 * square_sum[None, :], mask=out_mask)

    @triton.jit
    def _first_backward_kernel(x_ptr, along_ptr, w_ptr, b_ptr, gv_ptr, gj_ptr, gs_ptr, partial_ptr, n, sx,
                               D: tl.constexpr, MO: tl.constexpr, D_P: tl.constexpr, MO_P: tl.constexpr,
                               K: tl.constexpr, K_P: tl.constexpr, AXES: tl.constexpr, BLOCK: tl.constexpr,
                               ACT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GV: tl.constexpr, HAS_GJ: tl.constexpr,
                               HAS_GS: tl.constexpr, DIAGONAL: tl.constexpr, PRECISION: tl.constexpr):
        pid = tl.program_id(0)
        cin, cout = tl.arange(0, D_P), tl.arange(0, MO_P)
        row = partial_ptr + pid * (MO_P * D_P + MO_P + K * MO_P)  # this program's [dW, db, Σ g_{h_k}]
        wt = _weight_transposed(w_ptr, cin, cout, D, MO)
        if HAS_BIAS:
            bias = tl.load(b_ptr + cout, mask=cout < MO, other=0.0)
        square_sum = tl.zeros((MO_P,), dtype=wt.dtype)
        for k in range(K):
            hk = _along(along_ptr, k, cout, D, MO, AXES)
            square_sum += hk * hk
        dw = tl.zeros((MO_P, D_P), dtype=wt.dtype)
        db = tl.zeros((MO_P,), dtype=wt.dtype)
        directions = tl.arange(0, K_P)
        dk = tl.zeros((K_P, MO_P), dtype=wt.dtype)  # row k: Σ over the points of g_{h_k}
        for block in range(pid, tl.cdiv(n, BLOCK), tl.num_programs(0)):
            rows = block * BLOCK + tl.arange(0, BLOCK)
            out_mask = (rows[:, None] < n) & (cout[None, :] < MO)
            x = tl.load(x_ptr + rows[:, None] * sx + cin[None, :], mask=(rows[:, None] < n) & (cin[None, :] < D),
                        other=0.0)
            h = tl.dot(x, wt, input_precision=PRECISION)
            if HAS_BIAS:
                h += bias[None, :]
            a, d1, d2, d3 = _activation(h, ACT)
            gh = tl.zeros((BLOCK, MO_P), dtype=h.dtype)
            if HAS_GV:
                gh += d1 * tl.load(gv_ptr + rows[:, None] * MO + cout[None, :], mask=out_mask, other=0.0)
            if HAS_GS and not DIAGONAL:
                gl = tl.load(gs_ptr + rows[:, None] * MO + cout[None, :], mask=out_mask, other=0.0)
                gh += d3 * gl * square_sum[None, :]
            for k in range(K):
                hk = _along(along_ptr, k, cout, D, MO, AXES)
                ghk = tl.zeros((BLOCK, MO_P), dtype=h.dtype)
                if HAS_GJ:
                    gk = tl.load(gj_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], mask=out_mask, other=0.0)
                    gh += d2 * gk * hk[None, :]
                    ghk += d1 * gk
                if HAS_GS and DIAGONAL:  # D'_k = σ'' h_k²
                    gdk = tl.load(gs_ptr + rows[:, None] * (K * MO) + k * MO + cout[None, :], mask=out_mask, other=0.0)
                    gh += d3 * gdk * (hk * hk)[None, :]
                    ghk += 2.0 * d2 * gdk * hk[None, :]
                elif HAS_GS:
                    ghk += 2.0 * d2 * gl * hk[None, :]
                if HAS_GJ or HAS_GS:  # times v_k, Σ over the points of g_{h_k} is W's gradient through h_k
                    dk += tl.where(directions[:, None] == k, tl.sum(ghk, axis=0)[None, :], 0.0)
            dw += tl.dot(tl.trans(gh), x, input_precision=PRECISION)
            db += tl.sum(gh, axis=0)
        tl.store(row + cout[:, None] * D_P + cin[None, :], dw)
        tl.store(row + MO_P * D_P + cout, db)
        tl.store(row + MO_P * D_P + MO_P + directions[:, None] * MO_P + cout[None, :], dk, mask=directions[:, None] < K)

    @triton.jit
    def _loop_probe_kernel(out_ptr, n):
        """Each program sums the indices below ``n`` it visits, looping as the backward kernels do."""
        pid = tl.program_id(0)
        total = 0
        for i in range(pid, n, tl.num_programs(0)):
            total += i
        tl.store(out_ptr + pid, total)


#: interpreter_problem's answer once found (a list rather than functools.cache, which
#: torch.compile would trace through: applies() asks inside compiled code)
_interpreter_verdict: list[str | None] = []


def interpreter_problem() -> str | None:
    """Why Triton's CPU interpreter cannot run the kernels here (``None``: it can, or it is off).

    Triton 3.6 and earlier take a loop's bounds from one-element numpy arrays, which numpy 2.4
    and later refuse to turn into numbers; a small kernel that loops as the backward kernels do
    finds out, once."""
    if not interpreting():
        return None
    if not _interpreter_verdict:
        _interpreter_verdict.append(_probe_interpreter())
    return _interpreter_verdict[0]


def _probe_interpreter() -> str | None:
    sums = torch.zeros(2, dtype=torch.int32)
    try:
        _loop_probe_kernel[(2,)](sums, 5)
    except Exception as error:  # noqa: BLE001 -- whatever stops the interpreter is the reason
        return (f"Triton {triton.__version__}'s CPU interpreter fails with numpy {np.__version__} ({error}); "
                "Triton 3.7 or later, or numpy older than 2.4, runs it")
    if sums.tolist() != [0 + 2 + 4, 1 + 3]:
        return f"Triton {triton.__version__}'s CPU interpreter loops wrongly (sums {sums.tolist()}, not [6, 4])"
    return None


def _launch(kernel, grid: tuple[int], *args, **kwargs) -> None:
    """``kernel[grid](...)``; a GPU with less shared memory or fewer registers per program than
    the kernel was built for (an H100's) is a configuration error, not a traceback."""
    try:
        kernel[grid](*args, **kwargs)
    except OutOfResources as error:
        raise ConfigError(f"derivatives.triton=true, but this GPU cannot run the kernels ({error}; they are sized "
                          "for an H100). Set derivatives.triton=false") from error


def _programs(device: torch.device, blocks: int) -> int:
    """Programs of the backward kernel: each loops over blocks of points and writes one partial
    sum of the weight's gradient; a few per multiprocessor keep the GPU busy."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    return max(1, min(blocks, PROGRAMS_PER_SM * sms))


class _FusedLayer(torch.autograd.Function):
    """``activation(Linear(...))`` of a jet (laplacian or diagonal mode), by the kernels above (see the
    module docstring)."""

    @staticmethod
    def forward(ctx, value, jac, sec, weight, bias, act):
        value, jac, sec = (t if t.stride(-1) == 1 else t.contiguous() for t in (value, jac, sec))
        weight = weight.contiguous()
        n, k, mi = jac.shape
        mo = weight.shape[0]
        diagonal = sec.dim() == 3  # (N, K, m): one second derivative per direction
        out_value = value.new_empty(n, mo)
        out_jac = value.new_empty(n, k, mo)
        out_sec = value.new_empty(n, k, mo) if diagonal else value.new_empty(n, mo)
        shape = dict(MI=mi, MO=mo, MI_P=_pad(mi), MO_P=_pad(mo), K=k, ACT=act, HAS_BIAS=bias is not None,
                     DIAGONAL=diagonal, PRECISION=_precision(value.dtype))
        _launch(_forward_kernel, (triton.cdiv(n, FORWARD_BLOCK),),
            value, jac, sec, weight, bias if bias is not None else weight, out_value, out_jac, out_sec, n,
            value.stride(0), jac.stride(0), jac.stride(1), sec.stride(0), sec.stride(1) if diagonal else 0,
            BLOCK=FORWARD_BLOCK, num_warps=FORWARD_WARPS, **shape)
        ctx.save_for_backward(value, jac, sec, weight, bias)
        ctx.shape = shape
        ctx.set_materialize_grads(False)  # an output the loss does not reach gets None, skipped below
        return out_value, out_jac, out_sec

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_value, g_jac, g_sec):
        value, jac, sec, weight, bias = ctx.saved_tensors
        shape = ctx.shape
        n, k, mi = jac.shape
        if g_value is None and g_jac is None and g_sec is None:
            return None, None, None, None, None, None
        blocks = triton.cdiv(n, BACKWARD_BLOCK)
        programs = _programs(value.device, blocks)
        d_value = value.new_empty(n, mi)
        d_jac = value.new_empty(n, k, mi) if (g_jac is not None or g_sec is not None) else None
        d_sec = None if g_sec is None else value.new_empty(sec.shape)
        mo, mi_p, mo_p = weight.shape[0], shape["MI_P"], shape["MO_P"]
        partial = value.new_empty(programs, mo_p * mi_p + mo_p)  # each program's partial [dW, db]
        # Autograd copies a gradient into .grad unless it has the parameter's own layout: the
        # sum over the programs is taken over the unpadded rows, and the bias's gradient rides
        # along as row mo, where the padding has room for it (fewer outputs than the padded
        # size) and the row is long enough (no more outputs than inputs: the sum reads mi
        # columns), as in a 50-wide hidden layer. The kernel leaves row mo's columns mo..mi
        # unwritten: summed from uninitialised memory, and never read.
        bias_row = bias is not None and mo < mo_p and mo <= mi
        g_value, g_jac, g_sec = (None if g is None else g.contiguous() for g in (g_value, g_jac, g_sec))
        dummy = value  # pointer arguments the kernel never reads (their HAS_ flag is off)
        _launch(_backward_kernel, (programs,),
            value, jac, sec, weight, bias if bias is not None else dummy,
            g_value if g_value is not None else dummy, g_jac if g_jac is not None else dummy,
            g_sec if g_sec is not None else dummy,
            d_value, d_jac if d_jac is not None else dummy, d_sec if d_sec is not None else dummy, partial, n,
            value.stride(0), jac.stride(0), jac.stride(1), sec.stride(0), sec.stride(1) if shape["DIAGONAL"] else 0,
            BLOCK=BACKWARD_BLOCK, HAS_GV=g_value is not None, HAS_GJ=g_jac is not None,
            HAS_GS=g_sec is not None, BIAS_ROW=bias_row, num_warps=BACKWARD_WARPS, num_stages=BACKWARD_STAGES,
            **shape)
        if bias_row or bias is None:  # one reduction, laid out as [dW; db]: (mo (+ 1), mi)
            padded = partial[:, :mo_p * mi_p].view(programs, mo_p, mi_p)
            total = padded[:, :mo + 1 if bias_row else mo, :mi].sum(dim=0)
            return d_value, d_jac, d_sec, total[:mo], total[mo, :mo] if bias_row else None, None
        total = partial.sum(dim=0)  # one reduction over the programs for both; the weight's is copied
        d_weight = total[:mo_p * mi_p].view(mo_p, mi_p)[:mo, :mi]
        return d_value, d_jac, d_sec, d_weight, total[mo_p * mi_p:mo_p * mi_p + mo], None


class _FirstLayer(torch.autograd.Function):
    r"""``activation(Linear(...))`` of the seed jet: points ``x`` ``(N, d)`` with the same
    directions ``v_k`` (``(K, d)``: the coordinate axes, or random ones) at every point and zero
    second derivatives. Then :math:`h_k = W v_k` is the same at every point, and
    :math:`J'_k = \sigma'(h) h_k`, :math:`L' = \sigma''(h) \sum_k h_k^2`. Backward, as for a
    hidden layer with :math:`h_L = 0`, the weight's gradient through :math:`h_k` is
    :math:`(\sum_{\text{points}} g_{h_k}) v_k^\top`; neither ``x`` nor the directions get one.
    ``directions=None`` stands for the coordinate axes: then :math:`h_k` is column ``k`` of ``W``,
    read where it lies (no product, no identity), and the weight's gradient through it is added
    to column ``k``."""

    @staticmethod
    def forward(ctx, x, directions, weight, bias, act, diagonal):
        x = x if x.stride(-1) == 1 else x.contiguous()
        weight = weight.contiguous()
        n, d = x.shape
        mo = weight.shape[0]
        if directions is None:
            along = weight.T  # h_k = W e_k, column k of W, which the kernels read in place (AXES)
        else:
            directions = directions.contiguous()
            along = directions @ weight.T  # h_k = W v_k, (K, MO): the same at every point
        k = along.shape[0]
        out_value, out_jac = x.new_empty(n, mo), x.new_empty(n, k, mo)
        out_sec = x.new_empty(n, k, mo) if diagonal else x.new_empty(n, mo)
        shape = dict(D=d, MO=mo, D_P=_pad(d), MO_P=_pad(mo), K=k, AXES=directions is None, ACT=act,
                     HAS_BIAS=bias is not None, DIAGONAL=diagonal, PRECISION=_precision(x.dtype))
        _launch(_first_forward_kernel, (triton.cdiv(n, FORWARD_BLOCK),),
            x, along, weight, bias if bias is not None else weight, out_value, out_jac, out_sec, n, x.stride(0),
            BLOCK=FORWARD_BLOCK, num_warps=FORWARD_WARPS, **shape)
        ctx.save_for_backward(x, directions, along, weight, bias)
        ctx.shape = shape
        ctx.set_materialize_grads(False)
        return out_value, out_jac, out_sec

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_value, g_jac, g_sec):
        x, directions, along, weight, bias = ctx.saved_tensors
        if g_value is None and g_jac is None and g_sec is None:
            return None, None, None, None, None, None
        shape = ctx.shape
        n, d = x.shape
        k, mo = along.shape[0], weight.shape[0]
        programs = _programs(x.device, triton.cdiv(n, BACKWARD_BLOCK))
        d_p, mo_p = shape["D_P"], shape["MO_P"]
        partial = x.new_empty(programs, mo_p * d_p + mo_p + k * mo_p)  # each program's [dW, db, Σ g_{h_k}]
        g_value, g_jac, g_sec = (None if g is None else g.contiguous() for g in (g_value, g_jac, g_sec))
        dummy = x
        _launch(_first_backward_kernel, (programs,),
            x, along, weight, bias if bias is not None else dummy,
            g_value if g_value is not None else dummy, g_jac if g_jac is not None else dummy,
            g_sec if g_sec is not None else dummy, partial, n, x.stride(0),
            K_P=triton.next_power_of_2(k), BLOCK=BACKWARD_BLOCK, HAS_GV=g_value is not None,
            HAS_GJ=g_jac is not None, HAS_GS=g_sec is not None, num_warps=BACKWARD_WARPS,
            num_stages=BACKWARD_STAGES, **shape)
        total = partial.sum(dim=0)  # one reduction over the programs for all three
        d_weight = total[:mo_p * d_p].view(mo_p, d_p)[:mo, :d]
        if g_jac is not None or g_sec is not None:  # Σ_k (Σ g_{h_k}) v_kᵀ
            through_directions = total[mo_p * d_p + mo_p:].view(k, mo_p)[:, :mo].T
            d_weight = (d_weight + through_directions if directions is None
                        else torch.addmm(d_weight, through_directions, directions))
        d_bias = total[mo_p * d_p:mo_p * d_p + mo] if bias is not None else None
        return None, None, d_weight, d_bias, None, None


def first_layer_applies(layer: nn.Module, activation: nn.Module, value: Tensor, jac: Tensor) -> bool:
    """Whether :class:`_FirstLayer` computes ``activation(layer(...))`` of this jet: a plain linear
    layer and a supported activation applied to points (and directions) that need no gradient,
    with one set of at most ``MAX_FIRST_DIRECTIONS`` directions (its backward kernel keeps a sum
    per direction in registers) shared by every point and zero second derivatives (the caller
    checks those), and at most ``MAX_FIRST_INPUTS`` inputs."""
    return (type(layer) is nn.Linear and activation_code(activation) is not None and jac.stride(0) == 0
            and jac.shape[1] <= MAX_FIRST_DIRECTIONS and not value.requires_grad and not jac.requires_grad
            and value.dtype in (torch.float32, torch.float64) and layer.weight.dtype == value.dtype
            and _small(layer, value, jac, max_inputs=MAX_FIRST_INPUTS)
            and why_unavailable(value.device) is None)


def _first_linear_activate(layer: nn.Linear, activation: nn.Module, x: Tensor, directions: Tensor | None,
                           diagonal: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The value, first derivatives and Laplacian (``diagonal``: the second derivative along each
    direction) of ``activation(layer(x))`` along ``directions`` ``(K, d)``, the same at every
    point, or ``None``: the coordinate axes (see :func:`first_layer_applies`)."""
    return _FirstLayer.apply(x, directions, layer.weight, layer.bias, activation_code(activation), diagonal)


def _linear_activate(layer: nn.Linear, activation: nn.Module, value: Tensor, jac: Tensor,
                     sec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The value, first derivatives and second derivatives of ``activation(layer(.))``: their sum
    (``sec`` ``(N, m)``) or one per direction (``(N, K, m)``); see :func:`applies`."""
    return _FusedLayer.apply(value, jac, sec, layer.weight, layer.bias, activation_code(activation))


# torch.compile leaves the kernels as they are: it runs `first_linear_activate` and
# `linear_activate` eagerly, compiling the work before and after them (a graph break at each
# fused layer). torch.compiler.disable imports torch._dynamo, about a second on a CPU, so they
# are made when first asked for (by the module's __getattr__, which the compiler also calls),
# not on import: `python train.py --help`, or a launch refused over its settings, does not wait.
_UNCOMPILED = {"first_linear_activate": _first_linear_activate, "linear_activate": _linear_activate}


def __getattr__(name: str):
    if name not in _UNCOMPILED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    function = globals()[name] = torch.compiler.disable(_UNCOMPILED[name])
    return function


def fusable_layers(model: nn.Module) -> int:
    """How many linear layers of ``model`` the kernels can run with the activation after them:
    in an MLP or as a modified MLP's encoders and gates (inside a hard constraint or not), at
    most ``MAX_WIDTH`` wide (a Sequential's first layer: up to ``MAX_FIRST_INPUTS`` inputs),
    followed by an activation with a kernel (:data:`ACTIVATIONS`). (Whether they do at a step
    also depends on the points, see :func:`applies`.)"""
    if isinstance(model, (MLP, OutputTransform)):
        return fusable_layers(model.net)
    if isinstance(model, ModifiedMLP):
        parts = (model.embedding, model.encoder_u, model.encoder_v, *model.gates)
        return sum(fusable_layers(part) for part in parts)
    if not isinstance(model, nn.Sequential):
        return 0
    layers, count, i = list(model), 0, 0
    while i < len(layers):
        layer = layers[i]
        if (i + 1 < len(layers) and type(layer) is nn.Linear and activation_code(layers[i + 1]) is not None
                and layer.in_features <= (MAX_FIRST_INPUTS if i == 0 else MAX_WIDTH)
                and layer.out_features <= MAX_WIDTH):
            count, i = count + 1, i + 2
        else:
            count, i = count + fusable_layers(layer), i + 1
    return count


def check_fusable(model: nn.Module) -> None:
    """Raise :class:`ConfigError` where ``derivatives.triton=true`` would fuse nothing of ``model``."""
    if fusable_layers(model) == 0:
        raise ConfigError(
            f"derivatives.triton=true, but no layer of this {type(model).__name__} can run in the kernels: they take a "
            f"plain linear layer (not a factorized one) of at most {MAX_WIDTH} inputs and outputs followed by tanh, "
            "sin, sigmoid, silu, gelu or softplus, in an MLP or a modified MLP "
            "(model=mlp, fourier, periodic, modified_mlp). Set derivatives.triton=false")


def check_available(device: torch.device) -> None:
    """Raise :class:`ConfigError` where ``derivatives.triton=true`` cannot run on ``device``."""
    reason = why_unavailable(device)
    if reason is not None:
        raise ConfigError(f"derivatives.triton=true needs the Triton kernels, but {reason}. "
                          "Set derivatives.triton=false")
