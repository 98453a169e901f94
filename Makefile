# CareSync — the two commands that matter:
#   make run    install deps, build, serve on http://127.0.0.1:8080 (data in ./var)
#   make test   install deps, build with ASan+UBSan, run every test (CTest)
.PHONY: deps build run cluster test bench fuzz clean

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc)

deps:
	@scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCARESYNC_TESTS=OFF >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# A fresh instance gets a synthetic year of surveillance data (flagged as
# such everywhere), so the dashboard is alive at once; DEMO=0 skips it.
DEMO ?= 1
run: build
	@if [ "$(DEMO)" = 1 ]; then ./$(BUILD)/caresync demo-data --data-dir var --if-empty; fi
	./$(BUILD)/caresync serve --data-dir var

# Three ledger nodes on loopback (issue 15; docs/OPERATIONS.md): web ports
# 8101-8103, data in var/cluster/nodeN. Ctrl-C stops them.
cluster: build
	CARESYNC_BIN=$(BUILD)/caresync scripts/cluster.sh var/cluster

# clang for the test build: ASan+UBSan and libFuzzer from one compiler. The
# unit tests are also built and run with the default compiler (gcc, what
# `make run` uses), whose warnings differ from clang's, in $(GCC_TEST_BUILD).
GCC_TEST_BUILD ?= build-gcc
test: build
	scripts/style-check.sh
	cmake -S . -B $(GCC_TEST_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCARESYNC_TESTS=ON >/dev/null
	cmake --build $(GCC_TEST_BUILD) -j$(JOBS)
	cd $(GCC_TEST_BUILD) && ctest --output-on-failure -j$(JOBS) -R '^unit_'
	CC=clang cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCARESYNC_SANITIZE=ON -DCARESYNC_FUZZ=ON >/dev/null
	cmake --build $(TEST_BUILD) -j$(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS)

# Longer runs of every fuzz target, continuing the corpus the test build keeps
# (tests/CMakeLists.txt, fuzz_target).
FUZZ_TARGETS = fuzz_json:corpus fuzz_url:corpus_url fuzz_ledger_tx:corpus_ledger fuzz_vision:corpus_vision \
               fuzz_surveil_csv:corpus_surveil fuzz_anon_rows:corpus_anon fuzz_nn_tfjs:corpus_nn_tfjs fuzz_nn_model:corpus_nn_model
fuzz: test
	@for t in $(FUZZ_TARGETS); do n=$${t%%:*}; c=$${t#*:}; \
	  echo "== $$n"; \
	  $(TEST_BUILD)/tests/$$n -max_total_time=$${FUZZ_SECONDS:-300} \
	    $(TEST_BUILD)/fuzz-corpus-$$n tests/fuzz/$$c || exit 1; done

bench:
	@scripts/deps.sh bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCARESYNC_TESTS=OFF >/dev/null
	cmake --build build-bench -j$(JOBS)
	CARESYNC_BIN=$(CURDIR)/build-bench/caresync bench/http/run.sh
	./build-bench/write_bench --bin $(CURDIR)/build-bench/caresync --conns 1024
	node bench/review/run.mjs $(CURDIR)/build-bench/caresync
	./build-bench/ledger_bench
	./build-bench/cluster_bench
	bench/vision/run.sh build-bench
	./build-bench/tfjs_bench
	./build-bench/surveil_bench
	./build-bench/anon_bench
	./build-bench/market_bench

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(GCC_TEST_BUILD) build-bench
