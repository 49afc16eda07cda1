"""Frozen pretrained parts, and checkpoints that hold only what trains."""

from typing import Set

import torch


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
