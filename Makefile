# Two commands for a fresh machine: `make quickstart` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: venv fairseq-venv ray onnx test quickstart bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

# Optional extras (issue 18): Ray for `xling mine-corpus --engine ray` (tests/mining/test_mine_pipeline.py runs
# it on a local Ray instance) and py3langid for its language-ID filter; `make test` installs them.
$(VENV)/.installed-ray: pyproject.toml constraints.txt $(VENV)/.installed
	$(PIP) -e ".[dev,ray,langid]"
	touch $@

ray: $(VENV)/.installed-ray

# The onnx extra (issue 16 part 4): onnx + onnxruntime for `xling export onnx` and exported encoders as
# --model (tests/export/test_onnx_export.py runs them: parity with PyTorch, int8); `make test` installs it.
$(VENV)/.installed-onnx: pyproject.toml constraints.txt $(VENV)/.installed
	$(PIP) -e ".[dev,onnx]"
	touch $@

onnx: $(VENV)/.installed-onnx

test: venv fairseq-venv ray onnx
	$(BIN)/python -m pytest tests

# The fairseq side venv (issue 15): the real fairseq, for the converters' parity tests and for
# serving converted models with fairseq-generate. xling never imports fairseq: this is a SEPARATE
# venv outside the clone, $(FAIRSEQ_VENV), built once per machine (about 2.5 minutes on 2 cores,
# most of it compiling fairseq); the stamp makes a second `make fairseq-venv` instant.
# `scripts/fairseq_env.sh` prints its python. Recipe: shared/REFERENCE.md section 3, plus:
#  - PIP_CONSTRAINT (a file holding torch==2.13.0, written to $(XLING_CACHE)) keeps every install
#    on the CPU torch; torch goes in first, from local disk where the machine has the wheel.
#    The last step checks that torch has no CUDA and that no nvidia-* package came in.
#  - fairseq-fixed goes in with --no-deps (its torchaudio requirement is a CUDA wheel that text
#    does not need), so its other requirements are listed here. The sheet's list lacks
#    sacrebleu (`import fairseq` fails without it: fairseq.scoring imports it) and packaging.
#  - fairseq's tools need TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (checkpoints hold an
#    argparse.Namespace, which torch >= 2.6 refuses by default).
XLING_CACHE ?= $(HOME)/.cache/xling
FAIRSEQ_VENV ?= $(XLING_CACHE)/fairseq-venv
FAIRSEQ_STAMP := $(FAIRSEQ_VENV)/.built-fairseq-fixed-0.12.3.1-torch-2.13.0
LASER_STAMP := $(FAIRSEQ_VENV)/.built-laser-encoders-0.0.2
FAIRSEQ_PIP = PIP_CONSTRAINT=$(XLING_CACHE)/fairseq-constraints.txt $(FAIRSEQ_VENV)/bin/pip install -q

fairseq-venv: $(FAIRSEQ_STAMP) $(LASER_STAMP)

$(FAIRSEQ_STAMP):
	mkdir -p $(XLING_CACHE)
	echo "torch==2.13.0" > $(XLING_CACHE)/fairseq-constraints.txt
	$(PY) -m venv --clear $(FAIRSEQ_VENV)
	$(FAIRSEQ_PIP) --upgrade pip
	$(FAIRSEQ_PIP) torch==2.13.0
	$(FAIRSEQ_PIP) hydra-core==1.3.2 omegaconf==2.3.0 cffi cython bitarray regex tqdm \
	  scikit-learn sentencepiece numpy sacrebleu packaging
	$(FAIRSEQ_PIP) --no-deps --no-build-isolation fairseq-fixed==0.12.3.1
	! $(FAIRSEQ_VENV)/bin/pip list 2>/dev/null | grep -i '^nvidia-'
	TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 $(FAIRSEQ_VENV)/bin/fairseq-generate --help > /dev/null
	$(FAIRSEQ_VENV)/bin/python -c "import fairseq, torch; assert torch.version.cuda is None, torch.__version__; \
	  print('fairseq', fairseq.__version__, 'torch', torch.__version__)" > $@.tmp
	mv $@.tmp $@

# laser_encoders 0.0.2 (LASER2 / LASER3 reference for tests/convert/test_laser_reference.py), added to the
# fairseq side venv as its own step with its own stamp, so a venv built before this step gets it without a
# rebuild. --no-deps: its fairseq>=0.12.2 requirement is met by fairseq-fixed (pip cannot see that); its
# light requirements are listed (sacremoses pinned as it pins, requests for its download module). Same
# PIP_CONSTRAINT: torch stays 2.13.0 (CPU).
$(LASER_STAMP): $(FAIRSEQ_STAMP)
	$(FAIRSEQ_PIP) sacremoses==0.1.0 unicategories requests
	$(FAIRSEQ_PIP) --no-deps laser_encoders==0.0.2
	! $(FAIRSEQ_VENV)/bin/pip list 2>/dev/null | grep -i '^nvidia-'
	$(FAIRSEQ_VENV)/bin/python -c "import laser_encoders, sacremoses, torch; assert torch.version.cuda is None; \
	  from laser_encoders.models import LaserLstmEncoder, LaserTransformerEncoder; print('laser_encoders 0.0.2')" > $@.tmp
	mv $@.tmp $@

quickstart: venv
	$(BIN)/python scripts/quickstart.py --out runs/quickstart

bench: venv
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info
