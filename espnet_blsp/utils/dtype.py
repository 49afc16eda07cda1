"""The compute dtype of frozen weights, chosen for the hardware."""

import torch


def native_bf16() -> bool:
    """Whether this device computes bfloat16 matmuls natively.

    CPUs without AVX512-BF16 or AMX emulate them: on an AVX2-only EPYC a bf16
    matmul ran at 0.0003 TFLOP/s against 0.13 in float32 (440x slower), where
    a CPU with AMX ran bf16 ~2x faster than float32.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch._C._cpu
    return cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()


def resolve_dtype(name: str) -> torch.dtype:
    """A torch dtype from its name; "auto" is bfloat16 where the hardware
    computes it natively, else float32."""
    if name == "auto":
        return torch.bfloat16 if native_bf16() else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} (auto, float32, bfloat16, float16)")
    return dtype
