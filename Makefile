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
# Data-parallel training under mpirun (src/train/dist.c, docs/SCALING.md): Debian's OpenMPI when
# its headers are installed; MVMOE_MPI=0 builds without MPI (then one process only).
MVMOE_MPI ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MVMOE_MPI),1)
MPI_CFLAGS := -DMVMOE_MPI=1 $(shell pkg-config --cflags ompi-c)
LDLIBS  += $(shell pkg-config --libs ompi-c)
else
MPI_CFLAGS := -DMVMOE_MPI=0
endif

# src/runtime is its own product (make runtime), not part of libmvmoe
LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/runtime/*' | sort)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(shell find tests -name 'test_*.c' -not -path 'tests/runtime/*' | sort)
# ONNX export: C code for the ONNX schema, generated from the vendored third_party/onnx/onnx.proto
# (why vendored: third_party/onnx/README.md) by Debian's protoc-c, serialized with libprotobuf-c.
GEN      := $(BUILD)/gen
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(GEN)/onnx.pb-c.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:%.c=$(BUILD)/%)

.PHONY: all bench test test-c test-parity test-e2e setup clean runtime
all: $(BUILD)/mvmoe $(TEST_BIN) $(TOOL_BIN) $(BUILD)/bench/peak runtime

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

# only the MPI module sees mpi.h
$(BUILD)/src/train/dist.o $(BUILD)/pic/src/train/dist.o: CFLAGS += $(MPI_CFLAGS)

# the exporter includes the generated header
$(BUILD)/src/io/onnx_export.o: CFLAGS += -I$(GEN)
$(BUILD)/src/io/onnx_export.o $(BUILD)/src/io/onnx_graph.o: $(GEN)/onnx.pb-c.h
$(BUILD)/src/io/onnx_graph.o: CFLAGS += -I$(GEN)

# ---------------------------------------------------------------- the runtime (issue 17)
# The dependency-free inference runtime (src/runtime, include/mvmoe_run.h) and its program
# build/mvmoe-run: portable flags (no -march: the x86 kernels pick their instructions at run
# time by target attributes), C17 + libm + OpenMP, none of the library's dependencies
# (`ldd build/mvmoe-run`: libc, libm, libgomp). Its test links only libmvmoe_run.a.
RT_SRC    := $(sort $(wildcard src/runtime/*.c))
RUN_SRC   := $(sort $(wildcard cli/run/*.c))
# -fno-trapping-math: no program here reads floating-point exception flags, and it lets the
# clamps of exp/erf (rt_ops.c) if-convert so those loops vectorize; it changes no value.
RT_CFLAGS := -O2 -g -std=c17 -D_GNU_SOURCE -Wall -Wextra -fno-trapping-math -fopenmp -Iinclude -Isrc -MMD -MP
RT_OBJ    := $(RT_SRC:%.c=$(BUILD)/%.o)
RUN_OBJ   := $(RUN_SRC:%.c=$(BUILD)/%.o)
RT_TEST_BIN := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/runtime/test_*.c))
runtime: $(BUILD)/mvmoe-run $(BUILD)/libmvmoe_run.a $(RT_TEST_BIN)

$(RT_OBJ) $(RUN_OBJ): $(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -c -o $@ $<

$(BUILD)/libmvmoe_run.a: $(RT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/mvmoe-run: $(RUN_OBJ) $(BUILD)/libmvmoe_run.a
	$(CC) -fopenmp -o $@ $(RUN_OBJ) $(BUILD)/libmvmoe_run.a -lm

$(RT_TEST_BIN): $(BUILD)/tests/runtime/%: tests/runtime/%.c $(BUILD)/libmvmoe_run.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Itests -o $@ $< $(BUILD)/libmvmoe_run.a -lm

# Benchmarks: the machine's FP32/bandwidth peak tool and `mvmoe bench` (bench/compare.sh
# runs them against PyTorch and ONNX Runtime).
bench: $(BUILD)/mvmoe $(BUILD)/bench/peak

$(BUILD)/bench/peak: bench/peak.c $(BUILD)/libmvmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmvmoe.a $(LDLIBS)

# make bench-xnnpack: XNNPACK's fully-connected operators against the runtime's kernels
# (bench/xnnpack_fc.c, docs/EDGE.md "XNNPACK measurement"). A bench-only dependency (Debian's
# libxnnpack-dev and libpthreadpool-dev, not in scripts/setup.sh): built only where its headers
# are installed, and by no other target.
XNN_HDRS := $(wildcard /usr/include/xnnpack.h /usr/include/pthreadpool.h)
.PHONY: bench-xnnpack
ifeq ($(words $(XNN_HDRS)),2)
bench-xnnpack: $(BUILD)/bench/xnnpack_fc
else
bench-xnnpack:
	@echo "bench-xnnpack: skipped: xnnpack.h or pthreadpool.h is missing (apt-get install libxnnpack-dev libpthreadpool-dev)"
endif

$(BUILD)/bench/xnnpack_fc: bench/xnnpack_fc.c $(BUILD)/libmvmoe_run.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -o $@ $< $(BUILD)/libmvmoe_run.a -lXNNPACK -lpthreadpool -lm

# Default suite: C unit tests, PyTorch parity, end-to-end training on real data, and the
# installed products (shared library, Python binding, man page: `lib` below).
test: all lib
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
# the runtime's harness: the runtime's sources alone (it links nothing of libmvmoe), fuzz flags
$(BUILD)/fuzz/fuzz_runtime: fuzz/fuzz_runtime.c $(RT_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) -Wno-pass-failed $(LDFLAGS) -o $@ $< $(RT_SRC) -lm
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

# ---------------------------------------------------------------- arm64 (issue 17)
# make runtime-aarch64: the runtime (src/runtime, cli/run) cross-built for arm64 Linux with
# Debian's gcc-aarch64-linux-gnu into $(BUILD)/aarch64/: mvmoe-run and the kernel tests, which
# tests/runtime/test_aarch64.sh runs under qemu-aarch64-static (docs/EDGE.md, "arm64").
# Static: qemu then needs no arm64 sysroot, and the one file runs on any arm64 Linux.
# Built for plain armv8-a: the SDOT kernels carry their own target attribute and are chosen at
# run time (src/runtime/rt_kernels_neon.c). OpenMP (the runtime's threads) is GCC's static
# libgomp: the link prints one warning, that libgomp's OpenACC plugin loader calls dlopen,
# which a static binary could not serve; OpenMP on the CPU never calls it.
RT_SRC     ?= $(sort $(wildcard src/runtime/*.c))
RUN_SRC    ?= $(sort $(wildcard cli/run/*.c))
A64_CC     ?= aarch64-linux-gnu-gcc
A64        := $(BUILD)/aarch64
A64_OMP    ?= -fopenmp
# the x86 runtime's flags (RT_CFLAGS: portable, no -march), so that both builds round alike
A64_CFLAGS ?= $(if $(RT_CFLAGS),$(RT_CFLAGS),-O2 -std=c17 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Isrc -MMD -MP)
A64_LDFLAGS ?= -static
A64_RT_OBJ  = $(RT_SRC:%.c=$(A64)/obj/%.o)
A64_RUN_OBJ = $(RUN_SRC:%.c=$(A64)/obj/%.o)
# tests/runtime/rt_neon_check.c is not named test_*.c: the native suite must not run it (on x86
# it can only skip); test_rt_kernels.c, when present, is the native test built again for arm64
A64_TESTS   = $(A64)/tests/runtime/rt_neon_check \
              $(if $(wildcard tests/runtime/test_rt_kernels.c),$(A64)/tests/runtime/test_rt_kernels)

.PHONY: runtime-aarch64
runtime-aarch64: $(A64_TESTS) $(if $(RUN_SRC),$(A64)/mvmoe-run)

$(A64)/mvmoe-run: $(A64_RT_OBJ) $(A64_RUN_OBJ)
	$(A64_CC) $(A64_LDFLAGS) $(A64_OMP) -o $@ $^ -lm

$(A64)/tests/runtime/%: tests/runtime/%.c $(A64_RT_OBJ)
	@mkdir -p $(dir $@)
	$(A64_CC) $(A64_CFLAGS) $(A64_OMP) -Itests $(A64_LDFLAGS) -o $@ $< $(A64_RT_OBJ) -lm

$(A64)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(A64_CC) $(A64_CFLAGS) $(A64_OMP) -c -o $@ $<

# ---------------------------------------------------------------- installable library
# (issue 18: the installed products; docs/ARCHITECTURE.md, "Installed products")
#   make lib                      build/libmvmoe.so (+ .so.MAJOR -> .so.MAJOR.MINOR.PATCH), the
#                                 static archive and the man page build/man/mvmoe.1
#   make install [PREFIX=/usr/local] [DESTDIR=]   program, libraries, header, mvmoe.pc, man
#                                 page, bash completion and the Python package (PYTHONDIR)
#   make uninstall [PREFIX=...] [DESTDIR=]        removes exactly what install wrote
# The shared library is built from the same sources compiled again with -fPIC into
# $(BUILD)/pic/, so the program and the tests keep their position-dependent objects; it
# exports only the functions declared in include/mvmoe.h (a version script made from it).
# The version has one source, the MVMOE_VERSION_* macros of the header.
PYTHON   ?= python3
version_part = $(shell sed -n 's/^\#define MVMOE_VERSION_$(1) *\([0-9][0-9]*\) *$$/\1/p' include/mvmoe.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION       := $(VERSION_MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SONAME   := libmvmoe.so.$(VERSION_MAJOR)
SHLIB    := $(BUILD)/libmvmoe.so.$(VERSION)
PIC_OBJ  := $(LIB_SRC:%.c=$(BUILD)/pic/%.o) $(BUILD)/pic/gen/onnx.pb-c.o
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR   ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# Debian's path for Python packages of every Python 3 version (in sys.path for PREFIX=/usr;
# for another prefix, add it to PYTHONPATH or set PYTHONDIR to a folder in sys.path)
PYTHONDIR ?= $(PREFIX)/lib/python3/dist-packages
PY_SRC   := $(wildcard python/mvmoe/*.py)

.PHONY: lib install uninstall
lib: $(BUILD)/libmvmoe.so $(BUILD)/libmvmoe.a $(BUILD)/man/mvmoe.1

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -c -o $@ $<

# the ONNX schema's generated code and the files that include it (see the rules above)
$(BUILD)/pic/gen/onnx.pb-c.o: $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(GEN) -fPIC -c -o $@ $<
$(BUILD)/pic/src/io/onnx_export.o $(BUILD)/pic/src/io/onnx_graph.o: CFLAGS += -I$(GEN)
$(BUILD)/pic/src/io/onnx_export.o $(BUILD)/pic/src/io/onnx_graph.o: $(GEN)/onnx.pb-c.h

# every mvmoe_* function the public header declares (comments stripped first), nothing else
$(BUILD)/libmvmoe.map: include/mvmoe.h
	@mkdir -p $(dir $@)
	{ echo '{ global:'; $(CC) -fpreprocessed -dD -E -P $< | grep -o 'mvmoe_[a-z0-9_]*[[:space:]]*(' \
	  | sed 's/[[:space:](]//g; s/.*/    &;/' | sort -u; echo '  local: *; };'; } > $@.tmp && mv $@.tmp $@

$(SHLIB): $(PIC_OBJ) $(BUILD)/libmvmoe.map
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(SONAME) -Wl,--version-script,$(BUILD)/libmvmoe.map \
	  -Wl,-z,defs -o $@ $(PIC_OBJ) $(LDLIBS)

$(BUILD)/libmvmoe.so: $(SHLIB)
	ln -sf $(notdir $(SHLIB)) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

# the man page is made from the program's --help texts, so it says what the program does
$(BUILD)/man/mvmoe.1: $(BUILD)/mvmoe scripts/gen_man.py
	@mkdir -p $(dir $@)
	$(PYTHON) scripts/gen_man.py $(BUILD)/mvmoe > $@.tmp && mv $@.tmp $@

install: lib $(BUILD)/mvmoe
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) \
	  $(DESTDIR)$(PYTHONDIR)/mvmoe
	install -m 755 $(BUILD)/mvmoe $(DESTDIR)$(BINDIR)/mvmoe
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmvmoe.so
	install -m 644 $(BUILD)/libmvmoe.a $(DESTDIR)$(LIBDIR)/libmvmoe.a
	install -m 644 include/mvmoe.h $(DESTDIR)$(INCLUDEDIR)/mvmoe.h
	{ echo 'prefix=$(PREFIX)'; echo 'libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))'; \
	  echo 'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))'; echo; \
	  echo 'Name: mvmoe'; \
	  echo 'Description: train, evaluate and run Mobile V-MoE vision transformers on the CPU'; \
	  echo 'Version: $(VERSION)'; echo 'Cflags: -I$${includedir}'; \
	  echo 'Libs: -L$${libdir} -lmvmoe'; echo 'Libs.private: $(strip $(LDFLAGS) $(LDLIBS))'; \
	} > $(DESTDIR)$(PKGCONFIGDIR)/mvmoe.pc
	install -m 644 $(BUILD)/man/mvmoe.1 $(DESTDIR)$(MANDIR)/man1/mvmoe.1
	install -m 644 completions/mvmoe.bash $(DESTDIR)$(BASHCOMPDIR)/mvmoe
	install -m 644 $(PY_SRC) $(DESTDIR)$(PYTHONDIR)/mvmoe/
	echo "LIBRARY = '$$(realpath -m -s --relative-to=$(PYTHONDIR)/mvmoe $(LIBDIR)/$(SONAME))'" \
	  > $(DESTDIR)$(PYTHONDIR)/mvmoe/_installed.py

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/mvmoe $(DESTDIR)$(LIBDIR)/libmvmoe.so.$(VERSION) \
	  $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libmvmoe.so $(DESTDIR)$(LIBDIR)/libmvmoe.a \
	  $(DESTDIR)$(INCLUDEDIR)/mvmoe.h $(DESTDIR)$(PKGCONFIGDIR)/mvmoe.pc \
	  $(DESTDIR)$(MANDIR)/man1/mvmoe.1 $(DESTDIR)$(BASHCOMPDIR)/mvmoe \
	  $(addprefix $(DESTDIR)$(PYTHONDIR)/mvmoe/,$(notdir $(PY_SRC)) _installed.py)
	rm -rf $(DESTDIR)$(PYTHONDIR)/mvmoe/__pycache__
	rmdir $(DESTDIR)$(PYTHONDIR)/mvmoe 2>/dev/null || true
# ---------------------------------------------------------------- end of installable library

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
