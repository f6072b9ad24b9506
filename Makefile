# coffre — the commands operators and developers use. CMake does the building
# (CMakePresets.json: debug, release, asan-ubsan, fuzz); this file wraps it.

LISTEN ?= 127.0.0.1:8443
DATA ?= var/coffre
FUZZ_SECONDS ?= 300
SOAK_FUZZ_SECONDS ?= 1800
SOAK_CRASH_CYCLES ?= 500
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test bench lint format fuzz soak clean help

all: build

help:
	@echo "make run      install what is missing, build, start a development server on https://$(LISTEN)"
	@echo "make test     install what is missing, build (with sanitizers too), run every test"
	@echo "make build    release binaries: build/release/coffred and build/release/coffre"
	@echo "make bench    run every benchmark (make bench BENCH=name runs one)"
	@echo "make lint     clang-format check, banned functions, clang-tidy, cppcheck"
	@echo "make format   reformat the sources with clang-format"
	@echo "make fuzz     run every fuzz target for FUZZ_SECONDS (default $(FUZZ_SECONDS))"
	@echo "make soak     long fuzzing campaigns and SOAK_CRASH_CYCLES store crash cycles"
	@echo "make clean    remove build/"

deps:
	@scripts/deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j$(JOBS)

run: build
	@mkdir -p $(dir $(DATA))
	exec build/release/coffred --dev --data $(DATA) --listen $(LISTEN)

test: deps
	@tests/run-all.sh

bench: build
	@scripts/bench.sh $(BENCH)

lint: deps
	@cmake --preset debug >/dev/null
	@scripts/lint.sh

format:
	@clang-format -i $$(git ls-files -co --exclude-standard -- 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c')

fuzz: deps
	@cmake --preset fuzz >/dev/null && cmake --build --preset fuzz -j$(JOBS)
	@scripts/fuzz.sh $(FUZZ_SECONDS)

soak: deps
	@cmake --preset fuzz >/dev/null && cmake --build --preset fuzz -j$(JOBS)
	@scripts/fuzz.sh $(SOAK_FUZZ_SECONDS)
	@cmake --preset debug >/dev/null && cmake --build --preset debug -j$(JOBS)
	@bash -c 'eval "$$(tests/pg.sh start)"; trap "tests/pg.sh stop $$COFFRE_TEST_PG_DIR" EXIT; \
		CRASH_CYCLES=$(SOAK_CRASH_CYCLES) tests/integration/t_crash.sh'

clean:
	rm -rf build
