# The two commands of the README.
.PHONY: demo test install

install:
	bash tools/install.sh

# Main job: the offline demo recipe with real small models (issue: embedded default).
demo: install
	cd egs2/mini_librispeech_synth/blsp && ./run.sh

# Unit tests and the end-to-end recipe test with tiny random models.
test: install
	PYTHONPATH=$(CURDIR) tools/venv/bin/python -m pytest -q tests $(PYTEST_ARGS)
