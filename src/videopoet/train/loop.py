"""The one training loop: every model's trainer is a ``Recipe`` run by the ``Engine``.

What the engine owns, once for every model:

- **Data order.** The global batch of step s holds the items at positions ``s·B … s·B + B − 1``; a
  position maps to a dataset index through a per-epoch permutation seeded by (seed, epoch) (datasets of
  more than 2^24 items, such as the synthetic world's seeds, are read in order: every seed is already a
  random clip). Rank r of W takes positions ``s·B + r·B/W …`` — its slice of the same global batch — so
  the data a step sees depends on neither the number of ranks nor on how often the run was resumed. An
  unreadable item is replaced by the next readable position and its reason is logged.
- **The run.** ``max_steps`` (the LR schedule's length), ``stop_after_steps`` (one chunk of a longer
  run), ``max_minutes`` (a wall-clock budget), eval / sample / checkpoint cadences, the final export to
  ``out_dir/final``; one metrics row per step (rank 0, ``metrics.jsonl``); a progress bar; SIGTERM or
  Ctrl-C → a checkpoint at the end of the current step and a clean exit.
- **Non-finite steps.** An optimizer step whose gradient norm is not finite (a NaN/inf loss) is skipped
  and counted; ``max_nonfinite`` in a row stop the run with a clear message and exit status 3.
- **Checkpoints** (``train/checkpoint.py``): atomic, pickle-free, full tensors; ``--resume`` continues
  from the newest complete one on any number of ranks; a folder holding a run is refused unless told to
  resume or overwrite.
- **Several processes.** Under ``torchrun`` the engine joins the process group (NCCL on GPUs, gloo on
  CPUs). Replicated modules (the tokenizers) get their gradients averaged over ranks after backward
  (data parallelism without a wrapper, so generator/discriminator switching needs no special case);
  ``Engine.shard`` applies FSDP2 ``fully_shard`` per block with a mixed-precision policy (the
  transformers). A single process needs no torchrun.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from videopoet.components import upgraded_state
from videopoet.config import ConfigError, load_config, to_dict
from videopoet.data.datasets import loader_worker_init
from videopoet.device import pick_device
from videopoet.distributed import all_sum, is_distributed
from videopoet.errors import UserError
from videopoet.signals import StopSignals
from videopoet.train import checkpoint as ckpt
from videopoet.train.common import MetricsLogger, cosine_lr, seed_everything

log = logging.getLogger("videopoet.train")

MAX_PERMUTED = 1 << 24  # larger datasets are read in order (each synthetic seed is already random)
MAX_RETRIES = 16  # consecutive unreadable positions tried before a batch slot is left empty
EXIT_NONFINITE = 3  # exit status when max_nonfinite steps in a row were not finite
RUN_FILES = ("checkpoints", "final", "samples", "metrics.jsonl", "train_config.json")


@dataclass(kw_only=True)
class TrainConfig:
    """What every training run has; a model's config subclasses it and nests its own settings."""

    out_dir: str = "runs/run"  # metrics.jsonl, train_config.json, checkpoints/, samples/, final/
    preset: str = "tiny"  # model preset (the model file's PRESETS)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields
    data: str = "synthetic:train"  # training data spec (videopoet.data.datasets.open_dataset)
    eval_data: str = ""  # held-out data for evaluation and samples ("" = synthetic:heldout / data)
    init_from: str = ""  # fine-tune from a component directory ("bundled" = the shipped weights)
    seed: int = 0  # model init, data order and augmentation seed
    batch_size: int = 16  # global batch: items per step over all ranks (a multiple of the rank count)
    num_workers: int = 4  # DataLoader worker processes per rank
    max_steps: int = 1000  # total optimizer steps (the LR schedule spans these)
    stop_after_steps: int = 0  # stop (checkpointed, resumable) after this many steps in one invocation
    max_minutes: float = 0.0  # wall-clock budget of one invocation: checkpoint, export, stop (0 = none)
    lr: float = 3e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.99)  # Adam(W) betas
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 200  # linear LR warm-up
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of lr
    grad_clip: float = 1.0  # global grad-norm clip (0 = off)
    ema_decay: float = 0.999  # EMA of the weights (exported to final/)
    precision: str = "bf16"  # "bf16" (autocast / FSDP2 param dtype on CUDA) or "fp32"
    compile: bool = False  # torch.compile the models
    device: str = "auto"  # auto, cpu, cuda, cuda:N (under torchrun each rank takes its LOCAL_RANK GPU)
    eval_every: int = 0  # steps between held-out evaluations (0 = only at the end)
    sample_every: int = 0  # steps between written samples (0 = only at the end)
    ckpt_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 2  # newest complete checkpoints kept
    max_nonfinite: int = 8  # non-finite steps in a row that stop the run

    RENAMED: ClassVar[dict[str, str]] = {
        "steps": "max_steps",
        "stop_after": "stop_after_steps",
        "val_data": "eval_data",
        "sample_data": "eval_data",
        "log_every": "(nothing: every step has a metrics row)",
        "debug_nan_steps": "(nothing: tests inject faults with monkeypatch)",
    }

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("batch_size and max_steps must be positive")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.ckpt_every < 0 or self.eval_every < 0 or self.sample_every < 0:
            raise ConfigError("ckpt_every, eval_every and sample_every must be >= 0")
        if self.max_nonfinite < 1:
            raise ConfigError("max_nonfinite must be at least 1")

    def lr_at(self, step: int, base: float | None = None) -> float:
        base = self.lr if base is None else base
        return cosine_lr(
            step, base_lr=base, warmup=self.warmup_steps, total=self.max_steps, min_ratio=self.min_lr_ratio
        )

    def heldout_spec(self) -> str:
        return self.eval_data or ("synthetic:heldout" if self.data.startswith("synthetic") else self.data)


# ============================================================================================ data order
class StepItems(Dataset):
    """Global position g → ``(prepare(sample, g), dataset index used, skip reasons)``."""

    def __init__(self, dataset: Dataset, prepare: Callable[[Any, int], Any], *, seed: int):
        self.dataset, self.prepare, self.seed = dataset, prepare, seed
        self.n = len(dataset)
        self.shuffle = self.n <= MAX_PERMUTED
        self._perm_epoch, self._perm = -1, None

    def index(self, g: int) -> int:
        epoch, pos = divmod(g, self.n)
        if not self.shuffle:
            return pos
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return int(self._perm[pos])

    def __len__(self) -> int:
        return 2**62  # indexed by global position; the step decides which positions are read

    def __getitem__(self, g: int) -> tuple[Any, int, list[str]]:
        """``prepare`` gets the slot's position g even when a later item fills the slot, so what it
        derives from the position (a crop offset, the step's task) is the slot's."""
        from videopoet.data.datasets import readable_items

        skipped: list[str] = []
        candidates = (self.index(g + attempt) for attempt in range(MAX_RETRIES))
        for i, sample in readable_items(self.dataset, candidates, log=skipped.append):
            try:
                return self.prepare(sample, g), i, skipped
            except Exception as e:  # a clip that cannot become a training item is skipped too
                skipped.append(f"item {i}: {type(e).__name__}: {e}")
        return None, -1, skipped


class StepSampler(Sampler):
    """This rank's positions of steps start … stop − 1: ``[s·B + r·b, s·B + (r + 1)·b)``, b = B / W."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch_size, rank, world

    def __iter__(self):
        b = self.batch // self.world
        for step in range(self.start, self.stop):
            first = step * self.batch + self.rank * b
            yield list(range(first, first + b))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class StepBatch(NamedTuple):
    data: Any  # the collated readable items (None when none was readable)
    count: int  # readable items
    signature: int  # order-free signature of the dataset indices read (equal for any rank count)
    skipped: list[str]  # reasons for the items left out


def collate_step(items: list[tuple[Any, int, list[str]]], collate: Callable = default_collate) -> StepBatch:
    good = [(x, i) for x, i, _ in items if x is not None]
    skipped = [r for _, _, reasons in items for r in reasons]
    signature = sum((i * 2654435761) % 2**31 for _, i in good)
    data = collate([x for x, _ in good]) if good else None
    return StepBatch(data, len(good), signature, skipped)


# ============================================================================================ recipes
class OptimizerOf(NamedTuple):
    """An optimizer and the module whose parameters it steps (checkpoints key its state by name)."""

    optimizer: torch.optim.Optimizer
    module: nn.Module


class Recipe:
    """What a model plugs into the engine. ``state`` names what checkpoints hold: modules, optimizers
    (``OptimizerOf``) and objects with tensor ``state_dict``/``load_state_dict`` (an EMA)."""

    state: dict[str, Any]
    progress_keys: tuple[str, ...] = ("loss",)

    def dataset(self) -> Dataset:
        raise NotImplementedError

    def prepare(self, sample: Any, position: int) -> Any:
        """A dataset sample → one training item (raise ValueError to skip it with that reason)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        """One rank's readable items of a step → the batch ``train_step`` gets."""
        return default_collate(items)

    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, step: int) -> dict[str, Any]:
        """Held-out metrics, called on every rank (rank 0's are logged)."""
        return {}

    def write_samples(self, folder: Path) -> None:
        """Write previews of the current model into ``folder`` (called on every rank, so that a sharded
        model can be gathered first; write on rank 0)."""

    def export(self, folder: Path) -> None:
        """Write the trained component to ``folder`` (called on every rank; write on rank 0)."""
        raise NotImplementedError


# ============================================================================================ the engine
def setup_process(device_name: str) -> tuple[torch.device, int, int]:
    """Join the torchrun process group when launched by torchrun → (device, rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, (dist.get_rank() if is_distributed() else 0), (dist.get_world_size() if world > 1 else 1)


class Engine:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device, self.rank, self.world = setup_process(cfg.device)
        self.is_main = self.rank == 0
        if cfg.batch_size % self.world:
            raise ConfigError(f"batch_size {cfg.batch_size} does not split over {self.world} ranks")
        self.local_batch = cfg.batch_size // self.world
        self.out = Path(cfg.out_dir)
        self.step = 0
        self.amp = cfg.precision == "bf16" and self.device.type == "cuda"
        self.nonfinite_total = self.nonfinite_run = 0
        self._step_nonfinite = False
        self._stop = StopSignals("stopping after this step with a checkpoint")
        seed_everything(cfg.seed)

    # ------------------------------------------------------------------ parallelism
    def shard(self, model: nn.Module, blocks: Iterable[nn.Module]) -> nn.Module:
        """FSDP2: ``fully_shard`` each block, then the root (bf16 parameters, fp32 gradient reduction)."""
        if self.world == 1:
            return model
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        dtype = torch.bfloat16 if self.amp else torch.float32
        policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        for block in blocks:
            fully_shard(block, mp_policy=policy)
        return fully_shard(model, mp_policy=policy)

    def step_optimizer(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> float | None:
        """Backward, average gradients over ranks, clip, step → the gradient norm; a non-finite norm
        skips the step (counted by the engine) and returns None. The parameters are the optimizer's
        (FSDP2 swaps a root module's registered parameters between forward and backward)."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        self._average_gradients(params)
        clip = self.cfg.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if params else torch.zeros(())
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        if not math.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            self._step_nonfinite = True
            return None
        opt.step()
        return norm

    def _average_gradients(self, params: list[nn.Parameter]) -> None:
        grads = [p.grad for p in params if not hasattr(p, "placements")]  # FSDP2 reduces its own
        if self.world == 1 or not grads:
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world
        for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(synced)

    # ------------------------------------------------------------------ run folder
    def _prepare_folder(self, resume: bool, overwrite: bool) -> Path | None:
        """Refuse a used folder unless resuming or overwriting; → the checkpoint to resume from."""
        used = [name for name in RUN_FILES if (self.out / name).exists()]
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"out_dir {self.out} exists and is not a folder")
        latest = ckpt.latest_checkpoint(self.out / "checkpoints")
        if resume and latest is None:
            raise UserError(
                f"--resume: no complete checkpoint in {self.out / 'checkpoints'}; "
                "start over with --overwrite (or drop --resume for a new out_dir)"
            )
        if used and not resume and not overwrite:
            raise UserError(
                f"{self.out} holds a training run ({', '.join(used)}); continue it with --resume "
                "or start over with --overwrite"
            )
        self.barrier()
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if overwrite and not resume:
                for name in used:
                    path = self.out / name
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            gone = ckpt.remove_temporaries(self.out / "checkpoints")
            if gone:
                log.info("removed %d half-written checkpoint folder(s)", len(gone))
            text = json.dumps(to_dict(self.cfg), indent=2) + "\n"
            tmp = self.out / f".train_config.json.tmp-{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, self.out / "train_config.json")
        self.barrier()
        return latest if resume else None

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # ------------------------------------------------------------------ checkpoints
    def save(self, recipe: Recipe) -> None:
        groups: dict[str, dict[str, torch.Tensor]] = {}
        state: dict[str, Any] = {"config": to_dict(self.cfg), "world_size": self.world}
        state["nonfinite_total"] = self.nonfinite_total
        for name, obj in recipe.state.items():
            if isinstance(obj, OptimizerOf):
                groups[name], state[name] = ckpt.optimizer_state(obj.module, obj.optimizer)
            elif isinstance(obj, nn.Module):
                groups[name] = ckpt.module_state(obj)
            else:
                groups[name] = {k: v for k, v in obj.state_dict().items()}
        if self.is_main:
            ckpt.save_checkpoint(
                self.out / "checkpoints", self.step, groups, state, keep=self.cfg.keep_checkpoints
            )
        self.barrier()
        self._saved_step = self.step

    def load(self, recipe: Recipe, path: Path) -> None:
        try:
            groups, state = ckpt.load_checkpoint(path)
        except ckpt.CheckpointError as e:
            raise UserError(str(e)) from None
        for name, obj in recipe.state.items():
            if name not in groups and not (isinstance(obj, OptimizerOf) and name in state):
                raise UserError(f"{path} holds no {name!r}, which this config trains; check the config")
            if isinstance(obj, OptimizerOf):
                tensors, meta = ckpt.upgrade_optimizer_state(obj.module, groups.get(name, {}), state[name])
                ckpt.load_optimizer_state(obj.module, obj.optimizer, tensors, meta)
            elif isinstance(obj, nn.Module):
                ckpt.load_module_state(obj, upgraded_state(obj, groups[name]))
            else:
                obj.load_state_dict(groups[name])
        self.step = int(state["step"])
        self.nonfinite_total = int(state.get("nonfinite_total", 0))
        self._saved_step = self.step
        log.info("resumed from %s at step %d (saved by %d rank(s))", path, self.step, state["world_size"])

    # ------------------------------------------------------------------ the loop
    def run(self, recipe: Recipe, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
        """Train to ``max_steps`` (or a stop condition) → exit status (0, 130 after Ctrl-C, 3)."""
        t0 = time.time()
        latest = self._prepare_folder(resume, overwrite)
        self._saved_step = -1
        if latest is not None:
            self.load(recipe, latest)
        metrics = MetricsLogger(self.out / "metrics.jsonl", keep_until=self.step) if self.is_main else None
        log.info("training on %d rank(s) (world size %d), device %s, steps %d → %d",
                 self.world, self.world, self.device, self.step, self.cfg.max_steps)  # fmt: skip
        self._event(metrics, "start" if latest is None else "resumed", world_size=self.world)
        loader = self._loader(recipe)
        self._progress_keys = recipe.progress_keys
        bar = self._bar(progress)
        try:
            with self._stop:
                reason = self._loop(recipe, loader, metrics, bar, t0)
        finally:
            if bar is not None:
                bar.close()
        return self._finish(recipe, metrics, reason, t0)

    def _loop(self, recipe: Recipe, loader, metrics, bar, t0: float) -> str:
        first = self.step
        for batch in loader:
            for reason in batch.skipped:
                log.warning("step %d: skipped an item: %s", self.step, reason)
            row = self._one_step(recipe, batch)
            self.step += 1
            if row is not None:
                self._cadence(recipe, row)
                self._log_row(metrics, bar, row)  # before the checkpoint: a kill after it keeps the row
                self._checkpoint(recipe)
            if self.nonfinite_run >= self.cfg.max_nonfinite:
                return "nonfinite"
            stop = self._stop_reason(first, t0)
            if stop:
                return stop
        return "done"

    def _one_step(self, recipe: Recipe, batch: StepBatch) -> dict[str, Any] | None:
        counts = all_sum(torch.tensor([batch.count, batch.signature, int(batch.count == 0)]))
        if int(counts[2]):  # a rank has nothing readable: every rank skips the step together
            log.warning("step %d: a rank had no readable item; step skipped", self.step)
            return None
        self._step_nonfinite = False
        row = recipe.train_step(_to_device(batch.data, self.device), self.step)
        row = self._reduce(row)
        row.update(items=int(counts[0]), data_signature=int(counts[1]))
        if self._step_nonfinite:
            self.nonfinite_total += 1
            self.nonfinite_run += 1
            row["nonfinite"] = True
            log.warning("step %d: non-finite loss or gradient; update skipped", self.step)
        else:
            self.nonfinite_run = 0
        row["nonfinite_total"] = self.nonfinite_total
        return row

    def _reduce(self, row: dict[str, Any]) -> dict[str, Any]:
        """Average the numeric metrics over ranks (each rank's are means over equal slices)."""
        keys = sorted(k for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool))
        if self.world == 1 or not keys:
            return row
        values = all_sum(torch.tensor([float(row[k]) for k in keys], dtype=torch.float64)) / self.world
        return row | {k: float(v) for k, v in zip(keys, values.tolist())}

    def _cadence(self, recipe: Recipe, row: dict[str, Any]) -> None:
        cfg, s = self.cfg, self.step
        if cfg.eval_every and s % cfg.eval_every == 0 and s < cfg.max_steps:
            row.update(recipe.evaluate(s))
        if cfg.sample_every and s % cfg.sample_every == 0:
            recipe.write_samples(self.out / "samples" / f"step_{s:08d}")

    def _checkpoint(self, recipe: Recipe) -> None:
        cfg, s = self.cfg, self.step
        if cfg.ckpt_every and s % cfg.ckpt_every == 0 and s < cfg.max_steps:
            self.save(recipe)

    def _stop_reason(self, first: int, t0: float) -> str:
        cfg = self.cfg
        out_of_time = bool(cfg.max_minutes) and (time.time() - t0) / 60 >= cfg.max_minutes
        flags = all_sum(torch.tensor([int(self._stop.signum is not None), int(out_of_time)]))
        if self.step >= cfg.max_steps:
            return ""
        if int(flags[0]):
            return "signal"
        if cfg.stop_after_steps and self.step - first >= cfg.stop_after_steps:
            return "stop_after_steps"
        return "max_minutes" if int(flags[1]) else ""

    def _finish(self, recipe: Recipe, metrics, reason: str, t0: float) -> int:
        minutes = round((time.time() - t0) / 60, 3)
        if reason == "nonfinite":
            latest = ckpt.latest_checkpoint(self.out / "checkpoints")
            then = f"--resume from {latest}" if latest else "start over with --overwrite (no checkpoint yet)"
            msg = (
                f"stopped at step {self.step}: {self.cfg.max_nonfinite} non-finite steps in a row "
                f"({self.nonfinite_total} in all); lower lr or check the data, then {then}"
            )
            self._event(metrics, "stopped", reason=reason, message=msg)
            self._close(metrics)
            _say(f"videopoet: {msg}")
            return EXIT_NONFINITE
        if self._saved_step != self.step:
            self.save(recipe)
        exported = reason in ("done", "max_minutes")
        info: dict[str, Any] = {}
        if exported:
            info = recipe.evaluate(self.step)
            sampled = self.cfg.sample_every and self.step % self.cfg.sample_every == 0
            if not sampled:
                recipe.write_samples(self.out / "samples" / f"step_{self.step:08d}")
            recipe.export(self.out / "final")
            self.barrier()
        self._event(metrics, "end", reason=reason, minutes=minutes, exported=exported, **info)
        self._close(metrics)
        if not exported:
            _say(f"videopoet: stopped at step {self.step} ({reason}); continue with --resume")
        return 130 if self._stop.signum == signal.SIGINT else 0

    # ------------------------------------------------------------------ helpers
    def _loader(self, recipe: Recipe) -> DataLoader:
        items = StepItems(recipe.dataset(), recipe.prepare, seed=self.cfg.seed)
        workers = self.cfg.num_workers
        return DataLoader(
            items,
            batch_sampler=StepSampler(
                self.step, self.cfg.max_steps, self.cfg.batch_size, self.rank, self.world
            ),
            collate_fn=functools.partial(collate_step, collate=recipe.collate),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            generator=torch.Generator(),  # creating the iterator must not consume the global RNG
            worker_init_fn=loader_worker_init,  # called in worker processes only
        )

    def _bar(self, progress: bool):
        if not (progress and self.is_main):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True
        )

    def _log_row(self, metrics, bar, row: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.log(self.step, **row)
        if bar is not None:
            bar.update(self.step - bar.n)
            keys = self._progress_keys
            shown = {k: f"{v:.4g}" for k, v in row.items() if k in keys and isinstance(v, int | float)}
            bar.set_postfix(shown, refresh=False)

    def _event(self, metrics, name: str, **info: Any) -> None:
        if metrics is not None:
            metrics.log(self.step, event=name, **info)

    def _close(self, metrics) -> None:
        if metrics is not None:
            metrics.close()
        if self.world > 1 and dist.is_initialized():
            # Every rank done with the group before any tears it down: a rank that destroys it while a
            # peer is still finishing its last save can abort in gloo at exit ("terminate called ...").
            dist.barrier()
            dist.destroy_process_group()


def _to_device(data: Any, device: torch.device) -> Any:
    if torch.is_tensor(data):
        return data.to(device, non_blocking=True)
    if isinstance(data, dict):
        return {k: _to_device(v, device) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_to_device(v, device) for v in data)
    return data


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def setup_logging(rank: int | None = None) -> None:
    """INFO on rank 0, warnings only on the others (each rank still reports the items it skipped)."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    level = logging.INFO if rank == 0 else logging.WARNING
    fmt = "%(asctime)s %(name)s: %(message)s" if rank == 0 else f"%(asctime)s [rank {rank}] %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def train_command(args, config_cls: type, train: Callable[..., int], what: str) -> int:
    """A trainer's ``main(args)``: ``--config`` + ``--set`` → ``train(cfg, resume=, overwrite=)``, and
    where the run's checkpoints and exported weights are when it ends well."""
    setup_logging()
    cfg = load_config(config_cls, args.config, args.set)
    status = train(cfg, resume=args.resume, overwrite=getattr(args, "overwrite", False))
    # Free the run's reference cycles (FSDP2 modules, their DTensors and collective handles) now, while the
    # interpreter is whole, rather than during its shutdown.
    gc.collect()
    if status == 0:
        out = Path(cfg.out_dir)
        print(f"{what}: checkpoints in {out / 'checkpoints'}, weights in {out / 'final'}")
    return status
