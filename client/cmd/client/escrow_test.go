package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// holdWallet is a fake NWC wallet on a relay that pays hold invoices minted by holdInvoice as
// a Lightning wallet does: pay_invoice answers only once the invoice's maker settles (the
// preimage) or cancels (PAYMENT_FAILED); lookup_invoice tells the payment's state meanwhile.
// The hold invoices themselves come from the ledger in the end-to-end tests.
type holdWallet struct {
	uri    nip47.URI
	mu     sync.Mutex
	holds  map[string]*hold // bolt11 → its hold
	locked chan string      // bolt11s whose payment arrived and is held
}

type hold struct {
	preimage escrow.Preimage
	hash     string
	arrived  bool
	end      chan bool // true: settle; false: cancel
	state    string    // for lookup_invoice: pending, accepted, settled, failed
}

func startHoldWallet(t *testing.T, relay string) *holdWallet {
	t.Helper()
	w := &holdWallet{holds: map[string]*hold{}, locked: make(chan string, 8)}
	key := nip47.NewSecret()
	w.uri = nip47.URI{WalletPubKey: key.PubKey(), Relays: []string{relay}, Secret: nip47.NewSecret()}
	pool := relayconn.NewPool([]string{relay})
	svc := &nip47.Service{
		WalletKey: key, Transport: pool,
		Methods: []string{nip47.MethodGetInfo, nip47.MethodPayInvoice, nip47.MethodLookupInvoice},
		Lookup: func(context.Context, string) (nip47.Connection, bool, error) {
			return nip47.Connection{Name: "test"}, true, nil
		},
		Handle: func(ctx context.Context, _ nip47.Connection, method string, params json.RawMessage) (any, error) {
			switch method {
			case nip47.MethodGetInfo:
				return nip47.GetInfoResult{Alias: "fake", Network: "regtest", Methods: []string{nip47.MethodPayInvoice, nip47.MethodLookupInvoice}}, nil
			case nip47.MethodPayInvoice:
				var p nip47.PayInvoiceParams
				if err := json.Unmarshal(params, &p); err != nil {
					return nil, err
				}
				w.mu.Lock()
				h, ok := w.holds[p.Invoice]
				if ok && h.arrived {
					w.mu.Unlock()
					return nil, nip47.Errorf(nip47.CodePaymentFailed, "already paid")
				}
				if ok {
					h.arrived, h.state = true, nip47.StateAccepted
				}
				w.mu.Unlock()
				if !ok {
					return nil, nip47.Errorf(nip47.CodePaymentFailed, "unknown invoice")
				}
				w.locked <- p.Invoice
				select {
				case settle := <-h.end:
					if !settle {
						return nil, nip47.Errorf(nip47.CodePaymentFailed, "the hold invoice was cancelled")
					}
					return nip47.PayInvoiceResult{Preimage: h.preimage.Hex(), FeesPaid: 2}, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			case nip47.MethodLookupInvoice:
				var p nip47.LookupInvoiceParams
				if err := json.Unmarshal(params, &p); err != nil {
					return nil, err
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				for bolt11, h := range w.holds {
					if h.hash == p.PaymentHash || bolt11 == p.Invoice {
						tx := nip47.Transaction{Type: nip47.TypeOutgoing, State: h.state, Invoice: bolt11, PaymentHash: h.hash}
						if h.state == nip47.StateSettled {
							tx.Preimage, tx.FeesPaid = h.preimage.Hex(), 2
						}
						return tx, nil
					}
				}
				return nil, nip47.Errorf(nip47.CodeNotFound, "no such payment")
			}
			return nil, nip47.Errorf(nip47.CodeNotImplemented, "%s", method)
		},
	}
	serveWallet(t, svc, pool)
	return w
}

// holdInvoice mints a signed regtest invoice for job, for the hash of a fresh preimage that
// only the worker (and the wallet, once settled) knows.
func (w *holdWallet) holdInvoice(t *testing.T, job string, msat int64) (string, escrow.Preimage) {
	p, err := escrow.NewPreimage()
	if err != nil {
		t.Fatal(err)
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	inv, err := zpay32.NewInvoice(&chaincfg.RegressionNetParams, [32]byte(mustHex(t, p.Hash())), time.Now(),
		zpay32.Amount(lnwire.MilliSatoshi(msat)), zpay32.Description(invoice.Description(job)), zpay32.Expiry(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bolt11, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(key, msg, true), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.holds[bolt11] = &hold{preimage: p, hash: p.Hash(), end: make(chan bool, 1), state: nip47.StatePending}
	w.mu.Unlock()
	return bolt11, p
}

// finish settles (or cancels) the hold of bolt11, as its maker does.
func (w *holdWallet) finish(bolt11 string, settle bool) {
	w.mu.Lock()
	h := w.holds[bolt11]
	h.state = nip47.StateFailed
	if settle {
		h.state = nip47.StateSettled
	}
	w.mu.Unlock()
	h.end <- settle
}

// waitLocked waits for the payment of bolt11 to arrive.
func (w *holdWallet) waitLocked(ctx context.Context, bolt11 string) bool {
	for {
		select {
		case b := <-w.locked:
			if b == bolt11 {
				return true
			}
		case <-ctx.Done():
			return false
		}
	}
}

func (w *holdWallet) file(t *testing.T) string {
	return writeFile(t, "nwc", []byte(w.uri.Encode()+"\n"))
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	p, err := escrow.ParsePreimage(s) // 32 bytes of hex, as a hash is
	if err != nil {
		t.Fatal(err)
	}
	return p[:]
}

// escrowQuote publishes an escrow quote for req: the hold invoice and the escrow tag.
func (w *worker) escrowQuote(ctx context.Context, req *nostr.Event, msat int64, bolt11 string, p escrow.Preimage) {
	fb := nip90.JobFeedback{JobID: req.ID, Customer: req.PubKey, Status: nip90.StatusPaymentRequired, Amount: &nip90.Amount{Msat: msat, Bolt11: bolt11},
		Extra: nostr.Tags{escrow.Quote{PaymentHash: p.Hash(), SettleWindow: time.Minute}.Tag()}}
	w.publish(ctx, fb.Event())
}

// sealedResult publishes text sealed under p for req.
func (w *worker) sealedResult(ctx context.Context, req *nostr.Event, p escrow.Preimage, hash, text string) {
	sealed, err := escrow.SealContent(p, req.ID, []byte(text))
	if err != nil {
		w.t.Error(err)
		return
	}
	r := nip90.JobResult{Kind: nip90.ResultKind(req.Kind), JobID: req.ID, Customer: req.PubKey, Content: sealed, Extra: nostr.Tags{escrow.ResultTag(hash)}}
	w.publish(ctx, r.Event())
}

// TestPostEscrow: an escrow worker and a cheaper plain one quote; the client pays the escrow
// quote, sees the funds locked, holds the sealed result and opens it with the preimage the
// settled payment returns. The escrow worker fails, cheats or makes the client wait by case.
func TestPostEscrow(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	wal := startHoldWallet(t, relay)
	const price = 2000
	var mu sync.Mutex
	requests := map[string]*nostr.Event{} // the case's --param → the request the worker saw
	gotBolt11 := map[string]string{}      // job → the escrow invoice
	release := map[string]chan struct{}{} // job → closed to let the "killed" case's worker finish
	delivered := make(chan struct{})      // closed once the "killed" case's worker settled
	releaseOf := func(job string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if release[job] == nil {
			release[job] = make(chan struct{})
		}
		return release[job]
	}
	plain := startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		// a cheaper plain quote: never paid while an escrow quote is acceptable
		bolt11 := invoiceOnly(t, req.ID, price/2)
		w.feedback(ctx, req, nip90.StatusPaymentRequired, "", &nip90.Amount{Msat: price / 2, Bolt11: bolt11})
	})
	esc := startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		r, err := nip90.ParseJobRequest(req)
		if err != nil {
			t.Error(err)
			return
		}
		name, _ := r.Param("case")
		mu.Lock()
		requests[name] = req
		mu.Unlock()
		if slices.Equal(escrow.PaymentSchemes(req.Tags), []string{escrow.SchemePrepay}) {
			return // a plain request: this worker quotes escrow only
		}
		bolt11, p := wal.holdInvoice(t, req.ID, price)
		mu.Lock()
		gotBolt11[req.ID] = bolt11
		mu.Unlock()
		w.escrowQuote(ctx, req, price, bolt11, p)
		if !wal.waitLocked(ctx, bolt11) {
			return
		}
		w.feedback(ctx, req, nip90.StatusProcessing, "", nil)
		switch name {
		case "fails":
			w.feedback(ctx, req, nip90.StatusError, "model crashed", nil)
			wal.finish(bolt11, false)
		case "cheats":
			other, _ := escrow.NewPreimage()
			w.sealedResult(ctx, req, other, p.Hash(), "unreadable")
			wal.finish(bolt11, true)
		case "killed":
			select { // deliver only once the client gave up
			case <-releaseOf(req.ID):
			case <-ctx.Done():
				return
			}
			w.sealedResult(ctx, req, p, p.Hash(), "text after a restart")
			wal.finish(bolt11, true)
			close(delivered)
		default:
			w.sealedResult(ctx, req, p, p.Hash(), "the sealed text")
			wal.finish(bolt11, true)
		}
	})
	h := home(t)
	post := func(name string, more ...string) (int, map[string]any, string) {
		args := slices.Concat([]string{"post", "--relay", relay, "--input", "https://example.com/page.png", "--param", "case=" + name,
			"--bid", "5sat", "--nwc-file", wal.file(t), "--json", "--quote-window", "1s", "--timeout", "30s"}, more, h)
		code, stdout, stderr := cli(t, "", args...)
		return code, decodeOne(t, stdout), stderr
	}

	t.Run("settled", func(t *testing.T) {
		code, doc, stderr := post("settled", "--pay", "any", "--log-level", "info")
		if got := stages(stderr); !slices.Equal(got, []string{"waiting for quotes", "paying", "locked", "settled", "done"}) {
			t.Errorf("stages %q", got)
		}
		if code != exitOK || doc["result"] != "the sealed text" || doc["worker"] != esc.pk || doc["scheme"] != "escrow" || doc["amount_msat"] != float64(price) || doc["fee_msat"] != float64(2) {
			t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
		}
		mu.Lock()
		tag := requests["settled"].Tags.Find(escrow.PaymentTag)
		bolt11 := gotBolt11[doc["job"].(string)]
		mu.Unlock()
		if !slices.Equal(tag, nostr.Tag{"payment", "escrow", "prepay", "after"}) {
			t.Errorf("request's payment tag %v", tag)
		}
		inv, err := invoice.Check(bolt11, invoice.Expect{JobID: doc["job"].(string), BidMsat: price})
		pre, perr := escrow.ParsePreimage(doc["preimage"].(string))
		if err != nil || perr != nil || pre.Hash() != inv.PaymentHash {
			t.Errorf("preimage %q is not the proof of the escrow invoice's payment (%v, %v)", doc["preimage"], err, perr)
		}
	})
	t.Run("escrow only", func(t *testing.T) {
		code, doc, stderr := post("escrow only", "--pay", "escrow")
		mu.Lock()
		tag := requests["escrow only"].Tags.Find(escrow.PaymentTag)
		mu.Unlock()
		if code != exitOK || doc["result"] != "the sealed text" || !slices.Equal(tag, nostr.Tag{"payment", "escrow"}) {
			t.Fatalf("exit %d, document %v, tag %v, stderr %q", code, doc, tag, stderr)
		}
	})
	t.Run("prepay: plain quote", func(t *testing.T) {
		code, doc, stderr := post("prepay", "--pay", "prepay")
		mu.Lock()
		tag := requests["prepay"].Tags.Find(escrow.PaymentTag)
		mu.Unlock()
		// the plain worker's invoice is not the wallet's: paying it fails, but it was chosen
		if code != exitPayment || doc["worker"] != plain.pk || doc["scheme"] != "prepay" || tag != nil {
			t.Fatalf("exit %d, document %v, tag %v, stderr %q", code, doc, tag, stderr)
		}
	})
	t.Run("fails: refunded", func(t *testing.T) {
		code, doc, stderr := post("fails", "--log-level", "info")
		if got := stages(stderr); !slices.Equal(got, []string{"waiting for quotes", "paying", "locked", "refunded"}) {
			t.Errorf("stages %q", got)
		}
		if code != exitJobFailed || doc["status"] != "error" || !strings.Contains(doc["error"].(string), "model crashed") || !strings.Contains(doc["error"].(string), "refunded") || doc["scheme"] != "escrow" {
			t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
		}
	})
	t.Run("cheats: unreadable", func(t *testing.T) {
		code, doc, stderr := post("cheats")
		e, _ := doc["error"].(string)
		if code != exitJobFailed || !strings.Contains(e, "paid for a result that cannot be opened") || !strings.Contains(e, esc.pk) || doc["preimage"] == nil {
			t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
		}
	})
	t.Run("killed while locked: status finishes", func(t *testing.T) {
		args := slices.Concat([]string{"post", "--relay", relay, "--input", "https://example.com/page.png", "--param", "case=killed",
			"--bid", "5sat", "--nwc-file", wal.file(t), "--json", "--quote-window", "500ms", "--timeout", "5s"}, h)
		code, stdout, stderr := cli(t, "", args...)
		doc := decodeOne(t, stdout)
		job, _ := doc["job"].(string)
		if code != exitTimeout || !strings.Contains(stderr, "client status") {
			t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
		}
		status := func() (int, map[string]any, string) {
			code, stdout, stderr := cli(t, "", slices.Concat([]string{"status", job, "--relay", relay, "--nwc-file", wal.file(t), "--json"}, h)...)
			return code, decodeOne(t, stdout), stderr
		}
		code, st, stderr := status()
		if code != exitOK || st["state"] == "done" || st["opened"] == true {
			t.Fatalf("before delivery: exit %d, status %v, stderr %q", code, st, stderr)
		}
		close(releaseOf(job))
		select {
		case <-delivered:
		case <-time.After(30 * time.Second):
			t.Fatal("the worker did not deliver")
		}
		code, st, stderr = status()
		pays, _ := st["payments"].([]any)
		if code != exitOK || st["state"] != "done" || st["result"] != "text after a restart" || len(pays) != 1 || pays[0].(map[string]any)["state"] != "paid" {
			t.Fatalf("after delivery: exit %d, status %v, stderr %q", code, st, stderr)
		}
	})
}

// TestPostEscrowOnly: with --pay escrow, plain quotes are refused with a reason.
func TestPostEscrowOnly(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		bolt11 := invoiceOnly(t, req.ID, 1000)
		w.feedback(ctx, req, nip90.StatusPaymentRequired, "", &nip90.Amount{Msat: 1000, Bolt11: bolt11})
	})
	args := slices.Concat([]string{"post", "--relay", relay, "--input", "https://example.com/page.png", "--bid", "5sat", "--pay", "escrow", "--json"}, fast, home(t))
	code, stdout, stderr := cli(t, "", args...)
	doc := decodeOne(t, stdout)
	if code != exitNoOffer || !strings.Contains(doc["error"].(string), "not an escrow quote, and --pay escrow takes escrow quotes only") {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}
}

// invoiceOnly is a valid invoice for job nobody can pay.
func invoiceOnly(t *testing.T, job string, msat int64) string {
	w := &holdWallet{holds: map[string]*hold{}}
	b, _ := w.holdInvoice(t, job, msat)
	return b
}

// stages reads the stage log lines of stderr, in order.
func stages(stderr string) []string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		var l struct{ Stage string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Stage != "" {
			out = append(out, l.Stage)
		}
	}
	return out
}
