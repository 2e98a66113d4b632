package lnd

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// The hold_* fixtures are lnd v0.19.3's REST replies on the regtest network of
// internal/regtest: bob made a hold invoice (POST /v2/invoices/hodl, cltv_expiry 40) for the
// preimage 32×0x11, alice paid it (send_held.jsonl, her router stream), bob settled it;
// hold_canceled.json is another hold invoice bob cancelled unpaid.

const (
	holdHash     = "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc"
	holdPreimage = "1111111111111111111111111111111111111111111111111111111111111111"
	holdCreated  = 1796448227
)

func TestHoldInvoiceIncoming(t *testing.T) {
	job := func(state string, deadline int64) nip47.Transaction {
		return nip47.Transaction{
			Type: nip47.TypeIncoming, State: state, Description: "job", PaymentHash: holdHash,
			Amount: 40_000_000, CreatedAt: holdCreated, ExpiresAt: holdCreated + 600,
			SettleDeadline: deadline,
		}
	}
	tests := []struct {
		name     string
		file     string
		now      int64
		want     nip47.Transaction
		wantHold bool
	}{
		{"open", "hold_open.json", holdCreated + 10, job(nip47.StatePending, 0), true},
		{"open past its expiry", "hold_open.json", holdCreated + 600, job(nip47.StateExpired, 0), true},
		// The HTLC expires at height 500: the deadline is settleMarginBlocks before.
		{"accepted", "hold_accepted.json", holdCreated + 10, job(nip47.StateAccepted, 500-settleMarginBlocks), true},
		{"accepted past the invoice's expiry", "hold_accepted.json", holdCreated + 900, job(nip47.StateAccepted, 500-settleMarginBlocks), true},
		{"cancelled before its expiry", "hold_canceled.json", holdCreated + 10, nip47.Transaction{
			Type: nip47.TypeIncoming, State: nip47.StateFailed, Description: "cancel me",
			PaymentHash: "deb0e38ced1e41de6f92e70e80c418d2d356afaaa99e26f5939dbc7d3ef4772a",
			Amount:      1000, CreatedAt: holdCreated, ExpiresAt: holdCreated + 600,
		}, true},
		{"ordinary invoice", "invoice_open.json", coffeeCreated + 10, nip47.Transaction{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in invoice
			readJSON(t, tc.file, &in)
			if in.hold() != tc.wantHold {
				t.Errorf("hold() = %v, want %v", in.hold(), tc.wantHold)
			}
			if tc.want.Type == "" {
				return
			}
			got := in.incoming(time.Unix(tc.now, 0))
			got.Invoice = ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSettleDeadline(t *testing.T) {
	var in invoice
	readJSON(t, "hold_accepted.json", &in)
	if len(in.HTLCs) != 1 || in.HTLCs[0].ExpiryHeight != 500 || in.HTLCs[0].AmtMsat != 40_000_000 || in.CLTVExpiry != 40 {
		t.Fatalf("parsed %+v", in)
	}
	// Two more HTLCs (a multi-part payment): the earliest accepted expiry counts; a cancelled
	// one does not.
	in.HTLCs = append(in.HTLCs, in.HTLCs[0], in.HTLCs[0])
	in.HTLCs[1].ExpiryHeight = 480
	in.HTLCs[2].ExpiryHeight = 400
	in.HTLCs[2].State = "CANCELED"
	if got := in.settleDeadline(); got != 480-settleMarginBlocks {
		t.Errorf("settleDeadline = %d, want %d", got, 480-settleMarginBlocks)
	}
	in.HTLCs = nil
	if got := in.settleDeadline(); got != 0 {
		t.Errorf("without HTLCs: %d, want 0", got)
	}
}

func TestHoldInvoiceRequestJSON(t *testing.T) {
	hash, _ := hex.DecodeString(holdHash)
	b, err := json.Marshal(holdInvoiceRequest{Hash: hash, ValueMsat: 40_000_000, Memo: "job", Expiry: 600, CLTVExpiry: 40})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hash":"AtRJox+7JnyPNS6ZaKeePl/JXBu+qlAv1kVOveWkvtw=","value_msat":"40000000","memo":"job","expiry":"600","cltv_expiry":"40"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	// Without a CLTV delta lnd picks its default; without a memo none is sent.
	b, _ = json.Marshal(holdInvoiceRequest{Hash: hash, ValueMsat: 1000, Expiry: 600})
	if strings.Contains(string(b), "cltv_expiry") || strings.Contains(string(b), "memo") {
		t.Errorf("got %s", b)
	}

	var added holdInvoiceReply
	readJSON(t, "hodl_added.json", &added)
	if !strings.HasPrefix(added.PaymentRequest, "lnbcrt400u1") || added.AddIndex != 1 || len(added.PaymentAddr) != 32 {
		t.Errorf("hodl reply = %+v", added)
	}
}

func TestPendingHolds(t *testing.T) {
	var r listInvoicesReply
	readJSON(t, "hold_pending.json", &r)
	if len(r.Invoices) != 1 || r.Invoices[0].State != "ACCEPTED" || !r.Invoices[0].hold() ||
		hex.EncodeToString(r.Invoices[0].RHash) != holdHash {
		t.Errorf("pending invoices = %+v", r)
	}
}

// TestSubscribeSingleInvoice reads the single-invoice stream: the current state first, then
// each change.
func TestSubscribeSingleInvoice(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "hold_subscribe_single.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	s := openFixtureStream(t, raw)
	var states []string
	for {
		var in invoice
		err := s.next(&in)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, in.State)
		if in.State == "ACCEPTED" && in.settleDeadline() != 500-settleMarginBlocks {
			t.Errorf("accepted update's deadline %d", in.settleDeadline())
		}
		if in.State == "SETTLED" && hex.EncodeToString(in.RPreimage) != holdPreimage {
			t.Errorf("settled update's preimage %x", in.RPreimage)
		}
	}
	if strings.Join(states, " ") != "OPEN ACCEPTED SETTLED" {
		t.Errorf("states %v", states)
	}
}

func TestInvoiceExists(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "errors", "hodl_duplicate.json"))
	if err != nil {
		t.Fatal(err)
	}
	if e := parseErrorBody(500, raw); !invoiceExists(e) {
		t.Errorf("%v: not recognised as a duplicate hash", e)
	}
	if invoiceExists(parseErrorBody(500, []byte(`{"code":2,"message":"unable to locate invoice"}`))) {
		t.Error("another error taken for a duplicate hash")
	}
}

// TestHeldPayment: the payer's stream of a payment to a hold invoice, read to its end.
func TestHeldPayment(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "send_held.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var updates []payment
	s := openFixtureStream(t, raw)
	for {
		var p payment
		if err := s.next(&p); err != nil {
			break
		}
		updates = append(updates, p)
	}
	if len(updates) != 3 || updates[0].inFlight() || !updates[1].inFlight() || updates[2].inFlight() {
		t.Fatalf("updates %+v: want in flight (no HTLC yet), in flight (HTLC held), succeeded", updates)
	}
	if tx := updates[1].outgoing(nil); tx.State != nip47.StatePending || tx.Preimage != "" {
		t.Errorf("held payment = %+v, want pending without a preimage", tx)
	}
	p, err := followPayment(t.Context(), fixtureOpener(t, raw))
	if err != nil || p.Status != "SUCCEEDED" || p.outgoing(nil).Preimage != holdPreimage {
		t.Errorf("followPayment = %+v, %v", p, err)
	}
}

// fakeDeadline is a deadline the test fires by hand.
type fakeDeadline struct {
	fire   func()
	resets chan time.Duration
}

func (d *fakeDeadline) Stop() bool                   { return true }
func (d *fakeDeadline) Reset(dur time.Duration) bool { d.resets <- dur; return true }

// TestFollowPaymentDeadline: the route deadline stops a payment with no HTLC out; once an
// HTLC is in flight (held by the recipient), it gives way to heldPaymentWait.
func TestFollowPaymentDeadline(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "send_held.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(raw, []byte("\n"))
	noHTLC, held, succeeded := lines[0], lines[1], lines[2]

	// follow starts followPaymentUntil on a pipe that ends when its context does, as an
	// HTTP body does.
	follow := func(t *testing.T) (*io.PipeWriter, *fakeDeadline, <-chan error, <-chan payment) {
		pr, pw := io.Pipe()
		d := &fakeDeadline{resets: make(chan time.Duration, 4)}
		errs, pays := make(chan error, 1), make(chan payment, 1)
		open := func(ctx context.Context) (*stream, error) {
			context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
			return &stream{body: pr, dec: json.NewDecoder(pr)}, nil
		}
		start := func(dur time.Duration, f func()) deadline {
			if dur != paymentTimeout+requestTimeout {
				t.Errorf("first deadline %v", dur)
			}
			d.fire = f
			return d
		}
		go func() {
			p, err := followPaymentUntil(t.Context(), open, start)
			errs <- err
			pays <- p
		}()
		return pw, d, errs, pays
	}
	write := func(t *testing.T, pw *io.PipeWriter, line []byte) {
		t.Helper()
		if _, err := pw.Write(line); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("no HTLC out when the deadline passes", func(t *testing.T) {
		pw, d, errs, _ := follow(t)
		write(t, pw, noHTLC) // read: followPaymentUntil has set its deadline
		d.fire()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want the deadline's cancellation", err)
		}
		if len(d.resets) != 0 {
			t.Errorf("deadline reset to %v without an HTLC out", <-d.resets)
		}
	})
	t.Run("held HTLC", func(t *testing.T) {
		pw, d, errs, pays := follow(t)
		write(t, pw, noHTLC)
		write(t, pw, held)
		if got := <-d.resets; got != heldPaymentWait {
			t.Errorf("deadline reset to %v, want %v", got, heldPaymentWait)
		}
		write(t, pw, succeeded)
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if p := <-pays; p.Status != "SUCCEEDED" {
			t.Errorf("status %s", p.Status)
		}
	})
}

// TestHoldOwnersFile: owners survive a restart through the file; a torn last line (a crash
// mid-write) is skipped; compacting keeps exactly the owners in memory.
func TestHoldOwnersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), HoldOwnersFile)
	b := &Backend{ownersPath: path, holds: map[string]string{}, accounts: map[string]string{}}
	a, c := strings.Repeat("a", 64), strings.Repeat("c", 64)
	for _, o := range []holdOwner{{a, "alice"}, {c, "carol"}, {a, "alice2"}} {
		if err := b.rememberHold(o.Hash, o.Account); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"hash":"` + strings.Repeat("d", 64) + `","acc`)
	f.Close()

	owners, err := loadHoldOwners(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{a: "alice2", c: "carol"}; !reflect.DeepEqual(owners, want) {
		t.Errorf("loaded %v, want %v", owners, want)
	}
	if b.accounts[c] != "carol" {
		t.Errorf("carol's invoice is not tagged for notifications: %v", b.accounts)
	}

	delete(b.holds, c) // settled: compacting drops it
	if err := b.compactHoldOwners(); err != nil {
		t.Fatal(err)
	}
	owners, err = loadHoldOwners(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{a: "alice2"}; !reflect.DeepEqual(owners, want) {
		t.Errorf("after compacting: %v, want %v", owners, want)
	}
	if owners, err := loadHoldOwners(filepath.Join(t.TempDir(), "none")); err != nil || len(owners) != 0 {
		t.Errorf("missing file: %v, %v", owners, err)
	}
}

// FuzzLoadHoldOwners: any file loads without panicking, and only well-formed hashes load.
func FuzzLoadHoldOwners(f *testing.F) {
	f.Add([]byte(`{"hash":"` + strings.Repeat("a", 64) + `","account":"x"}` + "\n" + `{"hash":"b"`))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), HoldOwnersFile)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		owners, err := loadHoldOwners(path)
		if err != nil {
			return // a line over 1 MiB
		}
		for h := range owners {
			if len(h) != 64 {
				t.Fatalf("loaded hash %q", h)
			}
		}
	})
}
