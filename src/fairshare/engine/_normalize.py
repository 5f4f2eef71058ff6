"""policy.normalize: what one unit of a request's throughput is (docs/scenario.md#normalize).

With `reference` (the default) a request's speeds are as given, relative to `reference_gpu`, and
the choice of reference changes who gets what.  With `equal_share` each request's throughput is
measured against its throughput on an equal share of the cluster, as Gavel (OSDI 2020) does:
its speeds are divided by its capacity-weighted mean speed over the whole cluster (0 on the pools
it cannot use), so one effective GPU is what an average GPU of the cluster does for it.  Dividing
every request by the same constant (its equal share is 1/N of the cluster for N requests) would not
change who gets what, so this is Gavel's max-min objective in GPU-sized units.
"""

from __future__ import annotations

import numpy as np


def equal_share_speeds(
    cell_req: np.ndarray, cell_pool: np.ndarray, cell_speed: np.ndarray, pool_cap: np.ndarray
) -> np.ndarray:
    """Each cell's speed divided by its request's mean speed over every GPU of the cluster."""
    total = float(pool_cap.sum())
    if not len(cell_speed) or total <= 0:
        return cell_speed
    n_req = int(cell_req.max()) + 1
    mean = np.bincount(cell_req, weights=cell_speed * pool_cap[cell_pool], minlength=n_req) / total
    return cell_speed / mean[cell_req]
