"""Several processes through MindSpore's own launcher, msrun: which rank this is, its share of
the work, its thread budget, and the collectives the work needs (gradient sums, a barrier).

    msrun --worker_num N --local_worker_num L --master_port P --log_dir D --join True SCRIPT ...

msrun starts the script in a scheduler process (MS_ROLE=MS_SCHED: `mindspore.communication.
init()` runs the cluster's rendezvous there and never returns to the script) and in every
worker (MS_ROLE=MS_WORKER, RANK_ID, RANK_SIZE, OMP_NUM_THREADS its share of the cores), so a
script calls world() first, before any work; without msrun it is rank 0 of 1 and keeps every
core. Nothing here is home-made transport: collectives are MindSpore's
(`mindspore.communication`, `ops.AllReduce`), which run on the CPU too.
"""
import os
from dataclasses import dataclass

import numpy as np

from cold_ms.errors import ConfigError

_state = {}


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    def share(self, items):
        """This rank's items: every size-th from the rank's own index (deterministic, disjoint,
        together the whole list in any order of ranks)."""
        return items[self.rank::self.size]


def under_msrun():
    return os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED")


def world():
    """This process's World; under msrun the communication is initialised (once), and the
    kernels and MindSpore's runtime get the worker's thread budget (no oversubscription of
    the cores msrun gave the local workers)."""
    if "world" in _state:
        return _state["world"]
    if not under_msrun():
        _state["world"] = World()
        return _state["world"]
    threads = os.environ.get("OMP_NUM_THREADS") or "1"
    os.environ.setdefault("COLD_MS_KERNEL_THREADS", threads)  # read when the kernel library first runs
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init
    from cold_ms.runtime import configure
    configure("graph")
    ms.set_context(runtime_num_threads=int(threads))
    try:
        init()
    except RuntimeError as e:
        raise ConfigError(f"msrun: the workers could not connect ({e})") from None
    _state["world"] = World(get_rank(), get_group_size())
    return _state["world"]


def _reducer():
    if "reducer" not in _state:
        from mindspore import nn, ops

        class SumAll(nn.Cell):
            """Elementwise sum of one tensor over every rank."""

            def __init__(self):
                super().__init__()
                self.reduce = ops.AllReduce()

            def construct(self, tensor):
                return self.reduce(tensor)

        _state["reducer"] = SumAll()
    return _state["reducer"]


def all_sum(tensors, weight=1.0):
    """The tuple of tensors, each times `weight`, summed over all ranks (as they are with one
    rank). One collective carries them all, packed into one float32 vector, rather than one
    per tensor (422 for a LoRA on every projection of SmolLM2): one rendezvous of the ranks
    per training step."""
    if world().size == 1:
        return tuple(tensors) if weight == 1.0 else tuple(t * weight for t in tensors)
    from mindspore import Tensor
    arrays = [t.asnumpy() for t in tensors]
    packed = np.concatenate([a.astype(np.float32).ravel() for a in arrays]) * np.float32(weight)
    total = _reducer()(Tensor(packed)).asnumpy()
    ends = np.cumsum([a.size for a in arrays])
    return tuple(Tensor(part.reshape(a.shape).astype(a.dtype)) for a, part in zip(arrays, np.split(total, ends[:-1])))


def barrier():
    """Return once every rank has called it."""
    if world().size > 1:
        from mindspore import Tensor
        all_sum((Tensor(np.ones(1, np.float32)),))[0].asnumpy()


def finish():
    """Leave the cluster cleanly once every rank is done (msrun's scheduler counts a worker
    that exits without leaving as failed)."""
    if "world" in _state and under_msrun():
        barrier()
        from mindspore.communication import release
        release()
