"""Fused sparse contrastive divergence on the CPU: one compiled call per epoch of RBM updates (per-song or shuffled).

Why this exists
---------------
The demo's training run (126 pop songs, 15-step windows of 2340 bits, 50 hidden
units, CD-1, per-song mini-batches) makes ~122 updates per epoch on batches of
only ~11 windows. At that size the eager PyTorch update costs ~370 us, spent on
per-op dispatch, the generator's mt19937 draws (~80 us) and dense rank-B
updates of the whole ``W`` -- not on arithmetic. Music windows are ~3% ones and
so are the negative samples, so this module computes the same update in
proportion to the notes, and runs a whole epoch without returning to Python.
Measured on the demo's run (bench/train_rbm.py mode (a), see bench/README.md):
103 us per update against ~370 us for the tensor loop of ``RBM.cd_update``;
the 200 epochs take 0.17-0.20 of the time of straightforward eager PyTorch CD-1
on one thread. The first call compiles (~7.5 s), cached on disk afterwards (~0.4 s).

What it computes
----------------
Exactly :meth:`moodsong.models.rbm.RBM.cd_update` (CD-k, hidden statistics
from probabilities; persistent CD too), batch by batch in order, with ``s = lr / B``::

    ph0 = sigmoid(v0 W + c);  h ~ Bern(ph0)   (persistent: h ~ Bern(sigmoid(chains W + c)), chains := vk after)
    repeat k times:  vk ~ Bern(sigmoid(h W^T + b));  phk = sigmoid(vk W + c);  h ~ Bern(phk) (not after the last)
    b += s (sum v0 - sum vk);  c += s (sum ph0 - sum phk);  W += s (v0^T ph0 - vk^T phk)

(the formulas of :func:`moodsong.models.rbm.cd_statistics`, which the tests check the kernel against)

With ``v0`` and ``vk`` sparse binary, ``v W`` is a sum of the rows of ``W`` at
the active bits, and the ``W`` update touches only those rows. The one dense
product, ``h W^T``, sums the rows of a transposed copy of ``W`` at the active
hidden units (kept in step by copying back just the rows the update touched).

Random numbers come from a counter-based SplitMix64 stream: draw ``i`` is
``mix(key + i * 0x9E3779B97F4A7C15)``, and its top 24 bits make a float32
uniform ``u`` in [0, 1); a unit is on when ``u < p``. Each draw depends only on
its index, so the sampling loops vectorise, and ``(key, counter)`` is the whole
generator state: stored in a checkpoint, it makes a resumed run reproduce an
uninterrupted one exactly. Within an update, draws are taken in the order
hidden (B x H), then per CD step visible (B x V) and, except after the last
step, hidden again, each row-major. A shuffled epoch first takes ``n`` draws
for its order of the ``n`` windows (:func:`permutation`: the order of their
64-bit values) and gathers the CSR rows in that order (:func:`take_rows`).

The logistic function uses a polynomial ``exp`` (Cody-Waite range reduction,
degree-6 Taylor; relative error ~2e-7, absolute error of the sigmoid < 1e-7)
because the libm ``expf`` call keeps the compiler from vectorising the loop:
with it the visible sampling alone cost ~3 ns per unit, without it ~0.4 ns.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment (2^64 / golden ratio)
_MASK64 = (1 << 64) - 1
_G = np.uint64(GOLDEN)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_INV24 = np.float32(1.0 / (1 << 24))
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 split in two so that k * ln2_hi is exact (Cody-Waite)
_LN2_LO = np.float32(-2.12194440e-4)
_ONE = np.float32(1.0)
# fastmath without "reassoc": the compiler may vectorise and fuse, but must not fold the two-part ln 2 back together.
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
_JIT = dict(cache=True, fastmath=_FASTMATH, error_model="numpy", nogil=True)


def splitmix64_key(seed: int) -> int:
    """The stream key for an integer seed: SplitMix64's first output from state ``seed``."""
    return _mix_int((seed + GOLDEN) & _MASK64)


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def draws(key: int, start: int, n: int) -> np.ndarray:
    """Draws ``start .. start + n - 1`` of the stream ``key`` as raw uint64 values, in numpy."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + np.arange(start, start + n, dtype=np.uint64) * _G
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def uniforms(key: int, start: int, n: int) -> np.ndarray:
    """Draws ``start .. start + n - 1`` of the stream ``key`` as float32 uniforms in numpy (the kernel's values)."""
    return (draws(key, start, n) >> _S40).astype(np.float32) * _INV24


def permutation(key: int, start: int, n: int) -> np.ndarray:
    """A uniformly random order of ``n`` items from draws ``start .. start + n - 1``: the order of their 64-bit values.

    Ties (probability ~n^2 / 2^65) fall back to index order, so the result is a
    function of ``(key, start)`` alone: a resumed run redraws the same order.
    """
    return np.argsort(draws(key, start, n), kind="stable")


def take_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR table of ``rows`` of a CSR table, in that order (one vectorised gather, no Python loop)."""
    lens = indptr[1:][rows] - indptr[:-1][rows]
    out_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lens, out=out_ptr[1:])
    src = np.repeat(indptr[:-1][rows] - out_ptr[:-1], lens) + np.arange(out_ptr[-1], dtype=np.int64)
    return out_ptr, indices[src]


@intrinsic
def _bits_to_float32(typingctx, x):
    """Reinterpret an int32's bits as a float32 (builds 2^k for the polynomial exp)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always", **_JIT)
def _uniform(key, i):
    z = key + i * _G
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return np.float32(z >> _S40) * _INV24


@njit(inline="always", **_JIT)
def _exp_neg(x):
    """exp(-x), x clamped to [-87, 87]: 2^k e^r with k = round(-x / ln 2), |r| <= ln2 / 2."""
    y = -x
    y = np.float32(-87.0) if y < np.float32(-87.0) else y
    y = np.float32(87.0) if y > np.float32(87.0) else y
    ki = np.int32(y * _LOG2E + np.float32(127.5))  # round(y / ln 2) + 127, always positive here
    kf = np.float32(ki - 127)
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    p = _ONE + r * (_ONE + r * (np.float32(0.5) + r * (np.float32(1 / 6) + r * (
        np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))
    return p * _bits_to_float32(ki << 23)


@njit(inline="always", **_JIT)
def _sigmoid(x):
    return _ONE / (_ONE + _exp_neg(x))


@intrinsic
def _trailing_zeros(typingctx, x):
    """Index of the lowest set bit of a nonzero uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


@njit(inline="always", **_JIT)
def _active(hs, B, act, nact):
    H = hs.shape[1]
    for r in range(B):
        n = 0
        for j in range(H):
            if hs[r, j]:
                act[r, n] = j
                n += 1
        nact[r] = n


CHUNK = 128  # visible units per block of h W^T: the block's 50 x 128 slice of W^T (25 KiB) stays in L1


@njit(inline="always", **_JIT)
def _rows_sum(acc, c, W, idx, lo, hi):
    """``acc = c + sum of W's rows idx[lo:hi]``: a sparse binary row times W, plus the hidden bias."""
    acc[:] = c
    for p in range(lo, hi):
        i = idx[p]
        for j in range(W.shape[1]):
            acc[j] += W[i, j]


@njit(**_JIT)
def cd_epoch(indptr, indices, bounds, W, b, c, lr, k, key, counter, err_every, chain_idx, chain_len):
    """One epoch of CD-k over the batches ``bounds`` of a CSR window table, updating ``W``, ``b``, ``c`` in place.

    Parameters
    ----------
    indptr, indices : numpy.ndarray
        The training windows as CSR: window ``r``'s active bits are
        ``indices[indptr[r]:indptr[r + 1]]`` (int64 / int32, increasing within a window).
    bounds : numpy.ndarray
        Batch ``i`` is windows ``bounds[i]:bounds[i + 1]`` (int64, increasing).
    W, b, c : numpy.ndarray
        float32 weights ``(V, H)``, visible and hidden biases; C-contiguous, updated in place.
    lr : float
        Learning rate (the update is scaled by ``lr / B`` for a batch of ``B`` windows).
    k : int
        Gibbs steps of CD-k.
    key : numpy.uint64
        Stream key (:func:`splitmix64_key`).
    counter : numpy.ndarray
        ``uint64[1]``: index of the next draw; advanced in place.
    err_every : int
        Measure ``mean |v0 - vk|`` on every ``err_every``-th batch (the first, then every ``err_every``).
    chain_idx, chain_len : numpy.ndarray
        Persistent CD's chains (empty arrays for plain CD-k): chain ``r``'s active bits are
        ``chain_idx[r * V : r * V + chain_len[r]]``. A batch of ``B`` windows starts its negative phase
        from chains ``0..B-1`` and leaves its samples ``vk`` there.

    Returns
    -------
    (float, int)
        Sum of the measured batches' ``mean |v0 - vk|`` and how many batches were measured.
    """
    V, H = W.shape
    nb = bounds.shape[0] - 1
    bmax = 1
    for bi in range(nb):
        bmax = max(bmax, bounds[bi + 1] - bounds[bi])
    nchunks = (V + CHUNK - 1) // CHUNK
    # (H, V) padded to whole blocks with zeros: h W^T as a sum of rows; W's rows that an update changes are
    # copied in lazily, when their block is next used (and in L1 anyway). bp is b, padded the same way.
    WT = np.zeros((H, nchunks * CHUNK), np.float32)
    WT[:, :V] = W.T
    bp = np.zeros(nchunks * CHUNK, np.float32)
    bp[:V] = b
    stale = np.zeros(V, np.uint8)
    act = np.empty((bmax, H), np.int64)  # the hidden units that are on, per row
    nact = np.empty(bmax, np.int64)
    ph0 = np.empty((bmax, H), np.float32)
    phk = np.empty((bmax, H), np.float32)
    hs = np.empty((bmax, H), np.uint8)
    acc = np.empty(H, np.float32)
    pre = np.empty(CHUNK, np.float32)
    mask = np.zeros(CHUNK, np.uint8)
    words = mask.view(np.uint64)
    vk_len = np.empty(bmax, np.int64)  # vk's row r: vk_idx[r * V : r * V + vk_len[r]], increasing
    vk_idx = np.empty(bmax * V, np.int32)
    dvis = np.zeros(V, np.int32)  # sum v0 - sum vk, only where touched
    touched = np.empty(V, np.int64)
    persistent = chain_len.shape[0] > 0
    ctr = counter[0]
    err_sum = 0.0
    n_err = 0

    for bi in range(nb):
        r0 = bounds[bi]
        B = bounds[bi + 1] - r0
        s = np.float32(lr / B)

        # positive phase: ph0 = sigmoid(c + sum of W's rows at v0's bits); h ~ Bern(ph0), or the chains' h
        for r in range(B):
            _rows_sum(acc, c, W, indices, indptr[r0 + r], indptr[r0 + r + 1])
            for j in range(H):
                ph0[r, j] = _sigmoid(acc[j])
            if not persistent:
                for j in range(H):
                    hs[r, j] = _uniform(key, ctr + np.uint64(r * H + j)) < ph0[r, j]
            else:
                _rows_sum(acc, c, W, chain_idx, r * V, r * V + chain_len[r])
                for j in range(H):
                    hs[r, j] = _uniform(key, ctr + np.uint64(r * H + j)) < _sigmoid(acc[j])
        ctr += np.uint64(B * H)
        _active(hs, B, act, nact)

        for step in range(k):
            # negative phase, visible: vk ~ Bern(sigmoid(b + sum of W^T's rows at h's bits)), block by block
            vk_len[:B] = 0
            for i0 in range(0, V, CHUNK):
                n = min(CHUNK, V - i0)
                for i in range(i0, i0 + n):
                    if stale[i]:
                        for j in range(H):
                            WT[j, i] = W[i, j]
                        stale[i] = 0
                # slices, not WT[j, i0 + i]: an index the compiler cannot prove non-negative gets a
                # wraparound test that stops vectorisation
                bpc = bp[i0 : i0 + CHUNK]
                for r in range(B):
                    for i in range(CHUNK):  # a constant trip count: the block is a few unrolled vector ops
                        pre[i] = bpc[i]
                    na = nact[r]
                    for a in range(0, na - 3, 4):  # four rows per pass: a quarter of the stores to pre
                        w0 = WT[act[r, a], i0 : i0 + CHUNK]
                        w1 = WT[act[r, a + 1], i0 : i0 + CHUNK]
                        w2 = WT[act[r, a + 2], i0 : i0 + CHUNK]
                        w3 = WT[act[r, a + 3], i0 : i0 + CHUNK]
                        for i in range(CHUNK):
                            pre[i] += (w0[i] + w1[i]) + (w2[i] + w3[i])
                    for a in range(na - na % 4, na):
                        wt = WT[act[r, a], i0 : i0 + CHUNK]
                        for i in range(CHUNK):
                            pre[i] += wt[i]
                    base = ctr + np.uint64(r * V + i0)
                    for i in range(CHUNK):  # u < 1 / (1 + e^-x) without the (slow, vector) division
                        mask[i] = _uniform(key, base + np.uint64(i)) * (_ONE + _exp_neg(pre[i])) < _ONE
                    for i in range(n, CHUNK):  # past the last unit (draws there belong to the next row: unused)
                        mask[i] = 0
                    m = r * V + vk_len[r]
                    for w in range((n + 7) // 8):  # mask bytes are 0/1: one set bit per unit that is on
                        x = words[w]
                        while x:
                            vk_idx[m] = i0 + w * 8 + np.int64(_trailing_zeros(x) >> np.uint64(3))
                            m += 1
                            x &= x - np.uint64(1)
                    vk_len[r] = m - r * V
            ctr += np.uint64(B * V)
            # hidden probabilities of the sample
            for r in range(B):
                _rows_sum(acc, c, W, vk_idx, r * V, r * V + vk_len[r])
                for j in range(H):
                    phk[r, j] = _sigmoid(acc[j])
            if step < k - 1:
                for r in range(B):
                    for j in range(H):
                        hs[r, j] = _uniform(key, ctr + np.uint64(r * H + j)) < phk[r, j]
                ctr += np.uint64(B * H)
                _active(hs, B, act, nact)

        if persistent:  # the samples become the chains' new state
            for r in range(B):
                chain_len[r] = vk_len[r]
                chain_idx[r * V : r * V + vk_len[r]] = vk_idx[r * V : r * V + vk_len[r]]

        if bi % err_every == 0:  # mean |v0 - vk| = (|v0| + |vk| - 2 |v0 & vk|) / (B V); both index lists are sorted
            diff = 0
            for r in range(B):
                p, pend = indptr[r0 + r], indptr[r0 + r + 1]
                q, qend = r * V, r * V + vk_len[r]
                diff += (pend - p) + (qend - q)
                while p < pend and q < qend:
                    if indices[p] == vk_idx[q]:
                        diff -= 2
                        p += 1
                        q += 1
                    elif indices[p] < vk_idx[q]:
                        p += 1
                    else:
                        q += 1
            err_sum += diff / (B * V)
            n_err += 1

        # the update, row by row of W where v0 or vk has a bit on; b's counts are applied once per row
        nt = 0
        for r in range(B):
            for p in range(indptr[r0 + r], indptr[r0 + r + 1]):
                i = indices[p]
                if not stale[i]:
                    stale[i] = 1  # also: WT needs this row again
                    touched[nt] = i
                    nt += 1
                dvis[i] += 1
                for j in range(H):
                    W[i, j] += s * ph0[r, j]
            for p in range(r * V, r * V + vk_len[r]):
                i = vk_idx[p]
                if not stale[i]:
                    stale[i] = 1
                    touched[nt] = i
                    nt += 1
                dvis[i] -= 1
                for j in range(H):
                    W[i, j] -= s * phk[r, j]
        for t in range(nt):
            i = touched[t]
            b[i] += s * np.float32(dvis[i])
            bp[i] = b[i]
            dvis[i] = 0
        for j in range(H):
            d = np.float32(0.0)
            for r in range(B):
                d += ph0[r, j] - phk[r, j]
            c[j] += s * d

    counter[0] = ctr
    return err_sum, n_err


class SparseCD:
    """CD-k training with :func:`cd_epoch`: the windows as CSR, built once, the batches and the RNG stream position.

    Parameters
    ----------
    windows : numpy.ndarray
        Binary training windows ``(n, V)`` (any integer or bool dtype), in training order.
    bounds : sequence of int
        Batch boundaries: batch ``i`` is ``windows[bounds[i]:bounds[i + 1]]`` (of the epoch's order when shuffled).
    shuffle : bool
        Each epoch first draws a fresh order of all windows from the stream (``n`` draws, see
        :func:`permutation`) and cuts the batches ``bounds`` from the windows in that order, as the
        torch loop's shuffled order does; the order is a function of the stream position, so the
        ``(key, counter)`` of :meth:`state` covers it too.
    seed : int
        Seeds the stream when ``state`` is not given.
    state : numpy.ndarray, optional
        ``(key, counter)`` from :meth:`state` (e.g. a checkpoint), to continue a stream.
    persistent_rows : int
        Persistent CD with this many chains (at least the largest batch; 0: plain CD-k).
    chains : numpy.ndarray, optional
        Binary ``(persistent_rows, V)`` chain states to continue (e.g. from a checkpoint); without them
        (or with another shape) the chains start as fair coin flips drawn from the stream.
    """

    def __init__(self, windows: np.ndarray, bounds, seed: int = 0, state: np.ndarray | None = None,
                 persistent_rows: int = 0, chains: np.ndarray | None = None, shuffle: bool = False):
        rows, cols = np.nonzero(windows)
        self.indices = cols.astype(np.int32)
        self.indptr = np.zeros(windows.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=windows.shape[0]), out=self.indptr[1:])
        self.bounds = np.asarray(bounds, np.int64)
        self.shuffle = shuffle
        if state is None:
            self.key, self.counter = np.uint64(splitmix64_key(int(seed))), np.zeros(1, np.uint64)
        else:
            s = np.asarray(state).astype(np.int64).view(np.uint64)
            self.key, self.counter = np.uint64(s[0]), s[1:2].copy()
        V = windows.shape[1]
        self.num_visible = V
        self.chain_len = np.zeros(persistent_rows, np.int64)
        self.chain_idx = np.zeros(persistent_rows * V, np.int32)
        if persistent_rows:
            if chains is None or np.shape(chains) != (persistent_rows, V):
                chains = uniforms(int(self.key), int(self.counter[0]), persistent_rows * V).reshape(-1, V) < 0.5
                self.counter[0] += np.uint64(persistent_rows * V)
            for r, row in enumerate(np.asarray(chains)):
                on = np.flatnonzero(row)
                self.chain_len[r] = len(on)
                self.chain_idx[r * V : r * V + len(on)] = on

    @property
    def persistent(self) -> bool:
        return len(self.chain_len) > 0

    def dense_chains(self) -> np.ndarray:
        """The persistent chains as float32 ``(persistent_rows, V)`` (the torch loop's checkpoint format)."""
        V = self.num_visible
        out = np.zeros((len(self.chain_len), V), np.float32)
        for r, n in enumerate(self.chain_len):
            out[r, self.chain_idx[r * V : r * V + n]] = 1.0
        return out

    @property
    def num_updates(self) -> int:
        return len(self.bounds) - 1

    def epoch(self, W: np.ndarray, b: np.ndarray, c: np.ndarray, lr: float, k: int = 1, err_every: int = 16) -> float:
        """Run one epoch, updating the float32 arrays in place; returns the mean of the sampled ``|v0 - vk|``."""
        indptr, indices = self.indptr, self.indices
        if self.shuffle:
            n = len(indptr) - 1
            indptr, indices = take_rows(indptr, indices, permutation(int(self.key), int(self.counter[0]), n))
            self.counter[0] += np.uint64(n)
        err, n = cd_epoch(indptr, indices, self.bounds, W, b, c, float(lr), int(k), self.key, self.counter,
                          int(err_every), self.chain_idx, self.chain_len)
        return err / max(n, 1)

    def state(self) -> np.ndarray:
        """``int64[2]``: the key and the next draw's index (bit patterns), for a checkpoint."""
        return np.array([self.key, self.counter[0]], np.uint64).view(np.int64)
