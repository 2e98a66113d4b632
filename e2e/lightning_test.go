package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/regtest"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/wallet/lnd"
)

// startLNDWallet serves an NWC wallet backed by a regtest lnd node over url.
func startLNDWallet(t testing.TB, url string, node *regtest.Node) string {
	t.Helper()
	data := t.TempDir()
	cfg := wallet.DefaultConfig()
	cfg.Relays, cfg.Data, cfg.Backend = []string{url}, data, "lnd"
	cfg.LNDRest, cfg.LNDMacaroon, cfg.LNDTLSCert = node.RESTURL, node.Macaroon, node.TLSCert
	cfg.OpenLND = lnd.Open
	ready := make(chan struct{})
	cfg.OnReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := wallet.Serve(ctx, cfg, testLog(t)); err != nil && ctx.Err() == nil {
			t.Errorf("wallet %s: %v", node.Name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-done:
		t.Fatalf("wallet %s stopped before serving", node.Name)
	}
	return data
}

// awaitBalance polls the wallet behind uri until its balance is want, for at most a minute.
func awaitBalance(t testing.TB, uri nip47.URI, who string, want int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := balance(t, uri)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s balance is %d msat a minute after the job, want %d", who, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lndConnect(t testing.TB, data, url, name string) nip47.URI {
	t.Helper()
	uri, err := wallet.Connect(context.Background(), wallet.ConnectConfig{Data: data, Relays: []string{url}, Name: name, Backend: "lnd"})
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

// A paid job over real Lightning: the customer's wallet is alice's lnd, the worker's is bob's,
// each behind its own NWC wallet service. The job is quoted, paid, run and delivered, and the
// balances move by exactly the invoice amount (plus the routing fee on the payer's side).
func TestRegtestPaidJob(t *testing.T) {
	net := regtest.Start(t)
	_, url := startRelay(t)
	clientURI := lndConnect(t, startLNDWallet(t, url, net.Alice), url, "customer")
	workerURI := lndConnect(t, startLNDWallet(t, url, net.Bob), url, "worker")
	w := startPaidWorker(t, url, workerURI, pricedModels(t, 5000, 2000, ""))
	c := newClient(t, url, clientURI)
	before := [2]int64{balance(t, clientURI), balance(t, workerURI)}

	out, err := c.Do(context.Background(), ocrJob(servePNG(t, "lightning fast"), 20_000), nil)
	if err != nil {
		t.Fatalf("job: %v", err)
	}
	if strings.ToLower(strings.TrimSpace(out.Result)) != "lightning fast" || out.Worker != w.PubKey() {
		t.Fatalf("outcome %+v", out)
	}
	// lnd updates a channel's balance a moment after the payment settles: wait for the move
	awaitBalance(t, clientURI, "customer", before[0]-out.AmountMsat-out.FeeMsat)
	awaitBalance(t, workerURI, "worker", before[1]+out.AmountMsat)
	t.Logf("paid %d msat + %d msat fee over regtest lnd", out.AmountMsat, out.FeeMsat)
}
