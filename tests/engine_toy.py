"""A toy recipe on the training engine with FSDP2 sharding, run by tests/test_train_engine.py under torchrun.

python -m torch.distributed.run --standalone --nproc_per_node 2 tests/engine_toy.py OUT_DIR [--resume]
"""

import sys
from dataclasses import dataclass

import torch
from torch import nn

from videopoet.train.loop import Engine, OptimizerOf, Recipe, TrainConfig


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        return x + self.ff(self.norm(x))


class Toy(nn.Module):
    def __init__(self, dim: int = 16, depth: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))
        self.head = nn.Linear(dim, 1)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x).squeeze(-1)


class Points(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.randn(16, generator=g)


@dataclass(kw_only=True)
class ToyConfig(TrainConfig):
    pass


class ToyRecipe(Recipe):
    def __init__(self, cfg: ToyConfig, engine: Engine):
        self.engine = engine
        model = Toy().to(engine.device)
        self.model = engine.shard(model, model.blocks)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr)
        self.state = {"model": self.model, "opt": OptimizerOf(self.opt, self.model)}

    def dataset(self):
        return Points()

    def prepare(self, sample, position):
        return sample

    def train_step(self, x, step):
        target = x.sin().sum(-1)
        loss = (self.model(x) - target).pow(2).mean()
        norm = self.engine.step_optimizer(loss, self.opt)
        return {"loss": loss.item(), "grad_norm": norm}

    def export(self, folder):
        from videopoet.train.checkpoint import module_state

        state = module_state(self.model)  # a collective: every rank joins
        if self.engine.is_main:
            from safetensors.torch import save_file

            folder.mkdir(parents=True, exist_ok=True)
            save_file(state, str(folder / "model.safetensors"))


def main(argv: list[str]) -> int:
    out, *flags = argv
    sets = dict(f.split("=", 1) for f in flags if "=" in f)
    cfg = ToyConfig(
        out_dir=out,
        batch_size=8,
        max_steps=int(sets.get("max_steps", 6)),
        stop_after_steps=int(sets.get("stop_after_steps", 0)),
        num_workers=0,
        warmup_steps=1,
        lr=1e-2,
        precision="fp32",
        device="cpu",
        ckpt_every=2,
    )
    engine = Engine(cfg)
    return engine.run(ToyRecipe(cfg, engine), resume="--resume" in flags, progress=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
