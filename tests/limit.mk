# ngx_aigov: rate-limit math (../ngx_aigov_module/aigov_limit.c).
#
# Included by tests/Makefile right after its FUZZERS line (before the
# variables and rules derived from TESTS / CORE_SRCS / FUZZERS):
#
#   include limit.mk
#
#   make -C tests run-test_limit             unit tests
#   make -C tests run-asan-test_limit        ASan + UBSan
#   make -C tests run-valgrind-test_limit
#   make -C tests run-fuzz_limit_spec FUZZ_SECONDS=60
#   make -C tests run-fuzz_limit_sse FUZZ_SECONDS=60
#   make -C tests run-fuzz_limit_usage FUZZ_SECONDS=60

CORE_SRCS  += $(MODDIR)/aigov_limit.c

TESTS      += test_limit

FUZZERS    += fuzz_limit_spec fuzz_limit_sse fuzz_limit_usage
