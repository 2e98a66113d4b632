package wallet

import (
	"testing"
	"time"
)

// SpentMsat is how much of its budget the connection of clientPubKey has spent, read from the
// store in data: for the tests of package wallet_test, which import wallet/lnd (and so cannot
// be in package wallet, which wallet/lnd imports).
func SpentMsat(t *testing.T, data, clientPubKey string) int64 {
	t.Helper()
	return spent(t, openTestStore(t, data), clientPubKey)
}

// WithInFlightEvery is cfg asking the backend about payments a previous run left in flight
// every period instead of every minute.
func WithInFlightEvery(cfg Config, period time.Duration) Config {
	cfg.inFlightEvery = period
	return cfg
}
