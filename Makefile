# The two commands the README starts with, and a few more.
.PHONY: demo demo-lightning test bench build

# The local market in one command: relay, ledger wallet, worker and client; a paid OCR job, a
# 3-page stream paid part by part, a private (encrypted) job. KEEP=1 leaves the market up after
# them, for its page (the address and a customer NWC URI are printed), until Ctrl-C.
# The page's bundle (npm, cached) and the demo command are built first (a cold build takes a
# while: scripts/with-progress says so).
KEEP ?=
demo:
	@scripts/web-bundle >/dev/null
	@scripts/with-progress "make demo: building the demo command" go build -o bin/demo ./demo/cmd/demo
	bin/demo$(if $(filter 1 yes true,$(KEEP)), --keep)

# The same over real Lightning: btcd and two lnd nodes on regtest (built once, cached).
demo-lightning:
	SPARECYCLES_REGTEST_BIN=$$(scripts/regtest-build | tail -n 1) SPARECYCLES_REGTEST=1 \
		go test -count=1 -run '^TestRegtestDemo$$' -v ./demo/

# Everything CI runs.
test:
	scripts/test

# Every benchmark against its baseline from the same run; one table of ratios on stdout.
bench:
	scripts/bench

build:
	mkdir -p bin
	scripts/web-bundle >/dev/null # the relay embeds the market page's bundle
	for c in relay worker wallet client; do go build -o bin/$$c ./$$c/cmd/$$c || exit 1; done
