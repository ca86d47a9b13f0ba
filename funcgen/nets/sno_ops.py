"""Linear-memory kernels of the sparse neural operator (:mod:`funcgen.nets.sno`), pure PyTorch (CPU and CUDA).

* :func:`radius_pairs`: every (query, source) pair closer than ``radius``, found on a uniform cell
  grid of cell size ``radius`` (points bucketed by a sort of their cell keys, candidates gathered
  from the ``3^d`` adjacent cells by ``searchsorted``), emitted in pieces of at most ``max_pairs``
  candidates. Time ``O((Q + N) log N + #candidates)``, memory ``O(Q + N + max_pairs)``; the pair set
  is exactly the brute-force one.
* :func:`pairs_local_integral`: the kernel integral (1) of :mod:`funcgen.nets.sno` summed over those
  pairs (``index_add``), the scattered-point path.
* :func:`local_operator` / :func:`apply_local_operator`: the same sum as a sparse matrix (one row per query
  and basis function, normalisation folded in) built once per point set and applied to any features by
  sparse products: what the SNO uses on scattered points when the pairs fit a budget, so its blocks
  share one neighbour search and the backward pass is one sparse product too.
* :func:`grid_local_integral`: the same sum when queries and sources are one full cell-centre grid:
  a depthwise convolution with the kernel sampled at the grid offsets, done by FFT with zero
  padding (``O(N log N)`` at ANY radius; the sum is over the same points as the brute force).
* :func:`grid_splat` / :func:`grid_gather`: the SNO's read-in onto its coarse grid (a per-node normalised
  tent-kernel average, eq. (2) of :mod:`funcgen.nets.sno`) and read-back (multilinear interpolation),
  both ``chunk`` points at a time over the ``(2 ceil(s))^d`` nodes around each point.
* :func:`knn`: the ``k`` nearest sources of each query by radius searches on the same cell grid;
  ties are broken by the lower source index, so the result never depends on the chunking.

Note on cost: with a FIXED physical radius the number of neighbours per point grows like ``N r^d``,
so any exact scattered-point evaluation costs ``O(N^2 r^d)`` pairs under refinement (the cell grid
only removes the ``O(N^2)`` candidate scan); the grid path is ``O(N log N)`` regardless.
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from typing import Callable, Iterator, NamedTuple

import torch
from torch import Tensor

__all__ = ["radius_pairs", "pairs_local_integral", "LocalOperator", "local_operator", "apply_local_operator",
           "grid_local_integral", "kernel_basis", "knn", "grid_splat",
           "grid_gather"]


def kernel_basis(u: Tensor) -> tuple[Tensor, Tensor]:
    """Weight ``w(u) = (1 - |u|^2)_+^2`` ``[...]`` and basis ``(1, u_a, u_a^2)`` ``[..., 1 + 2d]`` at scaled
    offsets ``u`` ``[..., d]``."""
    w = (1.0 - (u * u).sum(-1)).clamp_min(0.0) ** 2
    return w, torch.cat([torch.ones_like(u[..., :1]), u, u * u], dim=-1)


def _check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contain NaN or inf: the neighbour search needs finite coordinates")


def radius_pairs(queries: Tensor, sources: Tensor, radius: float, *, chunk: int = 4096,
                 max_pairs: int = 2**18) -> Iterator[tuple[Tensor, Tensor]]:
    """All pairs ``|q - s| < radius`` (same function), in pieces: yields ``(qi, si)`` int64 ``[P]`` each.

    ``qi`` indexes the flattened queries ``[B * Q]``, ``si`` the flattened sources ``[B * N]``;
    the condition is ``((q - s) / radius)^2`` summed over axes ``< 1``, the support of
    :func:`kernel_basis`'s weight. Queries are scanned ``chunk`` at a time and each piece holds at
    most ``max_pairs`` candidates (or one query's candidates if that is more).
    """
    if (queries.ndim != 3 or sources.ndim != 3 or queries.shape[0] != sources.shape[0]
            or queries.shape[2] != sources.shape[2]):
        raise ValueError(f"radius_pairs: need queries [B, Q, d] and sources [B, N, d]; got {tuple(queries.shape)}, "
                         f"{tuple(sources.shape)}")
    b, d = queries.shape[0], queries.shape[2]
    batch = torch.arange(b, device=queries.device)
    yield from _radius_pairs_flat(queries.reshape(-1, d), batch.repeat_interleave(queries.shape[1]),
                                  sources.reshape(-1, d), batch.repeat_interleave(sources.shape[1]), b, radius,
                                  chunk, max_pairs)


def _radius_pairs_flat(qf: Tensor, qb: Tensor, sf: Tensor, sb: Tensor, b: int, radius: float, chunk: int,
                       max_pairs: int) -> Iterator[tuple[Tensor, Tensor]]:
    """:func:`radius_pairs` on flat points ``[Q, d], [N, d]`` with function ids ``qb [Q], sb [N]`` in ``[0, b)``."""
    if not radius > 0 or chunk < 1 or max_pairs < 1:
        raise ValueError(
            f"radius_pairs: need radius > 0, chunk >= 1, max_pairs >= 1; got {radius}, {chunk}, {max_pairs}")
    _check_finite(qf, "queries")
    _check_finite(sf, "sources")
    if qf.shape[0] == 0 or sf.shape[0] == 0:
        return
    d, dev = qf.shape[1], qf.device
    lo = torch.minimum(qf.min(0).values, sf.min(0).values).double()
    extent = float((torch.maximum(qf.max(0).values, sf.max(0).values).double() - lo).max())
    # cell >= radius (a margin against rounding); capped cell counts keep the int64 keys from overflowing
    cell = max(radius * (1.0 + 1e-6), extent / 2 ** ((60 - b.bit_length()) // d - 1))
    per_axis = int(extent / cell) + 3  # cells plus a guard cell on each side
    strides = torch.tensor([per_axis**k for k in range(d)], device=dev, dtype=torch.int64)

    def keys(p: Tensor, batch: Tensor) -> Tensor:
        c = torch.floor((p.double() - lo) / cell).long() + 1
        return (c * strides).sum(-1) + batch * per_axis**d

    skeys, order = torch.sort(keys(sf, sb))
    offsets = torch.tensor(list(itertools.product((-1, 0, 1), repeat=d)), device=dev, dtype=torch.int64) @ strides
    nbr = offsets.numel()
    for lo_q in range(0, qf.shape[0], chunk):
        cand = keys(qf[lo_q:lo_q + chunk], qb[lo_q:lo_q + chunk])[:, None] + offsets  # [q, 3^d] neighbour cells
        start = torch.searchsorted(skeys, cand, right=False).reshape(-1)
        count = torch.searchsorted(skeys, cand, right=True).reshape(-1) - start
        cum = count.reshape(-1, nbr).sum(1).cumsum(0).tolist()  # candidates up to each query of the chunk
        q0, done = 0, 0
        while q0 < len(cum):
            q1 = max(q0 + 1, bisect.bisect_right(cum, done + max_pairs))
            c = count[q0 * nbr:q1 * nbr]
            total = cum[q1 - 1] - done
            done = cum[q1 - 1]
            if total > 0:
                seg = torch.repeat_interleave(torch.arange(c.numel(), device=dev), c)
                first = torch.cumsum(c, 0) - c
                pos = start[q0 * nbr:q1 * nbr][seg] + torch.arange(total, device=dev) - first[seg]
                qi, si = lo_q + q0 + seg // nbr, order[pos]
                u = (qf[qi] - sf[si]) / radius
                keep = (u * u).sum(-1) < 1.0
                yield qi[keep], si[keep]
            q0 = q1


def _kept_pairs(queries: Tensor, sources: Tensor, radius: float, mask: Tensor | None, chunk: int,
                max_pairs: int) -> Iterator[tuple[Tensor, Tensor]]:
    """:func:`radius_pairs` without the pairs whose source ``mask [B, N]`` leaves out (all kept when None)."""
    keep = None if mask is None else mask.reshape(-1)
    for qi, si in radius_pairs(queries, sources, radius, chunk=chunk, max_pairs=max_pairs):
        if keep is not None:
            sel = keep[si]
            qi, si = qi[sel], si[sel]
        yield qi, si


def pairs_local_integral(queries: Tensor, sources: Tensor, h: Tensor, coef: Tensor, radius: float, *,
                         chunk: int = 4096, max_pairs: int = 2**18, mask: Tensor | None = None) -> Tensor:
    """``sum_y w k h / sum_y w`` over the sources within ``radius`` (:mod:`funcgen.nets.sno` eq. 1).

    ``queries [B, Q, d], sources [B, N, d], h [B, N, C], coef [1 + 2d, C] -> [B, Q, C]``; a query
    with no source inside the ball gets 0. ``mask [B, N]``: sources to use (False: weight 0).
    Memory ``O(B Q C + max_pairs C)``.
    """
    b, nq, d = queries.shape
    c = h.shape[-1]
    qf, sf, hf = queries.reshape(-1, d), sources.reshape(-1, d), h.reshape(-1, c)
    out = hf.new_zeros(b * nq, c)
    den = hf.new_zeros(b * nq)
    for qi, si in _kept_pairs(queries, sources, radius, mask, chunk, max_pairs):
        w, basis = kernel_basis(((qf[qi] - sf[si]) / radius).to(hf.dtype))
        out.index_add_(0, qi, (w[:, None] * (basis @ coef)) * hf[si])
        den.index_add_(0, qi, w)
    return (out / den.clamp_min(1e-12)[:, None]).reshape(b, nq, c)


class LocalOperator(NamedTuple):
    """Eq. (1) of :mod:`funcgen.nets.sno` for one point set as sparse matrices (:func:`local_operator`).

    ``matrices[m]`` ``[B * Q, B * N]`` (CSR) holds ``w(u) phi_m(u) / sum_s w(u)`` at each pair of query ``q`` and
    source ``s``, ``u = (x_q - y_s) / radius``, for the ``M = 1 + 2d`` basis functions ``phi_m``;
    ``transposes[m]`` its transpose (CSR too), for the backward product. ``batch``, ``queries``: ``B``, ``Q``.
    """
    matrices: tuple[Tensor, ...]
    transposes: tuple[Tensor, ...]
    batch: int
    queries: int


def local_operator(queries: Tensor, sources: Tensor, radius: float, *, dtype: torch.dtype | None = None,
                   mask: Tensor | None = None, chunk: int = 4096, max_pairs: int = 2**18,
                   budget: int | None = None) -> LocalOperator | None:
    """The sparse operator of eq. (1) for ``queries [B, Q, d]`` and ``sources [B, N, d]``, or None when the
    pairs exceed ``budget`` (then use :func:`pairs_local_integral`, whose memory stays bounded).

    ``mask [B, N]``: sources to use. Memory: about ``2 (1 + 2d) itemsize + 32`` bytes per pair.
    """
    b, nq, d = queries.shape
    ns = sources.shape[1]
    qf, sf = queries.reshape(-1, d), sources.reshape(-1, d)
    qis, sis, total = [], [], 0
    for qi, si in _kept_pairs(queries, sources, radius, mask, chunk, max_pairs):
        total += qi.numel()
        if budget is not None and total > budget:
            return None
        qis.append(qi)
        sis.append(si)
    dev = queries.device
    dtype = queries.dtype if dtype is None else dtype
    qi = torch.cat(qis) if qis else torch.zeros(0, dtype=torch.int64, device=dev)  # sorted: pieces come in query order
    si = torch.cat(sis) if sis else torch.zeros(0, dtype=torch.int64, device=dev)
    w, basis = kernel_basis((qf[qi] - sf[si]) / radius)
    den = torch.zeros(b * nq, dtype=w.dtype, device=dev).index_add_(0, qi, w)
    vals = ((w / den[qi].clamp_min(1e-12))[:, None] * basis).T.to(dtype).contiguous()  # [M, P]
    zero = torch.zeros(1, dtype=torch.int64, device=dev)
    crow = torch.cat([zero, torch.bincount(qi, minlength=b * nq).cumsum(0)])
    order = torch.argsort(si, stable=True)  # the transpose: rows s, columns q still increasing
    tcrow = torch.cat([zero, torch.bincount(si, minlength=b * ns).cumsum(0)])
    tcol, tvals = qi[order], vals[:, order]
    size = (b * nq, b * ns)
    with warnings.catch_warnings():  # torch calls its CSR support beta; the products used here are tested
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrices = tuple(torch.sparse_csr_tensor(crow, si, v, size, check_invariants=False) for v in vals)
        transposes = tuple(torch.sparse_csr_tensor(tcrow, tcol, v, size[::-1], check_invariants=False) for v in tvals)
    return LocalOperator(matrices, transposes, b, nq)


class _SparseProduct(torch.autograd.Function):
    """``A @ x`` for a constant sparse ``A`` whose transpose is given (the backward is ``A^T @ grad``)."""

    @staticmethod
    def forward(ctx, a: Tensor, at: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.at = at
        return a @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:  # type: ignore[override]
        return None, None, ctx.at @ grad


def apply_local_operator(op: LocalOperator, h: Tensor, coef: Tensor) -> Tensor:
    """Eq. (1) by the operator: ``h [B, N, C], coef [1 + 2d, C] -> [B, Q, C]`` (differentiable in ``h`` and
    ``coef``); equals :func:`pairs_local_integral` on the same points up to rounding."""
    c = h.shape[-1]
    hf = h.reshape(-1, c)
    coef = coef.to(h.dtype)
    out = sum(_SparseProduct.apply(a, at, hf) * coef[m] for m, (a, at) in enumerate(zip(op.matrices, op.transposes)))
    return out.reshape(op.batch, op.queries, c)


def _fft_size(n: int) -> int:
    """The smallest ``m >= n`` of the form ``2^a 3^b 5^c`` (fast FFT lengths)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def grid_local_integral(h: Tensor, shape: tuple[int, ...], coef: Tensor, radius: float, *,
                        max_elems: int = 2**23, inplace: bool = False) -> Tensor:
    """Eq. (1) of :mod:`funcgen.nets.sno` with queries = sources = the cell-centre grid ``shape``, by FFT.

    ``h [B, N, C]`` (row-major grid order, :func:`funcgen.pointset.grid_coords`) ``-> [B, N, C]``.
    The sums ``sum_j K(x_i - x_j) h_j`` over all grid points are linear convolutions with the kernel
    sampled at the grid offsets ``(i - j) / n`` (zero padding to ``n + R`` per axis, ``R`` the radius
    in cells, so nothing wraps around); channels are transformed a group at a time so that a group
    holds about ``max_elems`` padded values. Differs from the pairwise sum only by rounding.
    ``inplace``: write the result into ``h`` (safe: the kernel is depthwise; not under autograd).
    """
    b, n, c = h.shape
    d = len(shape)
    reach = [min(math.ceil(radius * s), s - 1) for s in shape]
    size = [_fft_size(s + r) for s, r in zip(shape, reach)]
    dims = tuple(range(-d, 0))
    axes = []
    for s, r, m in zip(shape, reach, size):
        off = torch.arange(m, device=h.device)
        off = torch.where(off > m // 2, off - m, off)  # signed offset at each FFT index
        axes.append((off.to(torch.float64) / (s * radius), off.abs() <= r))
    u = torch.stack(torch.meshgrid(*[a[0] for a in axes], indexing="ij"), dim=-1)
    inside = torch.stack(torch.meshgrid(*[a[1] for a in axes], indexing="ij"), dim=-1).all(-1)
    w, basis = kernel_basis(u)
    kern = (w * inside)[..., None] * basis  # [*size, M], float64
    khat = torch.fft.rfftn(kern.movedim(-1, 0).to(h.dtype), dim=dims)  # [M, *size']
    ones = torch.ones(shape, device=h.device, dtype=h.dtype)
    den = _conv(ones, khat[0], size, shape).clamp_min(1e-12)  # [*shape]
    out = h if inplace else h.new_empty(b, n, c)
    group = max(1, max_elems // (b * math.prod(size)))
    for c0 in range(0, c, group):
        sl = slice(c0, min(c, c0 + group))
        z = h[..., sl].transpose(1, 2).reshape(b, -1, *shape)
        k = torch.einsum("m...,mg->g...", khat, coef[:, sl].to(khat.dtype))  # [g, *size']
        out[..., sl] = (_conv(z, k, size, shape) / den).reshape(b, -1, n).transpose(1, 2)
    return out


def _conv(x: Tensor, khat: Tensor, size: list[int], shape: tuple[int, ...]) -> Tensor:
    """Linear convolution of ``x [..., *shape]`` with the kernel whose padded spectrum is ``khat``, cropped to
    ``shape``."""
    d = len(shape)
    dims = tuple(range(-d, 0))
    y = torch.fft.irfftn(torch.fft.rfftn(x, s=size, dim=dims) * khat, s=size, dim=dims)
    return y[(..., *[slice(0, s) for s in shape])]


def knn(queries: Tensor, sources: Tensor, k: int, *, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest sources of each query: ``[B, Q, d], [B, N, d] -> (dist [B, Q, k], idx [B, Q, k])``.

    Exact, ordered by ``(float32 |q - s|, index)`` (ties go to the lower index). Radius search on the
    cell grid (:func:`radius_pairs`) from a radius that holds about ``2k`` sources on average,
    doubled for the queries that found fewer than ``k``: a query with ``k`` sources inside the ball
    has its ``k`` nearest there. Time ``O((Q + N) log N)`` for well-spread points, memory ``O(Q + N)``.
    """
    b, nq, d = queries.shape
    ns = sources.shape[1]
    k = min(k, ns)
    batch = torch.arange(b, device=queries.device)
    qf, qb = queries.reshape(-1, d), batch.repeat_interleave(nq)
    sf, sb = sources.reshape(-1, d), batch.repeat_interleave(ns)
    upper = torch.maximum(qf.max(0).values, sf.max(0).values)
    extent = float((upper - torch.minimum(qf.min(0).values, sf.min(0).values)).max())
    radius = max(extent * (2.0 * k / ns) ** (1.0 / d), 1e-12)
    best = torch.empty(b * nq, k, dtype=torch.int64, device=queries.device)
    todo = torch.arange(b * nq, device=queries.device)
    while todo.numel() > 0:
        found = list(_radius_pairs_flat(qf[todo], qb[todo], sf, sb, b, radius, chunk, 2**20))
        qi = torch.cat([f[0] for f in found]) if found else todo.new_zeros(0)
        si = torch.cat([f[1] for f in found]) if found else todo.new_zeros(0)
        enough = torch.bincount(qi, minlength=todo.numel()) >= k
        keep = enough[qi]
        qi, si = qi[keep], si[keep]
        dist = torch.linalg.vector_norm(qf[todo[qi]] - sf[si], dim=-1)
        # (distance, index) packed into one int64: the bits of a non-negative float32 sort like the float
        key = (dist.float().view(torch.int32).long() << 32) + (si - sb[si] * ns)
        key, perm = torch.sort(key)
        qi = qi[perm]
        qi, perm = torch.sort(qi, stable=True)  # grouped by query, each group in key order
        key = key[perm]
        rows = torch.nonzero(enough).squeeze(1)
        first = torch.searchsorted(qi, rows)
        best[todo[rows]] = key[first[:, None] + torch.arange(k, device=qi.device)] & 0xFFFFFFFF
        todo = todo[~enough]
        radius *= 2.0
    idx = best.reshape(b, nq, k)
    near = torch.gather(sources, 1, idx.reshape(b, -1, 1).expand(-1, -1, d)).reshape(b, nq, k, d)
    return torch.linalg.vector_norm(queries[:, :, None] - near, dim=-1), idx


def _stencil(coords: Tensor, size: int, reach: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Grid nodes near each point: yields ``(node [B, N] int64 flat row-major index, u [B, N, d])`` for every
    offset in ``{-reach .. reach}^d`` around the point's nearest-lower node, ``u`` the offset from the point to
    that node in cells (nodes outside the grid are clamped to the border and get ``|u| = inf``)."""
    d = coords.shape[-1]
    pos = coords * size - 0.5  # node i sits at pos = i
    base = torch.floor(pos).long()
    frac = pos - base
    strides = [size ** (d - 1 - a) for a in range(d)]
    for off in itertools.product(range(-reach + 1, reach + 1), repeat=d):
        node = torch.zeros_like(base[..., 0])
        u = torch.empty_like(pos)
        for a, o in enumerate(off):
            i = base[..., a] + o
            inside = (i >= 0) & (i < size)
            u[..., a] = torch.where(inside, frac[..., a] - o, torch.inf)
            node += i.clamp(0, size - 1) * strides[a]
        yield node, u


def _stencil_matrix(x: Tensor, size: int, reach: int, weight: Callable[[Tensor], Tensor], nodes: int,
                    dtype: torch.dtype) -> Tensor:
    """Sparse ``[nodes, N]`` matrix of ``weight(u)`` between the grid nodes and the points ``x [N, d]``."""
    rows, cols, vals = [], [], []
    idx = torch.arange(x.shape[0], device=x.device)
    for node, u in _stencil(x[None], size, reach):
        w = weight(u[0]).to(dtype)
        keep = w > 0
        rows.append(node[0][keep])
        cols.append(idx[keep])
        vals.append(w[keep])
    ij = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(ij, torch.cat(vals), (nodes, x.shape[0]), check_invariants=False).coalesce()


def grid_splat(coords: Tensor, h: Tensor, size: int, width: float, mask: Tensor | None = None, *,
               chunk: int = 4096) -> Tensor:
    """Normalised tent-kernel average of point features onto the cell-centre grid (``size^d`` nodes).

    ``g(c) = sum_i w(c - x_i) h_i / sum_i w(c - x_i)``, ``w(u) = prod_a (1 - |u_a| / (width / size))_+``:
    ``coords [B, N, d]`` in ``[0, 1]^d``, ``h [B, N, C]``, ``mask [B, N]`` (False: the point is left out)
    ``-> [B, size^d, C]``; a node with no point inside its support gets 0. Normalising per node makes the
    result a self-normalised estimate of the tent-weighted local average ``int w h / int w``: it does not
    depend on the sampling density (points ``chunk`` at a time; memory ``O(B (size^d + chunk) C)``).
    """
    b, n, d = coords.shape
    c = h.shape[-1]
    nodes = size**d
    reach = max(1, math.ceil(width))
    if mask is None and b > 1 and bool((coords == coords[:1]).all()):
        # one point set for the batch (grids, the sampler): one sparse [nodes, N] weight matrix serves all
        w = _stencil_matrix(coords[0], size, reach, lambda u: (1.0 - u.abs() / width).clamp_min(0.0).prod(-1),
                            nodes, h.dtype)
        flat = h.transpose(0, 1).reshape(n, b * c)
        num = torch.sparse.mm(w, flat).reshape(nodes, b, c).transpose(0, 1)
        den = torch.sparse.mm(w, h.new_ones(n, 1))
        return num / den.clamp_min(1e-12)
    num = h.new_zeros(b * nodes, c)
    den = h.new_zeros(b * nodes)
    shift = (torch.arange(b, device=h.device) * nodes)[:, None]
    for lo in range(0, n, chunk):
        x, hc = coords[:, lo:lo + chunk], h[:, lo:lo + chunk]
        keep = None if mask is None else mask[:, lo:lo + chunk].to(h.dtype)
        for node, u in _stencil(x, size, reach):
            w = (1.0 - u.abs() / width).clamp_min(0.0).prod(-1).to(h.dtype)
            if keep is not None:
                w = w * keep
            idx = (node + shift).reshape(-1)
            num.index_add_(0, idx, (w[..., None] * hc).reshape(-1, c))
            den.index_add_(0, idx, w.reshape(-1))
    return (num / den.clamp_min(1e-12)[:, None]).reshape(b, nodes, c)


def grid_gather(coords: Tensor, g: Tensor, size: int, *, chunk: int = 4096) -> Tensor:
    """Multilinear interpolation of grid features ``g [B, size^d, C]`` (cell-centre nodes, row-major) at
    ``coords [B, N, d]`` ``-> [B, N, C]``; points beyond the outermost nodes read the border (exact at a node)."""
    b, n, d = coords.shape
    c = g.shape[-1]
    flat = g.reshape(-1, c)
    shift = (torch.arange(b, device=g.device) * size**d)[:, None]
    lo_c, hi_c = 0.5 / size, 1.0 - 0.5 / size
    if b > 1 and bool((coords == coords[:1]).all()):  # one point set for the batch: one sparse [N, nodes] matrix
        m = _stencil_matrix(coords[0].clamp(lo_c, hi_c), size, 1,
                            lambda u: (1.0 - u.abs()).clamp_min(0.0).prod(-1), size**d, g.dtype).t()
        out = torch.sparse.mm(m.coalesce(), g.transpose(0, 1).reshape(size**d, b * c))
        return out.reshape(n, b, c).transpose(0, 1)
    out = g.new_empty(b, n, c)
    for lo in range(0, n, chunk):
        x = coords[:, lo:lo + chunk].clamp(lo_c, hi_c)
        acc = None
        for node, u in _stencil(x, size, 1):
            w = (1.0 - u.abs()).clamp_min(0.0).prod(-1).to(g.dtype)
            term = w[..., None] * flat[(node + shift).reshape(-1)].reshape(b, -1, c)
            acc = term if acc is None else acc + term
        out[:, lo:lo + chunk] = acc
    return out
