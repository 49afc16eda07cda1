# Where the corpora live. LibriSpeech: https://www.openslr.org/12 — the dir
# holding train-clean-100/, dev-clean/, ... (or the one holding LibriSpeech/).
LIBRISPEECH=${LIBRISPEECH:-downloads}
