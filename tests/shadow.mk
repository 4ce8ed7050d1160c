# ngx_aigov: shadow traffic helpers (../ngx_aigov_module/aigov_shadow.c):
# the HTTP/1.x response reader, JSON paths and JSON agreement.
#
# Included by tests/Makefile right after its FUZZERS line:
#
#   include shadow.mk
#
#   make -C tests run-test_shadow              unit tests
#   make -C tests run-asan-test_shadow         ASan + UBSan
#   make -C tests run-valgrind-test_shadow
#   make -C tests run-fuzz_shadow_http FUZZ_SECONDS=60
#   make -C tests run-fuzz_shadow_jpath FUZZ_SECONDS=60

CORE_SRCS  += $(MODDIR)/aigov_shadow.c

TESTS      += test_shadow

FUZZERS    += fuzz_shadow_http fuzz_shadow_jpath
