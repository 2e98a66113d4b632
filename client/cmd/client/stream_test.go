package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/streamtest"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/stream"
	ledgerwallet "github.com/sparecycles/sparecycles/wallet"
)

// startLedger serves a ledger wallet on relay; it returns a worker account and a customer
// account funded with 100 sats.
func startLedger(t *testing.T, relay string) (worker, customer nip47.URI) {
	t.Helper()
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		cfg := ledgerwallet.Config{Relays: []string{relay}, Data: data, Backend: "ledger", OnReady: func() { close(ready) }}
		if err := ledgerwallet.Serve(ctx, cfg, zerolog.Nop()); err != nil && ctx.Err() == nil {
			t.Errorf("wallet: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-done:
		t.Fatal("wallet stopped before serving")
	}
	connect := func(name string, fundSats int64) nip47.URI {
		uri, err := ledgerwallet.Connect(context.Background(), ledgerwallet.ConnectConfig{Data: data, Relays: []string{relay}, Name: name, FundSats: fundSats, Backend: "ledger"})
		if err != nil {
			t.Fatal(err)
		}
		return uri
	}
	return connect("worker", 0), connect("customer", 100)
}

// TestPostStream: three --input files are a stream: each part is reported on stderr as it
// arrives, and --json holds the parts and their total; --max-spend stops after two parts.
func TestPostStream(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	workerURI, customerURI := startLedger(t, relay)
	text := func(k int) string { return fmt.Sprintf("text of page %d", k) }
	p := streamtest.Start(t, relay, workerURI, 5000, streamtest.Honest(streamtest.Script{Escrow: true, Price: func(int) int64 { return 1100 }, Text: text}))
	nwc := writeFile(t, "nwc", []byte(customerURI.Encode()+"\n"))
	var inputs []string
	for k := 1; k <= 3; k++ {
		inputs = append(inputs, "--input", writeFile(t, fmt.Sprintf("page-%d.png", k), pngBytes(t)))
	}
	post := func(more ...string) (int, map[string]any, string) {
		args := slices.Concat([]string{"post", "--relay", relay, "--bid", "10sat", "--nwc-file", nwc, "--json", "--first-quote", "--timeout", "60s"}, inputs, more, home(t))
		code, stdout, stderr := cli(t, "", args...)
		return code, decodeOne(t, stdout), stderr
	}
	partsOf := func(doc map[string]any) []map[string]any {
		var out []map[string]any
		ps, _ := doc["parts"].([]any)
		for _, p := range ps {
			out = append(out, p.(map[string]any))
		}
		return out
	}
	checkParts := func(t *testing.T, doc map[string]any, stderr string, n int) {
		t.Helper()
		parts := partsOf(doc)
		if len(parts) != n {
			t.Fatalf("%d parts, want %d: %v", len(parts), n, doc)
		}
		var lines []string
		for k, part := range parts {
			if part["index"] != float64(k+1) || part["text"] != text(k+1) || part["amount_msat"] != float64(1100) {
				t.Errorf("part %d: %v", k+1, part)
			}
			lines = append(lines, fmt.Sprintf("part %d/3 · %d.%d sat so far", k+1, 11*(k+1)/10, 11*(k+1)%10))
		}
		var got []string
		for _, l := range strings.Split(stderr, "\n") {
			if strings.HasPrefix(l, "part ") {
				got = append(got, l)
			}
		}
		if !slices.Equal(got, lines) {
			t.Errorf("progress lines %q, want %q", got, lines)
		}
	}

	t.Run("all parts", func(t *testing.T) {
		code, doc, stderr := post()
		if code != exitOK || doc["status"] != "success" || doc["amount_msat"] != float64(3300) || doc["scheme"] != "escrow" || doc["worker"] != p.PubKey ||
			doc["result"] != stream.Join([]string{text(1), text(2), text(3)}) {
			t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
		}
		checkParts(t, doc, stderr, 3)
	})
	t.Run("max spend", func(t *testing.T) {
		code, doc, stderr := post("--max-spend", "2750msat")
		if code != exitOK || doc["status"] != "stopped" || doc["amount_msat"] != float64(2200) || !strings.Contains(stderr, "stopped after 2 of 3 parts at --max-spend: 2.2 sat paid") {
			t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
		}
		checkParts(t, doc, stderr, 2)
		j := p.Job(doc["job"].(string))
		for _, ch := range []<-chan struct{}{j.Deleted(), j.Done()} {
			select {
			case <-ch:
			case <-time.After(time.Minute):
				t.Fatal("the worker did not see the request deleted and stop")
			}
		}
		invs := j.Invoices()
		if st, err := j.State(t.Context(), invs[len(invs)-1]); len(invs) != 3 || err != nil || st == nip47.StateAccepted || st == nip47.StateSettled {
			t.Fatalf("part 3's invoice %q (%v) of %d", st, err, len(invs))
		}
	})
}
