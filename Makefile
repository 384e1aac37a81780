# mvmoe build. `make` builds build/mvmoe; `make test` runs the whole default suite;
# `make setup` installs the Debian packages (idempotent, needs root or sudo).
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O3 -march=x86-64-v3 -mtune=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -ffp-contract=fast \
           -fopenmp -Iinclude -Isrc -I/usr/include/cjson -MMD -MP
# GEMM: oneDNN (its OpenMP build), chosen by measurement over OpenBLAS, BLIS and LIBXSMM
# (docs/PERFORMANCE.md, src/kernels/matmul.c). LAPACK (the spectral clustering's eigensolver):
# OpenBLAS's OpenMP build, by explicit path, independent of the system's BLAS alternative.
BLAS_DIR = /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  += -ldnnl $(BLAS_DIR)/libopenblas.so.0 -Wl,-rpath,$(BLAS_DIR) -lcjson -lmetis -lpng -ljpeg -lz \
           -lprotobuf-c -lm
LDFLAGS += -fopenmp

LIB_SRC  := $(shell find src -name '*.c' | sort)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(shell find tests -name 'test_*.c' | sort)
# ONNX export: C code for the ONNX schema, generated from the vendored third_party/onnx/onnx.proto
# (why vendored: third_party/onnx/README.md) by Debian's protoc-c, serialized with libprotobuf-c.
GEN      := $(BUILD)/gen
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(GEN)/onnx.pb-c.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:%.c=$(BUILD)/%)

.PHONY: all bench test test-c test-parity test-e2e setup clean
all: $(BUILD)/mvmoe $(TEST_BIN) $(TOOL_BIN) $(BUILD)/bench/peak

# rebuilt from scratch: `ar r` into an old archive would keep objects of renamed sources
$(BUILD)/libmvmoe.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/mvmoe: $(CLI_OBJ) $(BUILD)/libmvmoe.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmvmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(BUILD)/libmvmoe.a $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h &: third_party/onnx/onnx.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=third_party/onnx --c_out=$(GEN) third_party/onnx/onnx.proto

$(GEN)/onnx.pb-c.o: $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h
	$(CC) $(CFLAGS) -I$(GEN) -c -o $@ $<

# the exporter includes the generated header
$(BUILD)/src/io/onnx_export.o: CFLAGS += -I$(GEN)
$(BUILD)/src/io/onnx_export.o $(BUILD)/src/io/onnx_graph.o: $(GEN)/onnx.pb-c.h
$(BUILD)/src/io/onnx_graph.o: CFLAGS += -I$(GEN)

# Benchmarks: the machine's FP32/bandwidth peak tool and `mvmoe bench` (bench/compare.sh
# runs them against PyTorch and ONNX Runtime).
bench: $(BUILD)/mvmoe $(BUILD)/bench/peak

$(BUILD)/bench/peak: bench/peak.c $(BUILD)/libmvmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmvmoe.a $(LDLIBS)

# Default suite: C unit tests, PyTorch parity, end-to-end training on real data.
test: all
	bash tests/run_all.sh $(BUILD)

setup:
	bash scripts/setup.sh

clean:
	rm -rf $(BUILD)

# Reliability (docs/RELIABILITY.md). Each builds into its own folder with the same sources:
#   make fuzz [FUZZ_SECONDS=60]  libFuzzer harnesses fuzz/fuzz_*.c (clang, ASan + UBSan), each run
#                                FUZZ_SECONDS on its seed corpus; crashes land in build-fuzz/artifacts
#   make asan-test               the default suite on an ASan + UBSan build (build-asan/)
#   make valgrind-test           checkpoint and data tests + a tiny train/eval under valgrind
#   make kill-resume-test        SIGKILL at random moments, --resume, weights bit-identical
#   make sigterm-test            SIGTERM at random moments: exit 130 + checkpoint, no heap abort
# Flags go in through the environment so that the CFLAGS/LDFLAGS += above still apply.
FUZZ_SECONDS ?= 60
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
.PHONY: fuzz fuzz-build fuzz-harnesses asan-test valgrind-test kill-resume-test sigterm-test
fuzz-build:
	CC=clang CFLAGS="-O1 -g -march=x86-64-v3 -fsanitize=fuzzer-no-link $(SAN_FLAGS)" \
	  LDFLAGS="-fsanitize=fuzzer $(SAN_FLAGS)" $(MAKE) BUILD=build-fuzz fuzz-harnesses
fuzz-harnesses: $(patsubst %.c,$(BUILD)/%,$(wildcard fuzz/fuzz_*.c))
$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz_util.h $(BUILD)/libmvmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmvmoe.a $(LDLIBS)
fuzz: fuzz-build
	bash fuzz/run.sh build-fuzz $(FUZZ_SECONDS)
asan-test:
	CFLAGS="-O1 -g -march=x86-64-v3 $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" $(MAKE) BUILD=build-asan all
	bash tests/sanitize/asan_test.sh build-asan
valgrind-test: all
	bash tests/sanitize/valgrind_test.sh $(BUILD)
kill-resume-test: $(BUILD)/mvmoe
	bash tests/long/kill_resume.sh $(BUILD)
sigterm-test: $(BUILD)/mvmoe
	bash tests/long/sigterm_loop.sh $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
