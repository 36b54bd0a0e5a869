# peermesh — everyday commands. `make run` starts the local 3-node mesh, `make test` runs every test.
CARGO ?= cargo

.PHONY: build run test bench lint clean deb

build:
	$(CARGO) build --release

run: build
	CARGO="$(CARGO)" ./scripts/local-mesh.sh

# Examples and the tools (peermesh-tools: loadgen, relay, flood) are built as programs first:
# tests/embed.rs runs examples/embed, and the process tests run the tools beside peermesh.
test:
	$(CARGO) build --workspace --bins --examples
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --doc

# The Debian package of the release build (with dpkg-deb): the binary, the systemd unit, an
# example /etc/peermesh/peers.ron, man pages and completions. Prints the .deb's path.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
deb: build
	./scripts/build-deb.sh --binary $(TARGET_DIR)/release/peermesh --out $(TARGET_DIR)/debian

# Every benchmark, one at a time, and a summary table (root; QUICK=1 for a smoke run).
bench:
	./bench/all.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
