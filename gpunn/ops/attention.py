"""Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V, forward and backward.

Shapes: q (B, H, Lq, d), k (B, H, Lk, d), v (B, H, Lk, dv) -> out (B, H, Lq, dv).

Masks: ``key_mask`` (B, Lk), True where a key may be attended (padding is
False); ``causal`` lets query i see keys j <= i only. A masked key gets exactly
zero weight; a query that may see no key at all gets zeros, not NaN.

The forward pass also returns the log-sum-exp of each row of scores,
lse_i = log sum_j exp(s_ij), which is all the backward pass needs to rebuild
the probabilities p_ij = exp(s_ij - lse_i) -- so no L x L matrix has to be kept
between the two passes. Backward, with D_i = sum_c dout_ic out_ic::

    dV = P^T dOut        dP = dOut V^T        dS = P * (dP - D)
    dQ = dS K scale      dK = dS^T Q scale

The NumPy twin below computes the L x L scores plainly (the readable version);
the CUDA kernels in ``cuda_kernels/attention.cu`` never store them.
"""

import math

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels

MAX_HEAD_DIM = 128  # the kernels keep one query row (and its output) per thread


def allowed(q_len, k_len, key_mask, causal, xp):
    """Boolean, broadcastable to (B, H, Lq, Lk): which scores are allowed (None when all are).

    ``key_mask`` is (B, Lk) key padding, or any boolean array that broadcasts to (B, H, Lq, Lk)
    (the twin takes those; the kernels only the first kind).
    """
    allow = None
    if key_mask is not None:
        allow = key_mask.astype(bool)[:, None, None, :] if key_mask.ndim == 2 else key_mask.astype(bool)
    if causal:
        lower = xp.arange(k_len)[None, :] <= xp.arange(q_len)[:, None]
        allow = lower[None, None] if allow is None else allow & lower[None, None]
    return allow


def probabilities(q, k, key_mask=None, causal=False, scale=None):
    """(P, lse): the attention weights (B, H, Lq, Lk), zero where masked, and the row log-sum-exps."""
    xp = backend.get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q * scale) @ k.swapaxes(-1, -2)  # the L x L scores (scaling q is cheaper); then in place
    allow = allowed(q.shape[-2], k.shape[-2], key_mask, causal, xp)
    if allow is not None:
        s = xp.where(allow, s, -xp.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = xp.where(xp.isfinite(row_max), row_max, 0)  # a fully masked row has max -inf
    s -= row_max
    p = xp.exp(s, out=s)
    total = p.sum(axis=-1)
    seen = total > 0  # False for a row with no allowed key
    p /= xp.where(seen, total, 1)[..., None]
    lse = xp.where(seen, xp.log(xp.where(seen, total, 1)) + row_max[..., 0], xp.inf)
    return p, lse


def attention_forward_cpu(q, k, v, key_mask=None, causal=False, scale=None):
    """(out, lse) = (P V, log-sum-exp of each row of scores)."""
    p, lse = probabilities(q, k, key_mask, causal, scale)
    return p @ v, lse


def attention_backward_cpu(q, k, v, out, lse, dout, key_mask=None, causal=False, scale=None):
    """(dq, dk, dv), rebuilding P from lse."""
    xp = backend.get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    p = (q * scale) @ k.swapaxes(-1, -2)  # rebuilt in place: scores, then exp(scores - lse)
    p -= lse[..., None]
    xp.exp(p, out=p)  # rows with lse = inf give 0
    allow = allowed(q.shape[-2], k.shape[-2], key_mask, causal, xp)
    if allow is not None:
        p = xp.where(allow, p, 0)
    dv = p.swapaxes(-1, -2) @ dout
    ds = dout @ v.swapaxes(-1, -2)  # dP, turned into dS = P * (dP - D) in place
    ds -= (dout * out).sum(axis=-1, keepdims=True)
    ds *= p
    return (ds @ k) * scale, (ds.swapaxes(-1, -2) @ q) * scale, dv


# --- the fused CUDA kernels -----------------------------------------------------------------

_fallback_said = False


def kernel_fits(q, k, v, key_mask):
    """The kernels take contiguous float32 on the GPU, head dims up to MAX_HEAD_DIM, a key-padding mask or none."""
    global _fallback_said
    if not kernels.takes(q, k, v):
        return False
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        if not _fallback_said:
            print(f"gpunn: attention head dim {max(q.shape[-1], v.shape[-1])} is above the fused kernel's limit "
                  f"{MAX_HEAD_DIM}; using the unfused path (it stores the L x L scores)")
            _fallback_said = True
        return False
    return key_mask is None or key_mask.ndim == 2


_no_mask = {}  # (array type, device) -> a 1-element int8 array, passed (never read) when there is no mask


def _mask_args(q, k, key_mask):
    xp = backend.xp
    if key_mask is None:
        key = (type(q), backend.device_id)
        if key not in _no_mask:
            _no_mask[key] = xp.ones(1, dtype=np.int8)
        return _no_mask[key], np.int32(0)
    return xp.ascontiguousarray(key_mask.astype(np.int8)), np.int32(1)


ROWS_PER_BLOCK = 128  # at most; a short sequence gets fewer threads (whole warps of 32), none idle for nothing


def _launch(name, rows, heads, args):
    """A 1-D grid of ``heads`` (= B*H) groups of row blocks, as the kernels expect."""
    threads = min(ROWS_PER_BLOCK, 32 * kernels.grid(rows, 32))
    grid = (kernels.grid(rows, threads) * heads,)
    kernels.get_kernel("attention", name)(grid, (threads,), args)


def attention_forward_gpu(q, k, v, key_mask=None, causal=False, scale=None):
    b, h, lq, d = q.shape
    lk, dv = k.shape[-2], v.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    xp = backend.xp
    if lq == 0 or lk == 0 or b * h == 0:  # nothing to attend to: zeros, and lse = +inf (no allowed key)
        return xp.zeros((b, h, lq, dv), dtype=q.dtype), xp.full((b, h, lq), np.inf, dtype=q.dtype)
    out = xp.empty((b, h, lq, dv), dtype=q.dtype)
    lse = xp.empty((b, h, lq), dtype=q.dtype)
    mask, has_mask = _mask_args(q, k, key_mask)
    _launch("attention_forward", lq, b * h, (q, k, v, mask, out, lse, np.int64(b), np.int64(h), np.int64(lq),
                                            np.int64(lk), np.int32(d), np.int32(dv), np.float32(scale), has_mask,
                                            np.int32(bool(causal))))
    return out, lse


def attention_backward_gpu(q, k, v, out, lse, dout, key_mask=None, causal=False, scale=None):
    b, h, lq, d = q.shape
    lk, dv = k.shape[-2], v.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    xp = backend.xp
    if lq == 0 or lk == 0 or b * h == 0:
        return xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    dout = xp.ascontiguousarray(dout)
    delta = xp.ascontiguousarray((dout * out).sum(axis=-1))  # D_i, (B, H, Lq)
    dq, dk, dvv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
    mask, has_mask = _mask_args(q, k, key_mask)
    shape = (np.int64(b), np.int64(h), np.int64(lq), np.int64(lk), np.int32(d), np.int32(dv), np.float32(scale),
             has_mask, np.int32(bool(causal)))
    _launch("attention_backward_dq", lq, b * h, (q, k, v, mask, lse, dout, delta, dq) + shape)
    _launch("attention_backward_dkv", lk, b * h, (q, k, v, mask, lse, dout, delta, dk, dvv) + shape)
    return dq, dk, dvv


def attention_forward(q, k, v, key_mask=None, causal=False, scale=None):
    fn = attention_forward_gpu if kernel_fits(q, k, v, key_mask) else attention_forward_cpu
    return fn(q, k, v, key_mask, causal, scale)


def attention_backward(q, k, v, out, lse, dout, key_mask=None, causal=False, scale=None):
    fn = attention_backward_gpu if kernel_fits(q, k, v, key_mask) else attention_backward_cpu
    return fn(q, k, v, out, lse, dout, key_mask, causal, scale)
