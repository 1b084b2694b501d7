# tests/emulated/emulated.mk - `make test-emulated` (and so `make test`):
# kernels/avx512.c compiled on emulated intrinsics (SIMDe plus
# tests/emulated/avx512_shim.h) and checked by the kernels_tests and
# gemm_tests suites against the scalar kernels, on any x86-64 CPU;
# tests/emulated/README.md says what this can and cannot check. Included
# by the Makefile, whose CC, CFLAGS, LDFLAGS, LDLIBS and BUILD it uses;
# objects go to $(BUILD)/emulated/. It runs on CPUs with AVX-512 too (see
# the README). It does not touch the engine's objects or binaries.

EMU_DIR := $(BUILD)/emulated
EMU_HEADERS := $(wildcard *.h kernels/*.h tests/*.h tests/emulated/*.h)

# The kernels and gemm suites with the emulated avx512.o in place of the
# real one.
EMU_SRC := tests/runner.c tests/test_kernels.c tests/test_gemm.c tests/kernel_tables.c quant.c \
	$(filter-out kernels/avx512.c,$(wildcard kernels/*.c))
EMU_OBJ := $(EMU_SRC:%.c=$(EMU_DIR)/%.o) $(EMU_DIR)/kernels/avx512.o

# For the two objects that include the shim: -ffp-contract=off so that the
# compiler fuses nothing the instructions would round separately;
# -Wno-psabi because SIMDe passes 64-byte vectors by value without
# AVX-512 enabled (static inline functions, so no ABI is involved).
EMU_SHIM_FLAGS := -ffp-contract=off -Wno-psabi

# A clear message, not a compile error, when SIMDe is missing.
define EMU_NEED_SIMDE
	@printf '#include <simde/x86/avx512.h>\n' | \
		$(CC) $(CFLAGS) -Wno-psabi -fsyntax-only -x c - 2>/dev/null || { \
		echo "tests/emulated (part of make test) needs the SIMDe headers (simde/x86/avx512.h)," >&2; \
		echo "which $(CC) cannot find. Install them: apt-get install libsimde-dev" >&2; \
		exit 1; }
endef

.PHONY: test-emulated
test: test-emulated

# Off x86-64, kernels/avx512.c compiles to an empty table (its code sits
# under #if defined(__x86_64__)), so there is nothing to check there.
EMU_MACHINE := $(shell $(CC) -dumpmachine)
ifeq ($(filter x86_64%,$(EMU_MACHINE)),)
test-emulated:
	@echo "tests/emulated: not run: $(CC) targets $(EMU_MACHINE), and kernels/avx512.c has no kernels off x86-64"
else
test-emulated: $(EMU_DIR)/shim_check $(EMU_DIR)/runner
	@echo "== tests/emulated: avx512 kernels on emulated intrinsics vs scalar"
	$(EMU_DIR)/shim_check
	$(EMU_DIR)/runner
endif

$(EMU_DIR)/runner: $(EMU_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(EMU_DIR)/shim_check: tests/emulated/shim_check.c $(EMU_HEADERS)
	$(EMU_NEED_SIMDE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EMU_SHIM_FLAGS) $(LDFLAGS) $< $(LDLIBS) -o $@

$(EMU_DIR)/kernels/avx512.o: kernels/avx512.c $(EMU_HEADERS)
	$(EMU_NEED_SIMDE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EMU_SHIM_FLAGS) -DHEARTH_EMULATE_AVX512 -c $< -o $@

# kernel_tables.c: the define makes simd_tables hand the suites the avx512
# table on any CPU.
$(EMU_DIR)/tests/kernel_tables.o: tests/kernel_tables.c $(EMU_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DHEARTH_EMULATE_AVX512 -c $< -o $@

$(EMU_DIR)/%.o: %.c $(EMU_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
