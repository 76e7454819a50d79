"""Loading user-supplied safetensors weights into the standard-metric networks, with clear errors.

No pretrained I3D / CLIP / InceptionV3 / C3D / VGGish weights ship with the project and nothing is
downloaded: a user converts the public weights they have to safetensors with the key names documented at
the top of each network file (they follow the most common PyTorch ports, so a conversion is usually
``safetensors.torch.save_file(torch_state_dict, "x.safetensors")``) and passes the file here.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from videopoet.errors import UserError

# Buffers that some exporters drop and that never affect inference.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def _preview(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    network: str,
    ignore_prefixes: tuple[str, ...] = (),
    doc: str = "",
) -> nn.Module:
    """Load ``path`` (safetensors) into ``model`` strictly; returns the model in eval mode.

    Keys starting with any of ``ignore_prefixes`` are dropped first (e.g. InceptionV3's ``AuxLogits.``).
    Missing, unexpected or wrongly-shaped tensors raise one ``UserError`` naming a few of each.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{network} weights {str(path)!r} not found; pass a local .safetensors file")
    if path.suffix != ".safetensors":
        raise UserError(f"{network} weights must be a .safetensors file (never pickles), got {path.name!r}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{network} weights {str(path)!r} are not a readable safetensors file: {e}") from None
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIXES))
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)}≠{tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_preview(unexpected)})")
        if mismatched:
            parts.append(f"{len(mismatched)} with other shapes ({_preview(mismatched)})")
        hint = f"; expected key names: {doc}" if doc else ""
        raise UserError(f"{network} weights {path.name!r} do not fit the network: {'; '.join(parts)}{hint}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    return model.eval()
