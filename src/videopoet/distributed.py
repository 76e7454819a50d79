"""Statistics over the global batch when training runs on several ranks (``torchrun``).

Each rank holds an equal slice of one global batch. Losses that are means over a rank's slice need
nothing: data-parallel gradient averaging turns them into the global mean. Statistics that are *not*
means of per-example terms — LFQ's codebook entropy (entropy of the batch-average code distribution),
the RVQ's EMA codebook counts and dead-code restarts, LeCam's EMA anchors — and per-example random draws
must see the whole global batch, or the loss curve would change with the number of ranks. The helpers
below are the identity in a single process, so model code calls them unconditionally.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_sum(x: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
    """Sum of ``x`` over ranks. With ``grad`` the backward pass sums the ranks' gradients too, which is
    what a global statistic inside every rank's loss needs under gradient averaging."""
    if not is_distributed():
        return x
    if grad:
        import torch.distributed.nn.functional as dist_fn

        return dist_fn.all_reduce(x, op=dist.ReduceOp.SUM)
    y = x.detach().to(_comm_device(), copy=True)
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y.to(x.device)


def _comm_device() -> torch.device:
    """NCCL reduces GPU tensors only; gloo reduces CPU tensors (statistics kept on the host move)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def global_mean(x: torch.Tensor, dim: int = 0, *, grad: bool = True) -> torch.Tensor:
    """Mean of ``x`` along ``dim`` over the rows of every rank (the global batch)."""
    total = all_sum(x.sum(dim), grad=grad)
    count = all_sum(torch.tensor(float(x.shape[dim]), device=x.device))
    return total / count


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows (dim 0) in rank order, i.e. in global-batch order; no gradient.

    Ranks may hold different numbers of rows (a masked subset): rows are padded to the longest for the
    collective and trimmed after."""
    if not is_distributed():
        return x
    home, x = x.device, x.detach().to(_comm_device())
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)]).to(home)


def local_rand(*shape: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform draws for this rank's slice of the global batch (``shape[0]`` = local rows).

    Every rank draws the whole global batch's values from the same RNG state and keeps its own rows, so
    a sample gets the value it would get in a single process, and every rank's RNG stays in step.
    """
    w, r = world_size(), rank()
    draws = torch.rand(shape[0] * w, *shape[1:], device=device)
    return draws[r * shape[0] : (r + 1) * shape[0]]


def local_randint(low: int, high: int, n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Integers in [low, high) for this rank's ``n`` rows, drawn as ``local_rand`` draws its values."""
    w, r = world_size(), rank()
    return torch.randint(low, high, (n * w,), device=device)[r * n : (r + 1) * n]
