# Two commands on a fresh Debian machine with the Rust toolchain:
#   make run    run the gateway on conf/floodgate.yaml
#   make test   run every test (starts real upstreams and redis-server itself)
CONFIG ?= conf/floodgate.yaml
APT_PACKAGES := cmake redis-server wrk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint deps build

# Install what Pingora's build and the tests need, only when something is missing.
deps:
	@missing=""; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	cargo build --release

run: deps
	cargo run --release -- -c $(CONFIG)

test: deps
	cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
