"""Reading an image at other points: the geometry behind the augmentation layers (translate, rotate, crop).

Output pixel (i, j) of image n reads the input at a *source point* (r, c) = (rows[n, i, j], cols[n, i, j]),
real numbers, pixel centres at integer coordinates (translating by t: r = i - t; rotating: r, c turn
about the centre). Bilinear interpolation mixes the four pixels around the point, with r0 = floor(r),
fr = r - r0 (and the same for c)::

    out = (1-fr)(1-fc) x[r0, c0] + (1-fr) fc x[r0, c0+1] + fr (1-fc) x[r0+1, c0] + fr fc x[r0+1, c0+1]

('nearest' reads the one pixel nearest to the point). So every output pixel is a weighted sum of input
pixels, the same for each channel: a linear map of x, and backward is its transpose -- each dy goes
back to the pixels it was read from, with the same weights, added up (a scatter-add).

Points outside the image are read as Keras's ``fill_mode`` says, shown on a row a b c d:

- 'constant': ``fill_value``          k k k k | a b c d | k k k k
- 'nearest':  the edge pixel           a a a a | a b c d | d d d d
- 'reflect':  mirrored at the edge     d c b a | a b c d | d c b a
- 'wrap':     the image repeated       a b c d | a b c d | a b c d

Everything runs on the arrays' own backend (NumPy or CuPy), with no copy to the host.
"""

import gpunn.backend as backend

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
INTERPOLATIONS = ("bilinear", "nearest")


def _fix(i, n, fill_mode):
    """Integer coordinates i on an axis of n pixels -> (a coordinate inside the image, whether i itself was)."""
    xp = backend.get_array_module(i)
    inside = (i >= 0) & (i < n)
    if fill_mode == "wrap":
        return i % n, inside
    if fill_mode == "reflect":
        j = i % (2 * n)
        return xp.where(j < n, j, 2 * n - 1 - j), inside
    return xp.clip(i, 0, n - 1), inside  # 'nearest'; 'constant' reads it with weight 0 where outside


class Sampling:
    """The input pixels each output pixel reads, and their weights, for source points ``rows``, ``cols`` (N, OH, OW;
    or shapes that broadcast to it).

    ``in_size`` is the input's (H, W). Build it once per batch, then :meth:`forward` reads images
    (N, C, H, W) and :meth:`backward` sends gradients (N, C, OH, OW) back to them.
    """

    def __init__(self, rows, cols, in_size, interpolation="bilinear", fill_mode="constant", fill_value=0.0):
        xp = backend.get_array_module(rows)
        rows, cols = xp.broadcast_arrays(rows, cols)
        self.in_size, self.out_size = tuple(in_size), rows.shape[1:]
        n, (h, w) = rows.shape[0], in_size
        rows, cols = rows.reshape(n, -1), cols.reshape(n, -1)
        if interpolation == "nearest":
            corners = [(xp.floor(rows + 0.5), xp.floor(cols + 0.5), xp.ones_like(rows))]
        else:
            r0, c0 = xp.floor(rows), xp.floor(cols)
            fr, fc = rows - r0, cols - c0
            corners = [(r0, c0, (1 - fr) * (1 - fc)), (r0, c0 + 1, (1 - fr) * fc),
                       (r0 + 1, c0, fr * (1 - fc)), (r0 + 1, c0 + 1, fr * fc)]
        self.taps, kept = [], 0.0  # taps: (index into the flattened H*W image (N, P), weight (N, P, 1))
        for r, c, weight in corners:
            (r, r_inside), (c, c_inside) = _fix(r.astype(int), h, fill_mode), _fix(c.astype(int), w, fill_mode)
            if fill_mode == "constant":
                weight = weight * (r_inside & c_inside)
            weight = weight.astype(rows.dtype, copy=False)[..., None]
            self.taps.append((r * w + c, weight))
            kept = kept + weight
        self.fill = (1 - kept) * fill_value if fill_mode == "constant" and fill_value != 0 else None

    def forward(self, x):
        """x (N, C, H, W) -> (N, C, OH, OW): each output pixel the weighted sum of the pixels it reads."""
        xp = backend.get_array_module(x)
        n, c = x.shape[:2]
        pixels = x.reshape(n, c, -1).transpose(0, 2, 1)  # (N, H*W, C): one row per pixel
        batch = xp.arange(n)[:, None]
        out = sum(weight.astype(x.dtype) * pixels[batch, index] for index, weight in self.taps)  # (N, P, C)
        if self.fill is not None:
            out = out + self.fill.astype(x.dtype)
        return xp.ascontiguousarray(out.transpose(0, 2, 1)).reshape((n, c) + self.out_size)

    def backward(self, dy):
        """dy (N, C, OH, OW) -> dx (N, C, H, W): the transpose of :meth:`forward` (pixels read twice add up)."""
        xp = backend.get_array_module(dy)
        n, c = dy.shape[:2]
        h, w = self.in_size
        d = dy.reshape(n, c, -1).transpose(0, 2, 1)  # (N, P, C)
        dx = xp.zeros((n * h * w, c), dtype=dy.dtype)
        offsets = xp.arange(n)[:, None] * (h * w)  # image n's pixels start at row n*H*W of dx
        for index, weight in self.taps:
            backend.scatter_add(dx, (index + offsets).ravel(), (weight.astype(dy.dtype) * d).reshape(-1, c))
        return xp.ascontiguousarray(dx.reshape(n, h * w, c).transpose(0, 2, 1)).reshape(n, c, h, w)
