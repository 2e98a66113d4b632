package regtest

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Go constants and the build script must agree, or tests look for binaries in a cache
// directory the script never fills.
func TestVersionsMatchBuildScript(t *testing.T) {
	script, err := os.ReadFile("../../scripts/regtest-build")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"btcd_version": btcdVersion, "lnd_version": lndVersion} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(script)
		if m == nil || string(m[1]) != want {
			t.Errorf("scripts/regtest-build: %s = %q, want %q", name, m, want)
		}
	}
}

func TestBinDirNamesTheScript(t *testing.T) {
	t.Setenv("SPARECYCLES_REGTEST_BIN", t.TempDir())
	_, err := binDir()
	if err == nil || !strings.Contains(err.Error(), "scripts/regtest-build") {
		t.Fatalf("binDir with no binaries: %v, want an error naming scripts/regtest-build", err)
	}
}

func TestStartSkipsUnlessEnabled(t *testing.T) {
	t.Setenv("SPARECYCLES_REGTEST", "")
	var skipped bool
	t.Run("start", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Start(t)
	})
	if !skipped {
		t.Fatal("Start did not skip without SPARECYCLES_REGTEST=1")
	}
}

func TestRegtestNetwork(t *testing.T) {
	n := Start(t)
	ctx := t.Context()
	for _, node := range []*Node{n.Alice, n.Bob} {
		if node.PubKey == "" || node.RESTURL == "" {
			t.Errorf("%s: pubkey %q, REST URL %q", node.Name, node.PubKey, node.RESTURL)
		}
		for _, f := range []string{node.Macaroon, node.TLSCert} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("%s: %v", node.Name, err)
			}
		}
		if !strings.HasPrefix(node.RESTURL, "https://127.0.0.1:") {
			t.Errorf("%s: REST URL %s is not on 127.0.0.1", node.Name, node.RESTURL)
		}
		if !strings.HasPrefix(node.Macaroon, os.TempDir()) {
			t.Errorf("%s: macaroon %s is outside the temporary directory", node.Name, node.Macaroon)
		}
	}

	// The channel carries payments both ways: alice pays bob, and bob pays alice back out of
	// the pushed amount.
	pay(ctx, t, n.Alice, n.Bob, 5_000)
	pay(ctx, t, n.Bob, n.Alice, 2_000)

	before, err := n.Alice.getInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n.Mine(t, 3)
	for _, node := range []*Node{n.Alice, n.Bob} {
		i, err := node.getInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i.Height != before.Height+3 {
			t.Errorf("%s at height %d after Mine(3) from %d", node.Name, i.Height, before.Height)
		}
	}
}

// pay makes an invoice for sat on to and pays it from from, synchronously.
func pay(ctx context.Context, t *testing.T, from, to *Node, sat int64) {
	t.Helper()
	var inv struct {
		PaymentRequest string `json:"payment_request"`
	}
	if err := to.call(ctx, http.MethodPost, "/v1/invoices", map[string]any{"value": sat, "memo": "regtest"}, &inv); err != nil {
		t.Fatal(err)
	}
	var res struct {
		PaymentError    string `json:"payment_error"`
		PaymentPreimage string `json:"payment_preimage"`
	}
	if err := from.call(ctx, http.MethodPost, "/v1/channels/transactions", map[string]any{"payment_request": inv.PaymentRequest}, &res); err != nil {
		t.Fatal(err)
	}
	if res.PaymentError != "" || res.PaymentPreimage == "" {
		t.Fatalf("%s paying %s %d sat: error %q, preimage %q", from.Name, to.Name, sat, res.PaymentError, res.PaymentPreimage)
	}
}
