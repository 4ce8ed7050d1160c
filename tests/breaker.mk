# ngx_aigov: the circuit breaker's sources, unit tests and fuzz target
# (include/aigov_breaker.h, ../ngx_aigov_module/aigov_breaker.c).
#
# Included from tests/Makefile right after the FUZZERS line: the lists are
# simply expanded (:=), so they must be complete before TEST_BINS,
# FUZZ_BINS and the rules read them.
#
#   include breaker.mk
#
# Then make check / asan / valgrind / fuzz cover it with everything else;
# one target alone:
#   make -C tests run-test_breaker run-asan-test_breaker
#   make -C tests run-valgrind-test_breaker
#   make -C tests run-fuzz_breaker FUZZ_SECONDS=60
#
# fuzz_breaker has two modes (first byte even: the state machine driven by
# random events and clock steps against a shadow model; odd: the failure
# condition parser); its seeds are in fuzz/corpus/fuzz_breaker/.

CORE_SRCS  += $(MODDIR)/aigov_breaker.c

TESTS      += test_breaker

FUZZERS    += fuzz_breaker
