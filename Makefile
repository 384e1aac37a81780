# mvmoe build. `make` builds build/mvmoe; `make test` runs the whole default suite;
# `make setup` installs the Debian packages (idempotent, needs root or sudo).
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O3 -march=x86-64-v3 -mtune=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -ffp-contract=fast \
           -fopenmp -Iinclude -Isrc -I/usr/include/cjson -MMD -MP
# OpenBLAS, OpenMP build, by explicit path: chosen by measurement (docs/PERFORMANCE.md), and
# independent of which BLAS the system alternatives point at.
BLAS_DIR = /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  += $(BLAS_DIR)/libopenblas.so.0 -Wl,-rpath,$(BLAS_DIR) -lcjson -lpng -ljpeg -lz -lm
LDFLAGS += -fopenmp

LIB_SRC  := $(shell find src -name '*.c' | sort)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(shell find tests -name 'test_*.c' | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:%.c=$(BUILD)/%)

.PHONY: all test test-c test-parity test-e2e setup clean
all: $(BUILD)/mvmoe $(TEST_BIN) $(TOOL_BIN)

$(BUILD)/libmvmoe.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/mvmoe: $(CLI_OBJ) $(BUILD)/libmvmoe.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmvmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(BUILD)/libmvmoe.a $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Default suite: C unit tests, PyTorch parity, end-to-end training on real data.
test: all
	bash tests/run_all.sh $(BUILD)

setup:
	bash scripts/setup.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
