# Two commands on a fresh Debian machine with the Rust toolchain:
#   make run    run the gateway on conf/floodgate.yaml
#   make test   run every test (starts real upstreams, redis-server and headless Chromium itself)
CONFIG ?= conf/floodgate.yaml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint build deps test-deps

# Installs the Debian packages named (command:package pairs) whose command is missing.
define need
	@missing=""; \
	for pair in $(1); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

# Pingora's build needs cmake.
deps:
	$(call need,cmake:cmake)

# The tests also start redis-server (single, Cluster, Sentinel, TLS with openssl-made
# certificates) and headless Chromium; benches/load.sh drives wrk.
test-deps:
	$(call need,cmake:cmake redis-server:redis-server redis-cli:redis-tools openssl:openssl wrk:wrk chromium:chromium)

build: deps
	cargo build --release

run: deps
	cargo run --release -- -c $(CONFIG)

test: test-deps
	cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
