"""Helpers for the frozen pretrained parts (speech encoder, LLM)."""

import torch


class FrozenModule(torch.nn.Module):
    """A module whose parameters never train and whose dtype is fixed.

    ESPnet's trainer casts the whole model to ``--train_dtype`` (float32 by
    default); a frozen LLM kept in bfloat16 must survive that cast, so device
    moves apply but floating tensors keep the dtype they were loaded in.
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
    """Keeps frozen submodules out of checkpoints, and out of strict loading.

    Frozen weights are rebuilt from their pretrained source, so a checkpoint
    holds only what trains (the adapter): megabytes instead of the LLM's
    gigabytes per epoch.
    """
    frozen = [n for n, m in model.named_modules() if isinstance(m, FrozenModule)]

    def drop(module, state_dict, prefix, local_metadata):
        for key in [k for k in state_dict if _under(k[len(prefix) :], frozen)]:
            del state_dict[key]

    def ignore_missing(module, incompatible_keys):
        missing = incompatible_keys.missing_keys
        missing[:] = [k for k in missing if not _under(k, frozen)]

    model.register_state_dict_post_hook(drop)
    model.register_load_state_dict_post_hook(ignore_missing)


def _under(key: str, prefixes) -> bool:
    return any(key.startswith(p + ".") for p in prefixes)
