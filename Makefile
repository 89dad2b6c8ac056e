# workerd — the two commands a new user needs are `make run` and `make test`.
# Every target installs the Debian packages it needs when they are missing (apt-get; sudo
# when not root), configures with CMake and builds. Nothing is downloaded otherwise.

BUILD_DIR      ?= build
ASAN_BUILD_DIR ?= build-asan
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS   ?= 30
BUILD_TYPE     ?= RelWithDebInfo
JOBS           ?= $(shell nproc)
SPEC           ?= config/workerd.yaml

# Build: compiler, CMake, and the libraries the user asked for.
BUILD_PACKAGES := g++ cmake ninja-build make pkg-config \
  libboost-dev libboost-system-dev libboost-filesystem-dev \
  libyaml-cpp-dev libspdlog-dev libfmt-dev prometheus-cpp-dev doctest-dev \
  nlohmann-json3-dev libcli11-dev
# Tests: the real apps the end-to-end tests run (uvicorn + FastAPI on Debian's python3, gunicorn
# forking its own workers, a Node server), wrk for load, setpriv (util-linux) to run workerctl
# as another user, chromium (headless) to render the HTML reports a person looks at, shellcheck
# for the shell scripts.
TEST_PACKAGES  := python3 python3-uvicorn python3-fastapi gunicorn wrk util-linux prometheus systemd chromium \
  $(PACKAGE_PACKAGES) python3-yaml bash-completion man-db lintian shellcheck
# The Debian package: CPack's DEB generator takes dependencies from dpkg-shlibdeps (dpkg-dev)
# and needs file; gzip compresses man pages and docs.
PACKAGE_PACKAGES := dpkg-dev file gzip
# Fuzzing: clang with libFuzzer (its runtime is in libclang-rt-14-dev).
FUZZ_PACKAGES := clang libclang-rt-14-dev
# Benchmarks: the load generator and the peers workerd is compared with.
BENCH_PACKAGES := wrk nginx-light gunicorn curl procps python3 python3-uvicorn python3-fastapi iproute2 strace

# Warnings are errors in CI.
ifneq ($(CI),)
  CMAKE_FLAGS += -DWORKERD_WERROR=ON
endif

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# install-packages PACKAGES: installs those that are missing, silently when none is.
define install-packages
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

.PHONY: all deps test-deps bench-deps package-deps fuzz-deps fuzz build run test test-sanitize soak sim bench check package clean

all: build

deps:
	$(call install-packages,$(BUILD_PACKAGES))

test-deps: deps
	$(call install-packages,$(TEST_PACKAGES))
	$(if $(shell command -v node),,$(call install-packages,nodejs))

bench-deps: deps
	$(call install-packages,$(BENCH_PACKAGES))

package-deps: deps
	$(call install-packages,$(PACKAGE_PACKAGES))

fuzz-deps: deps
	$(call install-packages,$(FUZZ_PACKAGES))

$(BUILD_DIR)/build.ninja: | deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD_DIR)/build.ninja
	@cmake --build $(BUILD_DIR) -j $(JOBS) -- --quiet

## make run: the bundled worker serving config/public on 127.0.0.1:8000, in the foreground.
## As root (a fresh container, say) the workers run as root too: --allow-root says so on purpose.
run: build
	exec $(BUILD_DIR)/bin/workerd start $$([ "$$(id -u)" -eq 0 ] && echo --allow-root) $(SPEC)

check: build
	$(BUILD_DIR)/bin/workerd check $(SPEC)

## make test: the whole suite through ctest; non-zero exit on any failure.
test: test-deps build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 300 -j $(JOBS)

## make test-sanitize: the whole suite (daemon, bundled worker and tests instrumented) under AddressSanitizer + UBSan.
test-sanitize: test-deps
	@[ -f $(ASAN_BUILD_DIR)/build.ninja ] || cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja \
	  -DCMAKE_BUILD_TYPE=Debug -DWORKERD_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD_DIR) -j $(JOBS) -- --quiet
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=64 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure --timeout 600 -j $(JOBS)

## make fuzz: the libFuzzer targets (spec, worker protocol, control protocol, HTTP requests), built with clang
## under ASan + UBSan and run for FUZZ_SECONDS each; a finding fails the run and its input is
## kept in $(FUZZ_BUILD_DIR)/tests/fuzz/fuzz-artifacts/.
fuzz: fuzz-deps
	@[ -f $(FUZZ_BUILD_DIR)/build.ninja ] || CXX=clang++ cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWORKERD_FUZZ=ON $(CMAKE_FLAGS) >/dev/null
	@cmake $(FUZZ_BUILD_DIR) -DWORKERD_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) -- --quiet
	cd $(FUZZ_BUILD_DIR) && UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -L fuzz

## make soak: the reliability suite's long versions (20 s of chaos, 1000 restarts, a 60 s crash loop).
## make sim: the fleet core's deterministic simulator (tests/sim), 200 seeds of simulated faults
## (about a minute). `make sim SEED=N` replays seed N exactly and prints its last events.
sim: build
	$(BUILD_DIR)/tests/workerd-sim $(if $(SEED),--seed $(SEED) --trace 200,)

soak: test-deps build
	cd $(BUILD_DIR) && WORKERD_SOAK=1 ctest --output-on-failure --timeout 900 -R reliability

## make bench: side-by-side benchmarks (workerd vs nginx, gunicorn, uvicorn; tests/bench/all.sh,
## about 45 minutes); prints ratios and rewrites docs/benchmarks.md with them.
bench: bench-deps build
	WORKERD=$(CURDIR)/$(BUILD_DIR)/bin/workerd tests/bench/all.sh $(CURDIR)/$(BUILD_DIR)/bench-results docs/benchmarks.md

## make package: the Debian package, build/packages/workerd_VERSION-1_ARCH.deb (CPack).
package: package-deps build
	cd $(BUILD_DIR) && cpack -G DEB -B packages
	@ls $(BUILD_DIR)/packages/*.deb

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(FUZZ_BUILD_DIR)
