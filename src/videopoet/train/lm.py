"""The prefix LM's recipe for the training engine (``videopoet train lm``).

Data: a folder of token shards (``videopoet tokenize``), or any dataset spec tokenized on the fly by the
configured tokenizers (small runs). Each item is one tokenized clip; the step decides the task:

- **Task mixture with Alternating Gradient Descent.** Step s draws one task from ``tasks`` (weights,
  renormalised) with an RNG seeded by (seed, s), and every item of the step is built for that task, so a
  batch holds sequences of one layout and length: no padding (stylization's two variants, with and
  without a first frame, are drawn per step too; the padding ratio is logged and stays 0).
- **Image → video curriculum.** Before ``curriculum_switch`` × max_steps, text_to_image takes
  ``image_share_start`` of the steps, after it ``image_share_end``; the video tasks share the rest by
  their weights.
- **Text dropout** for classifier-free guidance: an item's text is masked with ``text_dropout`` (seeded by
  its position).
- **Loss** (lm/loss.py, shared with ``videopoet eval lm``): cross-entropy on the output tokens only (the
  task builders' loss mask), logged per task; the head runs on the positions that predict a target only
  (``target_loss``: no (B, L, V) logits, and the factorized head's loss comes from its factors);
  AdamW, warm-up + cosine, bf16 autocast over fp32 weights (FSDP2: bf16 parameters, fp32 reduction and
  fp32 sharded master weights), gradient clipping — all from the engine.
- **Held-out loss** per task (``val_loss/<task>``): ``heldout_items`` builds each task's examples from the
  first ``eval_items`` held-out clips, ``heldout_loss`` averages over their target tokens in mini-batches;
  ``videopoet eval lm`` (eval/lm.py) scores a saved model with the same two functions.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from videopoet.config import ConfigError
from videopoet.lm.loss import (
    batch_loss,
    collate_examples,
    example_item,
    first_records,
    heldout_items,
    heldout_loss,
)
from videopoet.lm.transformer import PRESETS, PrefixLM
from videopoet.lm.vocab import Vocab
from videopoet.train.common import copy_matching_weights
from videopoet.train.loop import Engine, OptimizerOf, Recipe, TrainConfig, train_command

log = logging.getLogger("videopoet.train.lm")

DEFAULT_MIX = {
    "unconditional": 0.25,
    "text_to_video": 2.0,
    "text_to_image": 1.0,
    "frame_prediction": 1.0,
    "image_to_video": 1.0,
    "inpainting": 0.5,
    "outpainting_central": 0.5,
    "outpainting_horizontal": 0.25,
    "outpainting_vertical": 0.25,
    "stylization": 0.5,
    "audio_to_video": 0.5,
    "video_to_audio": 1.0,
    "av_continuation": 0.5,
}
IMAGE_TASK = "text_to_image"


@dataclass(kw_only=True)
class LMDataConfig:
    video_tokenizer: str = ""  # on-the-fly data: video tokenizer directory ("" = the bundled one)
    audio_tokenizer: str = ""  # on-the-fly data: audio codec directory ("" = the bundled one)
    text_encoder: str = "minilm"  # on-the-fly data: "minilm", a T5 directory, or "none"
    frames: int = 17  # on-the-fly data: clip length
    width: int = 128  # on-the-fly data: clip width
    height: int = 128  # on-the-fly data: clip height


@dataclass(kw_only=True)
class LMTrainConfig(TrainConfig):
    out_dir: str = "runs/lm"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    ema_decay: float = 0.0  # unused by the LM (kept at 0: no EMA copy of a large model)
    tasks: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))  # task → mixture weight
    image_share_start: float = 0.9  # share of text_to_image steps before the curriculum switch …
    image_share_end: float = 0.1  # … and after it
    curriculum_switch: float = 0.25  # fraction of max_steps at which the image share changes
    text_dropout: float = 0.1  # items whose text is masked (classifier-free guidance)
    eval_items: int = 16  # held-out clips whose per-task loss is measured at each evaluation
    records: LMDataConfig = field(default_factory=LMDataConfig)

    RENAMED: ClassVar[dict[str, str]] = TrainConfig.RENAMED

    def __post_init__(self) -> None:
        super().__post_init__()
        from videopoet.lm.tasks import TRAINED_TASKS

        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; choose one of {sorted(PRESETS)}")
        unknown = sorted(set(self.tasks) - set(TRAINED_TASKS))
        if unknown or not self.tasks or any(w < 0 for w in self.tasks.values()):
            raise ConfigError(f"tasks: unknown {unknown} or negative weights; trained tasks: {TRAINED_TASKS}")
        if sum(self.tasks.values()) <= 0:
            raise ConfigError("tasks: at least one weight must be positive")
        for name in ("image_share_start", "image_share_end", "curriculum_switch", "text_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def task_of_step(self, step: int) -> str:
        """The step's task: a pure function of (seed, step), the curriculum and the mixture weights."""
        rng = np.random.default_rng([self.seed, step, 0x7A5C])
        early = step < self.curriculum_switch * self.max_steps
        share = self.image_share_start if early else self.image_share_end
        videos = {t: w for t, w in self.tasks.items() if t != IMAGE_TASK and w > 0}
        if IMAGE_TASK in self.tasks and self.tasks[IMAGE_TASK] > 0 and (not videos or rng.random() < share):
            return IMAGE_TASK
        names = sorted(videos)
        weights = np.array([videos[t] for t in names], dtype=np.float64)
        return names[int(rng.choice(len(names), p=weights / weights.sum()))]


# ============================================================================================ data
def open_records(spec: str, cfg: LMTrainConfig, *, split: str = "train"):
    """A token-shard folder, or any dataset spec tokenized when read."""
    from videopoet.lm import records

    if records.is_token_shard_folder(spec):
        return records.TokenShardDataset(spec)
    return records.OnTheFlyRecords(spec, _record_tokenizer(cfg.records), **_clip_kwargs(cfg.records, split))


def _clip_kwargs(rc: LMDataConfig, split: str) -> dict[str, Any]:
    return dict(frames=rc.frames, width=rc.width, height=rc.height, split=split)


def _record_tokenizer(rc: LMDataConfig):
    from videopoet.lm.records import RecordTokenizer
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    text = None
    if rc.text_encoder != "none":
        from videopoet.text import load_text_encoder

        text = load_text_encoder(rc.text_encoder)
    video = VideoTokenizer.from_pretrained(rc.video_tokenizer or None)
    audio = AudioTokenizer.from_pretrained(rc.audio_tokenizer or None)
    return RecordTokenizer(video, audio, text, device="cpu")


@dataclass(frozen=True)
class BuildItem:
    """A record → one training item for the task of its step (picklable: runs in loader workers)."""

    cfg: LMTrainConfig
    vocab: Vocab
    text_slots: int
    text_dim: int

    def __call__(self, record: Any, position: int) -> dict[str, Any]:
        from videopoet.lm.tasks import STYLIZATION_FIRST_FRAME_P, build_example

        step = position // self.cfg.batch_size
        task = self.cfg.task_of_step(step)
        rng = np.random.default_rng([self.cfg.seed, position])
        drop = bool(rng.random() < self.cfg.text_dropout)
        # the stylization variant (with a first frame or not) is the step's too: one length per batch
        step_rng = np.random.default_rng([self.cfg.seed, step, 0x5717])
        first = bool(step_rng.random() < STYLIZATION_FIRST_FRAME_P) if task == "stylization" else None
        ex = build_example(task, record, self.vocab, text_slots=self.text_slots, text_dim=self.text_dim,
                           rng=rng, drop_text=drop, first_frame=first)  # fmt: skip
        return example_item(task, ex)


# ============================================================================================ recipe
class LMRecipe(Recipe):
    progress_keys = ("loss",)

    def __init__(self, cfg: LMTrainConfig, engine: Engine):
        self.cfg, self.engine = cfg, engine
        try:
            model = PrefixLM.from_preset(cfg.preset, **cfg.model)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model overrides {cfg.model}: {e}") from None
        if cfg.init_from:
            source = PrefixLM.from_pretrained(None if cfg.init_from == "bundled" else cfg.init_from)
            copy_matching_weights(model, source, what=f"init_from={cfg.init_from!r}")
        self.mcfg = model.config
        self.model = engine.shard(model.to(engine.device), model.layers)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.state = {"model": self.model, "opt": OptimizerOf(self.opt, self.model)}
        self.fwd = torch.compile(self.model) if cfg.compile else self.model
        self._train_records = open_records(cfg.data, cfg)
        self.vocab = self._vocab_of(self._train_records)
        self._eval: list | None = None

    def _vocab_of(self, records) -> Vocab:
        vocab = records.vocab
        if vocab.size != self.mcfg.vocab_size:
            raise ConfigError(
                f"the data's tokenizers make a vocabulary of {vocab.size} ids, preset {self.cfg.preset!r} "
                f"has {self.mcfg.vocab_size}; pick the preset that matches the tokenizers"
            )
        return vocab

    def dataset(self):
        return self._train_records

    @property
    def prepare(self):
        return BuildItem(self.cfg, self.vocab, self.mcfg.text_slots, self.mcfg.text_dim)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_examples(items)

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch_loss(self.fwd, batch, amp=self.engine.amp, factorized_visual=self.mcfg.factorized_visual)

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        lr = self.cfg.lr_at(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        loss = self._loss(batch)
        norm = self.engine.step_optimizer(loss, self.opt)
        task = batch["tasks"][0]
        tokens = int(batch["loss_mask"].sum())
        return {
            "loss": loss.item(),
            f"loss/{task}": loss.item(),
            "task": task,
            "lr": lr,
            "grad_norm": float("nan") if norm is None else norm,
            "padding": float(batch["padding"]),
            "target_tokens": tokens * self.engine.world,  # rows average over ranks: global counts
            "tokens": int(batch["ids"].numel()) * self.engine.world,
        }

    # ------------------------------------------------------------------ held-out loss per task
    def _eval_records(self) -> list:
        if self._eval is None:
            ds = open_records(self.cfg.heldout_spec(), self.cfg, split="heldout")
            self._eval = first_records(ds, self.cfg.eval_items)
        return self._eval

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        """Mean target-token loss per task on the held-out clips (text kept), every rank alike, in
        mini-batches of the per-rank training batch (heldout_items, heldout_loss: as `videopoet eval lm`)."""
        self.model.eval()
        out: dict[str, Any] = {}
        for task in sorted(t for t, w in self.cfg.tasks.items() if w > 0):
            items, _ = heldout_items(task, self._eval_records(), self.vocab, text_slots=self.mcfg.text_slots,
                                     text_dim=self.mcfg.text_dim, seed=self.cfg.seed)  # fmt: skip
            if items:
                loss, _ = heldout_loss(self.fwd, items, batch_size=self.engine.local_batch,
                                       device=self.engine.device, amp=self.engine.amp,
                                       factorized_visual=self.mcfg.factorized_visual)  # fmt: skip
                out[f"val_loss/{task}"] = loss
        return out

    def export(self, folder: Path) -> None:
        """The weights (fp16 component), gathered from every rank's shards."""
        from videopoet.train.checkpoint import module_state

        state = module_state(self.model)  # a collective under FSDP2
        if self.engine.is_main:
            model = PrefixLM(dataclasses.replace(self.mcfg))
            model.load_state_dict(state)
            model.save_pretrained(folder, dtype=torch.float16)


def train(cfg: LMTrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> int:
    engine = Engine(cfg)
    return engine.run(LMRecipe(cfg, engine), resume=resume, overwrite=overwrite, progress=progress)


def main(args) -> int:
    return train_command(args, LMTrainConfig, train, "prefix LM")
