# hearth - build, test and clean. `make` builds ./run and ./export and the
# small model the repo ships; `make test` builds and runs every test.

CC ?= cc
OPT ?= -O2 -g
CFLAGS += $(OPT) -std=c11 -Wall -Wextra -D_GNU_SOURCE -pthread
LDLIBS += -lm -lpthread
BUILD ?= build

ENGINE_SRC := model.c tokenizer.c unicode.c quant.c sampler.c threads.c json.c chat.c stop.c $(wildcard kernels/*.c)
EXPORT_SRC := $(filter-out exporter/export.c,$(wildcard exporter/*.c))
TEST_SRC := $(wildcard tests/*.c)

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
EXPORT_OBJ := $(EXPORT_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
HEADERS := $(wildcard *.h exporter/*.h tests/*.h kernels/*.h)

DEFAULT_MODEL := models/stories260K.hearth

.PHONY: all test clean sanitize bench unicode-tables
all: run export $(DEFAULT_MODEL)

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

run: $(BUILD)/run.o $(BUILD)/bench.o $(ENGINE_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

export: $(BUILD)/exporter/export.o $(EXPORT_OBJ) $(BUILD)/quant.o $(BUILD)/kernels/pack.o \
		$(BUILD)/tokenizer.o $(BUILD)/unicode.o $(BUILD)/json.o $(BUILD)/chat.o
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Every build exercises export: the shipped model is converted here.
$(DEFAULT_MODEL): export models/stories260K.bin models/tok512.bin
	./export models/stories260K.bin --tokenizer models/tok512.bin -o $@

tests/runner: $(TEST_OBJ) $(ENGINE_OBJ) $(EXPORT_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

test: all tests/runner
	./tests/runner

# The AVX-512 kernels checked in emulation on CPUs without AVX-512
# (tests/emulated/README.md); part of `make test`.
-include tests/emulated/emulated.mk

# Benchmarks (not tests): bandwidth, kernels and decode on a Llama-3.2-1B-
# shaped model with random weights. Record the figures in docs/KERNELS.md.
bench: run
	./run bench

# The whole suite under AddressSanitizer and UBSan, in a separate build.
sanitize:
	$(MAKE) clean
	$(MAKE) test OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined"
	$(MAKE) clean

clean:
	rm -rf $(BUILD) run export tests/runner $(DEFAULT_MODEL)

# Regenerates the Unicode tables from the Debian unicode-data package
# (apt-get install unicode-data); the generated headers are committed.
unicode-tables:
	@mkdir -p $(BUILD)
	$(CC) -O2 -std=c11 -Wall -Wextra -o $(BUILD)/gen_unicode tools/gen_unicode.c
	$(BUILD)/gen_unicode /usr/share/unicode/UnicodeData.txt /usr/share/unicode/PropList.txt > unicode_tables.h
	$(BUILD)/gen_unicode --nfc /usr/share/unicode/UnicodeData.txt \
		/usr/share/unicode/CompositionExclusions.txt \
		/usr/share/unicode/DerivedNormalizationProps.txt > unicode_nfc_tables.h
