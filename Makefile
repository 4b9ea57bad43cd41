# kseg developer targets. `make install` creates .venv; the others use it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-fast lint demo bench clean

$(BIN)/kseg: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/kseg

install: $(BIN)/kseg

# Every test, the slow-marked end-to-end ones included (about an hour on 2 cores).
test: install
	$(BIN)/python -m pytest -q tests

# The default suite without the slow-marked tests, for quick checks while developing.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: install
	$(BIN)/ruff check kseg cli tests benchmarks

# The embedded demo: synthetic scenes -> train FCN-8s (VGG16 with batch norm, from random
# weights) on the CPU -> evaluate, with a contact sheet -> predict -> TFLite export checked
# against Keras. Everything lands in $(DEMO)/. docs/training-from-scratch.md has the recipe.
DEMO ?= demo
DEMO_EPOCHS ?= 12
demo: install
	rm -rf $(DEMO)/run $(DEMO)/predictions
	$(BIN)/kseg data synth $(DEMO)/data --num-train 3000 --num-val 500 --force
	$(BIN)/kseg train --model fcn8s_vgg16bn --data synthetic --data-dir $(DEMO)/data --weights none \
		--width 0.125 --epochs $(DEMO_EPOCHS) --batch-size 16 --scale 1,1 --optimizer adam --lr 4e-3 \
		--dropout 0 --learn-upsampling --run-dir $(DEMO)/run --quiet
	$(BIN)/kseg evaluate $(DEMO)/run --data synthetic --data-dir $(DEMO)/data --split val \
		--out $(DEMO)/metrics.json --sheet $(DEMO)/sheet.png
	$(BIN)/kseg predict "$(DEMO)/data/images/val/0000*.png" --model $(DEMO)/run --out $(DEMO)/predictions
	$(BIN)/kseg export $(DEMO)/run --format tflite --out $(DEMO)/model.tflite --force --check
	@$(BIN)/python -c "import json, sys; m = json.load(open('$(DEMO)/metrics.json')); \
		m['at_chance_level'] and sys.exit('demo failed: validation mIoU %.3f is chance level ' \
		'(one class everywhere scores %.3f)' % (m['mean_iou'], m['chance_mean_iou']))"
	@echo
	@echo "demo finished: run $(DEMO)/run, metrics $(DEMO)/metrics.json, contact sheet $(DEMO)/sheet.png"
	@echo "(image | ground truth | prediction), predictions (labels, colour maps, overlays, legend.png)"
	@echo "$(DEMO)/predictions, TFLite $(DEMO)/model.tflite"
	@$(BIN)/python -c "import json; m = json.load(open('$(DEMO)/metrics.json')); print('validation mIoU: %.3f' % m['mean_iou'])"

# Speed and memory figures against references measured in the same run (see
# docs/performance.md), each report headed by the CPU and its instruction sets; about 30
# minutes on 2 cores, not part of `make test`. The bf16 agreement check needs a trained
# CamVid run: AGREEMENT_MODEL=runs/camvid-fcn8s make bench. The mobile models are timed
# against torchvision's LR-ASPP from TORCH_PYTHON, a Python with torch and torchvision
# (`pip install torch==2.14.1 torchvision==0.29.1`; left out with one line without them).
BENCH ?= bench
CAMVID_DIR ?= ../shared/data/camvid
AGREEMENT_MODEL ?=
TORCH_PYTHON ?= $(BIN)/python
MOBILE_MODELS ?= fcn8s,fcn8s_mobilenetv3large,lraspp_mobilenetv3large,lraspp_mobilenetv3small
bench: install
	$(BIN)/python benchmarks/bench_performance.py --profile --out $(BENCH)/performance.json \
		$(if $(AGREEMENT_MODEL),--agreement-model $(AGREEMENT_MODEL) --camvid $(CAMVID_DIR))
	$(BIN)/python benchmarks/bench_mobile.py --models $(MOBILE_MODELS) --repeats 5 \
		--torch-python $(TORCH_PYTHON) --out $(BENCH)/mobile.json
	@if [ -d "$(CAMVID_DIR)" ]; then \
		$(BIN)/python benchmarks/bench_pipeline.py --data-dir $(CAMVID_DIR) --out $(BENCH)/pipeline.json; \
	else echo "skipping the input-pipeline benchmark: no CamVid at $(CAMVID_DIR) (set CAMVID_DIR)"; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
