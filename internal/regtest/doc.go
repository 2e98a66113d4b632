// Package regtest runs a private Lightning network for tests: one btcd in regtest mode and two
// lnd nodes, alice and bob, with a funded alice→bob channel that can carry payments both ways.
// Everything listens on 127.0.0.1 at ephemeral ports under t.TempDir(), and t.Cleanup kills
// the processes and waits for them.
//
// Tests opt in with SPARECYCLES_REGTEST=1; otherwise Start skips them, naming the variable.
// Once opted in, anything that keeps the network from starting fails the test: a regtest run
// must never pass by skipping. The binaries (btcd, lnd) come from SPARECYCLES_REGTEST_BIN or
// from the cache that scripts/regtest-build fills:
//
//	scripts/regtest-build
//	SPARECYCLES_REGTEST=1 go test -race ./wallet/lnd/ ./internal/regtest/
//
// Start takes about 4 seconds on two cores. Most of that used to be lnd deriving its wallet
// keys with production scrypt parameters (20 seconds per node); scripts/regtest-build builds
// lnd with the lowscrypt tag, which makes those binaries fit for throwaway wallets only.
//
// How the chain is set up, and why:
//   - btcd mines to a pay-to-script-hash of OP_TRUE, an address anyone can spend. btcd has no
//     wallet, and its regtest chain starts afresh on every restart, so it cannot be restarted
//     to mine to alice. Instead a coinbase is spent to alice in a raw transaction that needs
//     no signature.
//   - Segwit activates at height 432 on regtest, and coinbases mature after 100 blocks, so
//     the first batch mines 450 blocks in one call, before lnd starts and has to follow them.
//   - lnd accepts channels after one confirmation (--bitcoin.defaultchanconfs=1); Start mines
//     six so the channel is announced too.
//   - The channel pushes 300 000 sat to bob so that bob can pay alice back.
package regtest
