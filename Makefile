# `make test` and `make demo` each create or refresh .venv, install the
# package with its dev extras, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export TF_CPP_MIN_LOG_LEVEL ?= 1

.PHONY: test demo bench models lint data clean core-check extras-check docs

# pip compiles every installed module to bytecode one file after another
# (about 40 s of TensorFlow, JAX and the rest on 2 cores); compileall does
# the same on every core (about 20 s).
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib
	touch $(STAMP)

# Debian's Fashion-MNIST files, the offline real data set (needs root + apt).
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	fi

test: $(STAMP) data
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=15

# The reference pages generated from the code (docs/cli.md); the test suite
# checks them (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/python docs/generate.py

# The main job: train ResNet-20, In-ResNet-20 and lambda-In-ResNet-20 on real
# Fashion-MNIST (offline), then evaluate them side by side: clean accuracy and
# the noise group on 500 test images; FGSM, PGD-20 and AutoAttack at 2/255 and
# 8/255 with a worst case over the attacks, and FGSM and PGD under the
# authors' two evaluation protocols (README, Evaluate), on the first 200 of
# them. About 15 minutes on 2 CPU cores (README, Demo), so AutoAttack runs
# with a reduced, stated budget (the standard one: `--apgd-steps 100
# --target-classes 9 --square-queries 5000`, the defaults of `keras-damped
# evaluate`). A finished
# model is reused (--resume); the evaluation is redone.
DEMO_MODELS := resnet20 in_resnet20 lambda_in_resnet20
DEMO_TRAIN := --dataset fashion_mnist --epochs 3 --train-limit 10000 --test-limit 2000 \
	--batch-size 128 --seed 0 --verbose 2
DEMO_EVAL := --dataset fashion_mnist --attacks fgsm,pgd,autoattack --eps 2,8 \
	--apgd-steps 20 --target-classes 3 --square-queries 200 \
	--noises gaussian,shot,impulse,speckle --severities 1-5 --test-limit 500 \
	--attack-limit 200 --eval-batch-size 200 \
	--protocols pixel,authors-2020-06,authors-2020-08 --protocol-attacks fgsm,pgd
# The same models in the L2 ball: PGD and AutoAttack (the same reduced,
# labelled budget) at CIFAR-10's standard radius 0.5.
DEMO_EVAL_L2 := --dataset fashion_mnist --norm l2 --attacks pgd,autoattack --eps 0.5 \
	--apgd-steps 20 --target-classes 3 --square-queries 200 --noises none \
	--test-limit 500 --attack-limit 200 --eval-batch-size 200

demo: $(STAMP) data
	@start=$$(date +%s); \
	for model in $(DEMO_MODELS); do \
		echo "== training $$model"; \
		$(BIN)/keras-damped train --model $$model $(DEMO_TRAIN) \
			--out runs/demo/$$model --resume || exit 1; \
	done; \
	echo "== evaluating"; \
	$(BIN)/keras-damped evaluate $(DEMO_EVAL) --out runs/demo/eval --overwrite \
		$(foreach m,$(DEMO_MODELS),--model runs/demo/$(m)/model.keras) || exit 1; \
	echo "== evaluating in the L2 ball"; \
	$(BIN)/keras-damped evaluate $(DEMO_EVAL_L2) --out runs/demo/eval-l2 --overwrite \
		$(foreach m,$(DEMO_MODELS),--model runs/demo/$(m)/model.keras) || exit 1; \
	echo "Demo finished in $$(( $$(date +%s) - start )) s."; \
	echo "Open the logs:  tensorboard --logdir runs/demo"; \
	echo "Report:         runs/demo/eval/report.md, plots in runs/demo/eval/plots/"; \
	echo "L2:             runs/demo/eval-l2/report.md"

# The CPU benchmarks with their default settings, one after the other
# (the sum of their times in docs/performance.md, about 70 minutes on 2
# cores; the total was not measured); results in benchmarks/results/*.{json,md}.
BENCHMARKS := throughput speedups damping_overhead attack_speed precision_check \
	frameworks study_jobs

bench: $(STAMP) data
	@for b in $(BENCHMARKS); do \
		echo "== $$b"; \
		$(BIN)/python benchmarks/$$b.py || exit 1; \
	done

# The light core install in a fresh virtual environment: Keras, NumPy and
# JAX only; DampedResNet(depth=20) builds and runs with KERAS_BACKEND=jax.
# These throwaway environments run one short script each, so nothing is
# compiled to bytecode ahead (--no-compile) beyond what that script imports.
CORE_VENV := .venv-core
core-check:
	rm -rf $(CORE_VENV)
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CORE_VENV)/bin/python -m pip install --quiet --no-compile . 'jax[cpu]'
	KERAS_BACKEND=jax $(CORE_VENV)/bin/python .ci/core_only.py

# Each extra alone in a fresh virtual environment: its part imports, and
# nothing from another extra is needed (`.ci/extra_alone.py`).
EXTRAS := train robustness analysis study
extras-check:
	@for extra in $(EXTRAS); do \
		rm -rf .venv-$$extra; \
		$(PYTHON) -m venv .venv-$$extra || exit 1; \
		.venv-$$extra/bin/python -m pip install --quiet --upgrade pip || exit 1; \
		.venv-$$extra/bin/python -m pip install --quiet --no-compile ".[$$extra]" || exit 1; \
		TF_CPP_MIN_LOG_LEVEL=2 .venv-$$extra/bin/python .ci/extra_alone.py $$extra || exit 1; \
		rm -rf .venv-$$extra; \
	done

models: $(STAMP)
	$(BIN)/keras-damped models

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(CORE_VENV) $(EXTRAS:%=.venv-%) build *.egg-info .pytest_cache .ruff_cache
