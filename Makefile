# Two commands on a fresh Debian machine with the Rust toolchain:
#   make run    run the gateway on conf/floodgate.yaml
#   make test   run every test (starts real upstreams, redis-server and headless Chromium itself)
CONFIG ?= conf/floodgate.yaml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint build deps test-deps

# Installs the Debian packages named (command:package pairs) whose command is missing
# (looked for in /usr/sbin too, where haproxy lives, off a user's PATH).
define need
	@missing=""; \
	for pair in $(1); do \
	  command -v "$${pair%%:*}" >/dev/null || [ -x "/usr/sbin/$${pair%%:*}" ] || missing="$$missing $${pair##*:}"; \
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
# certificates) and headless Chromium; benches/load.sh drives wrk. The fleet's files in
# docker/ are checked with promtool, haproxy -c, and two Python tools in a virtualenv under
# target/tools: kubernetes-validate (it carries the Kubernetes schemas) and check-jsonschema
# (the compose spec).
TOOLS := $(CURDIR)/target/tools
test-deps:
	$(call need,cmake:cmake curl:curl redis-server:redis-server redis-cli:redis-tools openssl:openssl wrk:wrk chromium:chromium promtool:prometheus haproxy:haproxy python3:python3)
	@python3 -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	@[ -x $(TOOLS)/bin/kubernetes-validate ] && [ -x $(TOOLS)/bin/check-jsonschema ] || { \
	  echo "installing kubernetes-validate and check-jsonschema into $(TOOLS)"; \
	  python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q kubernetes-validate==1.37.0 check-jsonschema==0.39.0; }

build: deps
	cargo build --release

run: deps
	cargo run --release -- -c $(CONFIG)

test: test-deps
	FLOODGATE_TOOLS=$(TOOLS)/bin cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
