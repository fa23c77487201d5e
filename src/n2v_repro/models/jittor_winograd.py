"""Gradients of 3x3, stride-1 convolutions for Jittor CPU training by oneDNN's Winograd.

Jittor hands every convolution to oneDNN with `algorithm::convolution_direct`. oneDNN 2.2
also has F(4x4, 3x3) Winograd kernels for AVX-512 CPUs, forward and both backward passes,
which take about half the time on a 64-channel 3x3 convolution (the project's 2-core Xeon,
batch 16 x 64 x 32 x 32: backward-data 3.5 -> 1.6 ms, backward-weights 3.5 -> 1.8 ms,
forward 3.7 -> 1.6 ms). `Conv3x3` uses them for the two gradients only: the layer output
stays on the direct algorithm, as Jittor computes it, because Winograd's forward rounding
(~2e-6 of the largest value) flips units sitting at a ReLU kink after batch norm and the
parity gate failed n2v_unet32 with it (0.049 gradient error). The Winograd gradients differ
from the direct ones by rounding only (tests/test_jittor_kernels.py against float64; the
parity gate against PyTorch). Where oneDNN has no Winograd kernel (a CPU without AVX-512,
channels not a multiple of 16) the same kernels run the direct algorithm, as Jittor would.

A transposed convolution is the adjoint of a convolution with the same weight tensor: its
forward pass is the convolution's backward-data pass and vice versa, and its weight
gradient is the convolution's with the two activations swapped. So three kernels serve
both (`Conv3x3(transposed)`).
"""

from __future__ import annotations

import functools

import jittor as jt

from n2v_repro.framework_site import onednn_dirs

# Primitive descriptors are created per call; oneDNN's primitive cache keeps the compiled
# kernels, so a training step pays for the (microsecond) descriptor lookups only.
_HEADER = r"""
#include <dnnl.hpp>
namespace n2v_winograd {
using dnnl::memory;
using tag = dnnl::memory::format_tag;

inline dnnl::engine& cpu() { static dnnl::engine e(dnnl::engine::kind::cpu, 0); return e; }
inline memory::desc any(const memory::dims& d) {
    return memory::desc(d, memory::data_type::f32, tag::any);
}
inline memory plain(const memory::dims& d, void* data) {
    return memory(memory::desc(d, memory::data_type::f32, tag::abcd), cpu(), data);
}
// `m` in layout `want`: `m` itself, or a reordered copy.
inline memory as(const memory& m, const memory::desc& want, dnnl::stream& s) {
    if (m.get_desc() == want) return m;
    memory out(want, cpu());
    dnnl::reorder(m, out).execute(s, const_cast<memory&>(m), out);
    return out;
}
// Runs `make(wanted)`, or `make` with the direct algorithm where oneDNN has no kernel of
// the wanted algorithm for this CPU or shape.
template <class F>
auto with_algorithm(dnnl::algorithm wanted, F make) -> decltype(make(wanted)) {
    try {
        return make(wanted);
    } catch (const dnnl::error&) {
        return make(dnnl::algorithm::convolution_direct);
    }
}
struct Shapes {
    memory::dims x, w, y, strides{1, 1}, pad{1, 1};
    Shapes(int n, int ic, int oc, int h, int w_)
        : x{n, ic, h, w_}, w{oc, ic, 3, 3}, y{n, oc, h, w_} {}
    dnnl::convolution_forward::primitive_desc forward(dnnl::algorithm a) const {
        return {{dnnl::prop_kind::forward_training, a, any(x), any(w), any(y), strides, pad, pad},
                cpu()};
    }
    // PD: convolution_backward_data's or convolution_backward_weights' primitive_desc.
    template <class PD>
    PD backward(dnnl::algorithm a) const {
        return PD({a, any(x), any(w), any(y), strides, pad, pad}, cpu(), forward(a));
    }
};
// Writes `prim`'s output (layout `made`) into the plain `user` memory.
template <class P>
void run_into(P prim, std::unordered_map<int, memory> args, int out_arg, const memory::desc& made,
         memory user, dnnl::stream& s) {
    memory out = made == user.get_desc() ? user : memory(made, cpu());
    args[out_arg] = out;
    prim.execute(s, args);
    if (out != user) dnnl::reorder(out, user).execute(s, out, user);
    s.wait();
}
}  // namespace n2v_winograd
"""

# in0 x (N, IC, H, W), in1 w (OC, IC, 3, 3) -> out0 y (N, OC, H, W).
_FORWARD = r"""
using namespace n2v_winograd;
Shapes sh(in0_shape0, in0_shape1, in1_shape0, in0_shape2, in0_shape3);
dnnl::stream s(cpu());
auto pd = with_algorithm(dnnl::algorithm::ALGORITHM,
                         [&](dnnl::algorithm a) { return sh.forward(a); });
memory x = as(plain(sh.x, in0_p), pd.src_desc(), s);
memory w = as(plain(sh.w, in1_p), pd.weights_desc(), s);
run_into(dnnl::convolution_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}},
    DNNL_ARG_DST, pd.dst_desc(), plain(sh.y, out0_p), s);
"""
# in0 dy (N, OC, H, W), in1 w (OC, IC, 3, 3) -> out0 dx (N, IC, H, W).
_BACKWARD_DATA = r"""
using namespace n2v_winograd;
Shapes sh(in0_shape0, in1_shape1, in1_shape0, in0_shape2, in0_shape3);
dnnl::stream s(cpu());
auto pd = with_algorithm(dnnl::algorithm::ALGORITHM, [&](dnnl::algorithm a) {
    return sh.backward<dnnl::convolution_backward_data::primitive_desc>(a);
});
memory dy = as(plain(sh.y, in0_p), pd.diff_dst_desc(), s);
memory w = as(plain(sh.w, in1_p), pd.weights_desc(), s);
run_into(dnnl::convolution_backward_data(pd), {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w}},
    DNNL_ARG_DIFF_SRC, pd.diff_src_desc(), plain(sh.x, out0_p), s);
"""
# in0 x (N, IC, H, W), in1 dy (N, OC, H, W) -> out0 dw (OC, IC, 3, 3).
_BACKWARD_WEIGHTS = r"""
using namespace n2v_winograd;
Shapes sh(in0_shape0, in0_shape1, in1_shape1, in0_shape2, in0_shape3);
dnnl::stream s(cpu());
auto pd = with_algorithm(dnnl::algorithm::ALGORITHM, [&](dnnl::algorithm a) {
    return sh.backward<dnnl::convolution_backward_weights::primitive_desc>(a);
});
memory x = as(plain(sh.x, in0_p), pd.src_desc(), s);
memory dy = as(plain(sh.y, in1_p), pd.diff_dst_desc(), s);
run_into(dnnl::convolution_backward_weights(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}},
    DNNL_ARG_DIFF_WEIGHTS, pd.diff_weights_desc(), plain(sh.w, out0_p), s);
"""


@functools.cache
def _onednn_flags() -> str:
    # The PyPI oneDNN that Jittor's own convolutions use (jittor_env.link_onednn).
    lib, include = onednn_dirs()
    return f'FLAGS: -I"{include}" -L"{lib}" -lmkldnn -Wl,-rpath,"{lib}" '


def _kernel(shape: tuple[int, ...], inputs: list[jt.Var], source: str, winograd: bool) -> jt.Var:
    algorithm = "convolution_winograd" if winograd else "convolution_direct"
    source = source.replace("ALGORITHM", algorithm)
    out = jt.code(shape, "float32", inputs, cpu_header=_HEADER, cpu_src=source)
    # Called for every convolution of every training step: the flags are built once.
    out.compile_options = {_onednn_flags(): 1}
    return out


def _forward(x: jt.Var, w: jt.Var, winograd: bool) -> jt.Var:
    return _kernel((x.shape[0], w.shape[0], *x.shape[2:]), [x, w], _FORWARD, winograd)


def _backward_data(dy: jt.Var, w: jt.Var, winograd: bool) -> jt.Var:
    return _kernel((dy.shape[0], w.shape[1], *dy.shape[2:]), [dy, w], _BACKWARD_DATA, winograd)


def _backward_weights(x: jt.Var, dy: jt.Var) -> jt.Var:
    return _kernel((dy.shape[1], x.shape[1], 3, 3), [x, dy], _BACKWARD_WEIGHTS, winograd=True)


class Conv3x3(jt.Function):
    """A 3x3, stride-1, padding-1 convolution (or transposed convolution) without bias.

    The output by oneDNN's direct algorithm, as Jittor computes it; the gradients by Winograd.
    """

    def __init__(self, transposed: bool):
        self.transposed = transposed

    def execute(self, x: jt.Var, w: jt.Var) -> jt.Var:
        self.x, self.w = x, w
        if self.transposed:
            return _backward_data(x, w, winograd=False)
        return _forward(x, w, winograd=False)

    def grad(self, dy: jt.Var) -> tuple[jt.Var, jt.Var]:
        if self.transposed:
            return _forward(dy, self.w, winograd=True), _backward_weights(dy, self.x)
        return _backward_data(dy, self.w, winograd=True), _backward_weights(self.x, dy)


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value, value) if isinstance(value, int) else tuple(value)


def applies_to(conv: jt.nn.Module) -> bool:
    """Whether `conv` is a 3x3, stride-1, padding-1, ungrouped, undilated (transposed) conv."""
    return (
        tuple(conv.weight.shape[2:]) == (3, 3)
        and conv.groups == 1
        and all(_pair(getattr(conv, name)) == (1, 1) for name in ("stride", "padding", "dilation"))
        and _pair(getattr(conv, "output_padding", 0)) == (0, 0)
    )
