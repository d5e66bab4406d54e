"""The fused numba scan of `._fast` (imported only when that path runs, so that
importing the SOM does not import numba; at module level, so numba's on-disk
cache keeps the compiled kernel)."""

import numba
import numpy as np

__all__ = ["scan"]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def scan(st, xa, norms, adj, sums, acc, add_sums, want_topo):  # pragma: no cover - jit
    # st is the (K, rows) transposed score block: the search for the best and
    # second-best unit runs unit by unit over contiguous rows as branch-free
    # selects (vectorised); strict < keeps the first occurrence on ties, exactly
    # argmin(s) and argmin(s with the best masked)
    kk, n = st.shape
    m1 = np.full(n, np.inf, dtype=np.float32)
    m2 = np.full(n, np.inf, dtype=np.float32)
    b1 = np.zeros(n, dtype=np.int32)
    b2 = np.zeros(n, dtype=np.int32)
    for j in range(kk):
        jj = np.int32(j)
        for i in range(n):
            v = st[j, i]
            a1 = m1[i]
            a2 = m2[i]
            c1 = b1[i]
            lt1 = v < a1
            lt2 = v < a2
            m2[i] = a1 if lt1 else (v if lt2 else a2)
            b2[i] = c1 if lt1 else (jj if lt2 else b2[i])
            m1[i] = v if lt1 else a1
            b1[i] = jj if lt1 else c1
    d1 = xa.shape[1]
    sq = 0.0
    err = 0.0
    topo = 0
    for i in range(n):
        d2 = norms[i] + m1[i]
        if d2 < 0:
            d2 = np.float32(0.0)
        sq += d2
        err += np.sqrt(d2)
        if want_topo and not adj[b1[i], b2[i]]:
            topo += 1
        if add_sums:
            b = b1[i]
            for c in range(d1):
                sums[b, c] += xa[i, c]
    acc[0] += sq
    acc[1] += err
    acc[2] += topo
