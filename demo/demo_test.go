package demo

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparecycles/sparecycles/nips/escrow"

	"github.com/sparecycles/sparecycles/internal/regtest"
)

func repoRoot(t testing.TB) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func check(t *testing.T, rep Report, out *bytes.Buffer) {
	t.Helper()
	want := strings.ToLower(strings.Join(Page, " "))
	if got := strings.ToLower(strings.Join(strings.Fields(rep.Text), " ")); got != want {
		t.Fatalf("text %q, want %q\n%s", rep.Text, want, out)
	}
	if rep.AmountMsat <= 0 {
		t.Fatalf("nothing paid\n%s", out)
	}
	// both wallets hold invoices: the demo pays by escrow, locked before settled
	locked, settled := slices.Index(rep.Stages, "locked"), slices.Index(rep.Stages, "settled")
	if rep.Scheme != "escrow" || locked < 0 || settled < locked {
		t.Fatalf("scheme %q, stages %q: want escrow, locked then settled\n%s", rep.Scheme, rep.Stages, out)
	}
	if p, err := escrow.ParsePreimage(rep.Preimage); err != nil || !strings.Contains(out.String(), "stage    settled") {
		t.Fatalf("preimage %q (%v), or no settled line\n%s", rep.Preimage, err, out)
	} else if p.Hex() == "" {
		t.Fatal("empty preimage")
	}
	if paid := rep.Before.Customer - rep.After.Customer; paid != rep.AmountMsat+rep.FeeMsat {
		t.Fatalf("customer paid %d msat, want %d + %d fee\n%s", paid, rep.AmountMsat, rep.FeeMsat, out)
	}
	if got := rep.After.Worker - rep.Before.Worker; got != rep.AmountMsat {
		t.Fatalf("worker received %d msat, want %d\n%s", got, rep.AmountMsat, out)
	}
}

// The demo's path with the binaries themselves, built and started as processes, over the
// ledger wallet: the text, the payment and the balances.
func TestDemoLedger(t *testing.T) {
	var out bytes.Buffer
	rep, err := Run(context.Background(), Options{Repo: repoRoot(t), Workdir: t.TempDir(), Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	check(t, rep, &out)
	t.Log(out.String())
}

// The same over real Lightning: the customer's wallet service on alice's lnd, the worker's
// on bob's. `make demo-lightning` runs this test.
func TestRegtestDemo(t *testing.T) {
	net := regtest.Start(t)
	var out bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Repo: repoRoot(t), Workdir: t.TempDir(), Out: &out,
		Customer: &LND{REST: net.Alice.RESTURL, Macaroon: net.Alice.Macaroon, TLSCert: net.Alice.TLSCert},
		Worker:   &LND{REST: net.Bob.RESTURL, Macaroon: net.Bob.Macaroon, TLSCert: net.Bob.TLSCert},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	check(t, rep, &out)
	t.Log(out.String())
}
