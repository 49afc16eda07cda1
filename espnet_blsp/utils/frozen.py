"""Frozen pretrained parts, and checkpoints that hold (and load) only what trains."""

from pathlib import Path
from typing import Dict, List, Optional, Set, Union

import torch
from typeguard import typechecked


class FrozenModule(torch.nn.Module):
    """A pretrained module whose weights never train and keep their dtype.

    ESPnet's trainer casts the whole model to ``--train_dtype`` (float32 by
    default); a frozen LLM kept in bfloat16 must survive that cast, so device
    moves apply but floating tensors keep the dtype they were loaded in
    (trainable weights added after :meth:`freeze`, such as float32 LoRA
    weights, keep theirs too).
    """

    def freeze(self) -> None:
        """Stop gradients and put the module in eval mode for good."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenModule":
        # Dropout etc. stay off: the frozen model must behave as pretrained.
        return super().train(False)

    def _apply(self, fn, recurse=True):
        def keep_dtype(t: torch.Tensor) -> torch.Tensor:
            out = fn(t)
            return out.to(t.dtype) if t.is_floating_point() else out

        return super()._apply(keep_dtype, recurse)


def frozen_state_dict_hooks(model: torch.nn.Module) -> None:
    """Makes ``model``'s checkpoints hold only what trains.

    A state dict keeps exactly the parameters that require grad (adapters,
    LoRA weights, ...) and the buffers outside frozen parts; frozen weights
    are rebuilt from their pretrained source, so a checkpoint is megabytes
    instead of the LLM's gigabytes per epoch. ``model.load_state_dict`` does
    not report the keys so left out as missing; any other missing or
    unexpected key still fails a strict load. The rule reads the
    ``requires_grad`` flags at each call.
    """

    def drop(module, state_dict, prefix, local_metadata):
        frozen = {prefix + k for k in frozen_keys(module)}
        for key in [k for k in state_dict if k in frozen]:
            del state_dict[key]

    def ignore_missing(module, incompatible_keys):
        # Keys are relative to the module load_state_dict was called on: if
        # that is a parent of ``model``, frozen keys are reported (loudly).
        frozen = frozen_keys(module)
        missing = incompatible_keys.missing_keys
        missing[:] = [k for k in missing if k not in frozen]

    model.register_state_dict_post_hook(drop)
    model.register_load_state_dict_post_hook(ignore_missing)


def frozen_keys(model: torch.nn.Module) -> Set[str]:
    """State-dict keys a checkpoint of ``model`` leaves out: the parameters
    that do not require grad, and the buffers inside frozen parts (modules
    with parameters, none of which trains)."""
    params = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    parts = [n + "." if n else "" for n, m in model.named_modules(remove_duplicate=False) if _is_frozen(m)]
    buffers = {
        n for n, _ in model.named_buffers(remove_duplicate=False)
        if any(n.startswith(part) for part in parts)
    }
    return params | buffers


def _is_frozen(module: torch.nn.Module) -> bool:
    flags = [p.requires_grad for p in module.parameters()]
    return bool(flags) and not any(flags)


@typechecked
def load_trained(
    model: torch.nn.Module, model_file: Union[Path, str], config: Optional[Union[Path, str]] = None
) -> None:
    """Loads a model file written by training into ``model``, strictly.

    ESPnet's ``build_model_from_file`` loads with ``strict=False``, so the
    weights of another config left the model silently untrained. Here the
    file must hold exactly what a checkpoint of ``model`` holds: only frozen
    keys (see :func:`frozen_keys`) may be absent.

    Args:
        model: As built from ``config``, before any ``requires_grad_(False)``:
            the parameters that train tell which keys the file must hold.
        model_file: e.g. ``exp/blsp/valid.loss.ave.pth``.
        config: The config ``model`` was built from, for messages.

    Raises:
        ValueError: Naming the file, when it is not a model of ``config``.
    """
    model_file = Path(model_file)
    state = _read_state_dict(model_file)
    expected = model.state_dict()  # the frozen keys already dropped
    problems = {
        "missing keys": sorted(expected.keys() - state.keys()),
        # Frozen weights in the file (a full model) load as any other.
        "unexpected keys": sorted(state.keys() - expected.keys() - frozen_keys(model)),
        "keys of another shape": [
            f"{k} {_shape(state[k])} (model: {_shape(v)})"
            for k, v in expected.items() if k in state and _shape(state[k]) != _shape(v)
        ],
    }
    if any(problems.values()):
        raise ValueError(
            f"{model_file} is not a model of {config or 'this config'}: "
            + "; ".join(f"{len(keys)} {what} ({_some(keys)})" for what, keys in problems.items() if keys)
            + ("; only the frozen encoder's and LLM's weights may be absent" if problems["missing keys"] else "")
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # e.g. a frozen weight of another shape
        raise ValueError(f"{model_file}: {e}") from e


def _read_state_dict(model_file: Path) -> Dict[str, object]:
    """The state dict in ``model_file``; ValueError naming the file for any other file."""
    with open(model_file, "rb") as f:
        head = f.read(512)
    # torch.save writes a zip archive (a raw pickle before PyTorch 1.6).
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        looks = "it is empty" if not head else "it looks like YAML/text" if b"\0" not in head else "not zip or pickle"
        raise ValueError(
            f"{model_file} is not a PyTorch model file ({looks}); pass --model_file exp/.../valid.loss.ave.pth"
        )
    try:
        # ESPnet's own files are pickled with it (not weights_only).
        state = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{model_file}: cannot read it as a PyTorch model file: {e}") from e
    if isinstance(state, dict) and {"model", "optimizers"} <= state.keys():
        raise ValueError(
            f"{model_file} is ESPnet's trainer checkpoint (model and optimizer states to resume "
            f"training), not a model file; pass e.g. {model_file.parent / 'valid.loss.ave.pth'}"
        )
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{model_file} holds a {type(state).__name__}, not a model's state dict")
    return state


def _shape(value: object) -> str:
    return "x".join(map(str, getattr(value, "shape", ()))) or "scalar"


def _some(keys: List[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")
