# ngx_aigov: build the dynamic module for Debian's nginx (nginx-dev), out of
# tree, and run the tests.
#
#   make                      build/ngx_http_aigov_module.so
#   make NGINX_SRC=/path      against another nginx source tree
#   make unit                 C unit tests (tests/)
#   make test                 everything: unit tests + integration (t/)
#   make static               nginx with the module built in (build/static)

SHELL        := /bin/bash
NGINX_SRC    ?= /usr/share/nginx/src
BUILD        ?= $(CURDIR)/build
SRC_COPY      = $(BUILD)/nginx-src
OBJS          = $(BUILD)/objs
MODULE        = $(BUILD)/ngx_http_aigov_module.so
CC_OPT       ?= -g -O2 -fPIC -fstack-protector-strong -D_FORTIFY_SOURCE=2
LD_OPT       ?= -fPIC -Wl,-z,relro -Wl,-z,now
# our own files: every warning, as errors (nginx adds -W -Wall -Werror too)
AIGOV_WARN    = -Wall -Wextra -Werror -Wno-unused-parameter

SOURCES := config $(wildcard include/*.h ngx_aigov_module/*.[ch] plugins/*.[ch])

.PHONY: all module unit test static clean distclean

all: module

module: $(MODULE)

$(OBJS)/Makefile: config plugins/ngx_aigov_plugins.h
	@test -x $(NGINX_SRC)/configure -o -f $(NGINX_SRC)/auto/configure || { \
	    echo "no nginx source tree at $(NGINX_SRC): apt-get install nginx-dev," \
	         "or make NGINX_SRC=/path/to/nginx"; exit 1; }
	rm -rf $(SRC_COPY) && mkdir -p $(BUILD) && cp -a $(NGINX_SRC) $(SRC_COPY)
	cd $(SRC_COPY) && \
	    flags=""; \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	        flags="$${NGX_CONF_FLAGS[*]}"; else flags="--with-compat"; fi; \
	    conf=./configure; [ -x $$conf ] || conf="sh auto/configure"; \
	    $$conf --with-cc-opt="$(CC_OPT) $(AIGOV_WARN)" \
	        --with-ld-opt="$(LD_OPT)" $$flags \
	        --add-dynamic-module=$(CURDIR) --builddir=$(OBJS) \
	        > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(OBJS)/Makefile $(SOURCES)
	cd $(SRC_COPY) && $(MAKE) -f $(OBJS)/Makefile modules
	@# never overwrite the file in place: a running nginx maps it
	cp $(OBJS)/ngx_http_aigov_module.so $(MODULE).tmp
	mv -f $(MODULE).tmp $(MODULE)
	@echo "built $(MODULE)"

unit:
	$(MAKE) -C tests

test: module
	./t/run-all

static:
	@test -f $(NGINX_SRC)/src/core/nginx.c || { \
	    echo "make static needs a full nginx source tree (nginx-dev has" \
	         "headers only): make static NGINX_SRC=/path/to/nginx"; exit 1; }
	rm -rf $(BUILD)/static-src && mkdir -p $(BUILD) && \
	    cp -a $(NGINX_SRC) $(BUILD)/static-src
	cd $(BUILD)/static-src && \
	    conf=./configure; [ -x $$conf ] || conf="sh auto/configure"; \
	    $$conf --with-cc-opt="-O2 $(AIGOV_WARN)" --with-threads \
	        --prefix=$(BUILD)/static --builddir=$(BUILD)/static-objs \
	        --without-http_gzip_module \
	        --add-module=$(CURDIR) > $(BUILD)/static-configure.log 2>&1 \
	    || { tail -20 $(BUILD)/static-configure.log; exit 1; }
	cd $(BUILD)/static-src && $(MAKE) -f $(BUILD)/static-objs/Makefile
	@echo "built $(BUILD)/static-objs/nginx"

clean:
	rm -rf $(BUILD)
	-$(MAKE) -C tests clean
