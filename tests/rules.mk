# ngx_aigov: the rule-based fallback engine's sources, unit tests and fuzz
# targets (include/aigov_rules.h, ../ngx_aigov_module/aigov_rules.c).
#
# Included from tests/Makefile right after the FUZZERS line: the lists are
# simply expanded (:=), so they must be complete before TEST_BINS,
# FUZZ_BINS and the rules read them.
#
#   include rules.mk
#
# Then make check / asan / valgrind / fuzz cover it with everything else;
# one target alone:
#   make -C tests run-test_rules run-asan-test_rules
#   make -C tests run-valgrind-test_rules
#   make -C tests run-fuzz_rules_load FUZZ_SECONDS=60
#   make -C tests run-fuzz_rules_eval FUZZ_SECONDS=60
#
# fuzz_rules_load loads arbitrary bytes as a rules file and evaluates what
# loads; fuzz_rules_eval evaluates a fixed rule set against arbitrary
# bodies and attribute bytes.  Seeds: fuzz/corpus/fuzz_rules_{load,eval}/.

ifneq ($(TEST_BINS),)
$(error rules.mk: include it right after the FUZZERS line of tests/Makefile)
endif

# libc (regcomp/regexec) and jansson only, like the rest of the core
CORE_SRCS  += $(MODDIR)/aigov_rules.c

TESTS      += test_rules

FUZZERS    += fuzz_rules_load fuzz_rules_eval
