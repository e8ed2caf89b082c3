# Thin wrapper: meson builds, scripts/ installs, tests/ runs. Every target installs what it needs first.
BUILD ?= build
ASAN  ?= build-asan
FUZZ  ?= build-fuzz
PY    := /usr/bin/python3

.PHONY: all deps build asan fuzz-build test unit valgrind demo bench fuzz image clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN)/build.ninja:
	meson setup $(ASAN) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

asan: deps $(ASAN)/build.ninja
	ninja -C $(ASAN)

$(FUZZ)/build.ninja:
	CC=clang meson setup $(FUZZ) -Dfuzz=true

fuzz-build: deps $(FUZZ)/build.ninja
	ninja -C $(FUZZ)

# Every suite: the fuzz targets replay their seed corpora, then the unit suites run plain and under
# ASan+UBSan, then the integration suites against real Prometheus and a real gRPC client (test_image.py
# builds the image with scripts/image.sh and runs it with podman).
# Ends with one line `N passed, N failed`.
test: build asan fuzz-build
	meson test -C $(FUZZ) --suite fuzz --print-errorlogs
	bash tests/run_tests.sh $(BUILD) $(ASAN)

unit: build
	bash tests/run_tests.sh --unit-only $(BUILD)

# The unit suites under valgrind's memcheck (about 10 minutes on 2 cores): errors and definite leaks fail.
valgrind: build
	MESON_TESTTHREADS=$${MESON_TESTTHREADS:-2} meson test -C $(BUILD) --setup valgrind --suite unit --print-errorlogs

# The main job on one machine: Prometheus with an hour of periodic history, prescale, and a KEDA-like
# client printing observed load, prescale's prediction and the replicas each approach asks for.
demo: build
	$(PY) scripts/demo.py --prescale $(BUILD)/src/prescale

bench: build
	bash tests/bench/run.sh $(BUILD)

# Each fuzz target for FUZZ_SECONDS (default 30) from its seed corpus.
fuzz: fuzz-build
	bash tests/fuzz/run.sh $(FUZZ)

# The container image prescale:latest and prescale:<version> with podman (scripts/image.sh says how, and
# what this host needs): the Debian base images are made with mmdebstrap unless local storage has them
# (PRESCALE_IMAGE_PULL=1 pulls them instead).
image: deps
	bash scripts/image.sh

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
