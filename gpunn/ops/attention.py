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

The NumPy twin below, like the CUDA kernels in ``cuda_kernels/attention.cu``, never
holds the L x L scores: it streams the keys in blocks with an online softmax, so its
memory grows linearly with L. (``probabilities`` does build them, for the attention
weights a layer is asked to return or to drop out.)
"""

import math

import numpy as np

import gpunn.backend as backend
from gpunn.backend import kernels

WIDTHS = (32, 64, 128)  # the kernels' padded head widths: d and dv up to 128
MAX_HEAD_DIM = WIDTHS[-1]
COLS = 16  # columns of a row each thread of the kernels keeps (as in attention.cu)


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


BLOCK = 256  # queries and keys per block: the scores of one (batch, head) are (BLOCK, BLOCK) at a time
TILE_BUDGET = 2 ** 20  # on the CPU, every head at once while their tiles hold at most this many scores


def _blocks(q, k, key_mask, causal, scale):
    """Walk the scores tile by tile, as the kernels do: yields (b, h, rows, cols, s) with s = the scores of
    queries ``rows`` against keys ``cols`` -- -inf where masked -- for one (batch, head), or on a GPU for
    every head at once (b = h = slice(None)): one head at a time keeps the tile in the CPU's cache, many at
    once keeps a GPU busy. Causal attention skips the tiles above the diagonal, where every score is
    masked. Memory: O(BLOCK x BLOCK) per head, never L x L. Short sequences on the CPU also go every head at
    once while the tiles stay under TILE_BUDGET scores: a loop over thousands of tiny tiles costs more in
    Python than in arithmetic.
    """
    xp = backend.get_array_module(q)
    lq, lk = q.shape[-2], k.shape[-2]
    allow = allowed(lq, lk, key_mask, causal, xp)
    together = xp is not np or q.shape[0] * q.shape[1] * min(lq, BLOCK) * min(lk, BLOCK) <= TILE_BUDGET
    heads = [(slice(None), slice(None))] if together else list(np.ndindex(*q.shape[:2]))
    for b, h in heads:
        for i0 in range(0, lq, BLOCK):
            rows = slice(i0, min(i0 + BLOCK, lq))
            qs = q[b, h, rows] * scale
            for j0 in range(0, min(lk, rows.stop) if causal else lk, BLOCK):  # causal: key j <= query i only
                cols = slice(j0, min(j0 + BLOCK, lk))
                s = qs @ k[b, h, cols].swapaxes(-1, -2)
                if allow is not None:
                    s = xp.where(_pick(allow, b, h, rows, cols), s, -xp.inf)
                yield b, h, rows, cols, s


def _pick(allow, b, h, rows, cols):
    """The part of ``allow`` (broadcastable to (B, H, Lq, Lk)) for one tile; its axes of size 1 stay whole."""
    if not isinstance(b, slice):
        allow = allow[b if allow.shape[0] > 1 else 0, h if allow.shape[1] > 1 else 0]
    return allow[..., rows if allow.shape[-2] > 1 else slice(None), cols if allow.shape[-1] > 1 else slice(None)]


def attention_forward_cpu(q, k, v, key_mask=None, causal=False, scale=None):
    """(out, lse): out = softmax(scores) V and the log-sum-exp of each row, with an online softmax over key tiles.

    For every tile of keys: m' = max(m, max_j s_j);  l = l e^(m - m') + sum_j e^(s_j - m');
    acc = acc e^(m - m') + sum_j e^(s_j - m') v_j;  m = m'.   At the end out = acc / l, lse = m + log l.
    """
    xp = backend.get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    out = xp.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)  # acc, divided by l at the end
    m = xp.full(q.shape[:-1], -xp.inf, dtype=q.dtype)  # the running max of each row's scores
    total = xp.zeros(q.shape[:-1], dtype=q.dtype)  # l: the running sum of e^(s - m)
    for b, h, rows, cols, s in _blocks(q, k, key_mask, causal, scale):
        m_old = m[b, h, rows]
        m_new = xp.maximum(m_old, s.max(axis=-1))
        base = xp.where(xp.isfinite(m_new), m_new, 0)  # a row that has seen no allowed key yet: e^(-inf) = 0
        correction = xp.exp(m_old - base)
        s -= base[..., None]
        p = xp.exp(s, out=s)
        total[b, h, rows] = total[b, h, rows] * correction + p.sum(axis=-1)
        out[b, h, rows] = out[b, h, rows] * correction[..., None] + p @ v[b, h, cols]
        m[b, h, rows] = m_new
    seen = total > 0  # False for a row with no allowed key: zeros out, and lse = +inf
    out /= xp.where(seen, total, 1)[..., None]
    lse = xp.where(seen, xp.where(xp.isfinite(m), m, 0) + xp.log(xp.where(seen, total, 1)), xp.inf)
    return out, lse.astype(q.dtype, copy=False)


def attention_backward_cpu(q, k, v, out, lse, dout, key_mask=None, causal=False, scale=None):
    """(dq, dk, dv), tile by tile, rebuilding P = e^(S - lse) from the saved log-sum-exps."""
    xp = backend.get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    delta = (dout * out).sum(axis=-1)  # D_i = sum_c dout_ic out_ic = sum_j p_ij dp_ij
    dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    for b, h, rows, cols, s in _blocks(q, k, key_mask, causal, scale):
        s -= lse[b, h, rows][..., None]
        p = xp.exp(s, out=s)  # masked scores (-inf) and rows with lse = +inf give 0
        dv[b, h, cols] += p.swapaxes(-1, -2) @ dout[b, h, rows]
        ds = dout[b, h, rows] @ v[b, h, cols].swapaxes(-1, -2)  # dP, turned into dS = P * (dP - D) in place
        ds -= delta[b, h, rows][..., None]
        ds *= p
        dq[b, h, rows] += ds @ k[b, h, cols]
        dk[b, h, cols] += ds.swapaxes(-1, -2) @ q[b, h, rows]
    dq *= scale
    dk *= scale
    return dq, dk, dv


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


THREADS_PER_BLOCK = 128  # at most; a short sequence gets fewer (whole warps of 32), none idle for nothing


def _launch(name, rows, heads, args, d, dv):
    """A 1-D grid of ``heads`` (= B*H) groups of row blocks, as the kernels expect, of the kernel for the
    smallest padded width that holds d and dv; each row takes width / COLS threads."""
    width = next(w for w in WIDTHS if w >= max(d, dv))
    per_row = width // COLS
    threads = min(THREADS_PER_BLOCK, 32 * kernels.grid(rows * per_row, 32))
    grid = (kernels.grid(rows, threads // per_row) * heads,)
    kernels.get_kernel("attention", f"{name}_{width}")(grid, (threads,), args)


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
                                            np.int32(bool(causal))), d, dv)
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
    _launch("attention_backward_dq", lq, b * h, (q, k, v, mask, lse, dout, delta, dq) + shape, d, dv)
    _launch("attention_backward_dkv", lk, b * h, (q, k, v, mask, lse, dout, delta, dk, dvv) + shape, d, dv)
    return dq, dk, dvv


def attention_forward(q, k, v, key_mask=None, causal=False, scale=None):
    fn = attention_forward_gpu if kernel_fits(q, k, v, key_mask) else attention_forward_cpu
    return fn(q, k, v, key_mask, causal, scale)


def attention_backward(q, k, v, out, lse, dout, key_mask=None, causal=False, scale=None):
    fn = attention_backward_gpu if kernel_fits(q, k, v, key_mask) else attention_backward_cpu
    return fn(q, k, v, out, lse, dout, key_mask, causal, scale)
