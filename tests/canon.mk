# ngx_aigov: canonical JSON for cache keys (include/aigov_canon.h,
# ../ngx_aigov_module/aigov_canon.c).
#
# Included by tests/Makefile right after its FUZZERS line (before the
# variables and rules derived from TESTS / CORE_SRCS / FUZZERS):
#
#   include canon.mk
#
#   make -C tests run-test_canon             unit tests
#   make -C tests run-asan-test_canon        ASan + UBSan
#   make -C tests run-valgrind-test_canon
#   make -C tests run-fuzz_canon FUZZ_SECONDS=60

ifneq ($(TEST_BINS),)
$(error canon.mk: include it right after the FUZZERS line of tests/Makefile)
endif

# libc only
CORE_SRCS  += $(MODDIR)/aigov_canon.c

TESTS      += test_canon

FUZZERS    += fuzz_canon
