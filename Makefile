# Build, test, demo and benchmark for pg-client.
#   make        builds lua/pg/core.so
#   make test   installs what is missing, starts throwaway servers, runs specs
#   make demo   the same servers, then examples/ssl.lua
#   make bench  installs what is missing (bench/bootstrap.sh), builds, and
#               times pg-client against LuaSQL and libpq (bench/run.sh)

PKGS    ?= gnutls lua5.4
CC      ?= gcc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs gnutls 2>/dev/null)

SRCS = csrc/buffer.c csrc/protocol.c csrc/auth.c csrc/tls.c \
       csrc/socket.c csrc/conn.c csrc/binding.c csrc/binding_values.c
OBJS = $(SRCS:csrc/%.c=build/%.o)
HDRS = $(wildcard csrc/*.h)

MODULE = lua/pg/core.so

.PHONY: all test demo clean bench

all: $(MODULE)

build/%.o: csrc/%.c $(HDRS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -std=gnu99 -fPIC $(PKG_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
	$(CC) -shared -o $@ $(OBJS) $(PKG_LIBS)

test:
	bash scripts/run-tests.sh

demo:
	bash scripts/demo.sh

# The bootstrap comes first, so that the build finds the packages it adds.
bench:
	bash bench/bootstrap.sh
	$(MAKE) all
	bash bench/run.sh

clean:
	rm -rf build $(MODULE)
