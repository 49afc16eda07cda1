# The synthesized corpus (made by local/data.sh, LibriSpeech layout).
LIBRISPEECH=${LIBRISPEECH:-downloads/synth_librispeech}
