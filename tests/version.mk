# ngx_aigov: client versions, version ranges and JSON response adaptation
# (include/aigov_version.h, ../ngx_aigov_module/aigov_version.c).
#
# Included from tests/Makefile right after the FUZZERS line: the lists are
# simply expanded (:=), so they must be complete before TEST_BINS,
# FUZZ_BINS and the rules read them.
#
#   include version.mk
#
#   make -C tests run-test_version run-asan-test_version
#   make -C tests run-valgrind-test_version
#   make -C tests run-fuzz_version FUZZ_SECONDS=60
#   make -C tests run-fuzz_version_adapt FUZZ_SECONDS=60
#
# fuzz_version parses arbitrary versions and ranges and checks the order
# and the matching; fuzz_version_adapt parses an operation and applies it
# to an arbitrary body.  Seeds: fuzz/corpus/fuzz_version{,_adapt}/.

ifneq ($(TEST_BINS),)
$(error version.mk: include it right after the FUZZERS line of tests/Makefile)
endif

# libc and jansson only, like the rest of the core
CORE_SRCS  += $(MODDIR)/aigov_version.c

TESTS      += test_version

FUZZERS    += fuzz_version fuzz_version_adapt
