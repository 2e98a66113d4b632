package worker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// A result no relay stored ends the job in the store: a paid job is not resumed on restart, a
// post-paid one is not owed, and the feedback says what happened to the money.
func TestMarkUndeliverable(t *testing.T) {
	s, err := openJobStore(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cust := newCustomer()
	request := func(n int) *nostr.Event {
		evt := &nostr.Event{Kind: 5800, CreatedAt: nostr.Timestamp(1700000000 + n), Tags: nostr.Tags{{"i", "x", "text"}}}
		if err := evt.Sign(cust.sk); err != nil {
			t.Fatal(err)
		}
		return evt
	}

	tests := []struct {
		name      string
		state     string // "" for a free job, which is never stored
		msat      int64
		wantState string
		wantNote  string // in paymentNote's text; "" for none
	}{
		{"free", "", 0, "", ""},
		{"paid before running (the worker owes it first, see TestOwe)", StateRunning, 21_000, StateUndeliverable, ""},
		{"post-paid, invoice on the lost result", StateUnpaid, 5_000, StateUndeliverable, "its invoice was never delivered and nothing is owed"},
		{"delivered already", StateDelivered, 1_000, StateDelivered, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request(i)
			if tc.state != "" {
				if err := s.put(t.Context(), storedJob{ID: req.ID, State: tc.state, Customer: cust.pk, AmountMsat: tc.msat, Request: req}); err != nil {
					t.Fatal(err)
				}
			}
			before, err := s.markUndeliverable(t.Context(), req.ID)
			if tc.state == "" {
				if !errors.Is(err, errNoJob) {
					t.Fatalf("free job: %v, want errNoJob", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if before.State != tc.state {
				t.Fatalf("returned state %q, want the state before, %q", before.State, tc.state)
			}
			after, err := s.get(t.Context(), req.ID)
			if err != nil || after.State != tc.wantState {
				t.Fatalf("state %q (%v), want %q", after.State, err, tc.wantState)
			}
			note := paymentNote(before)
			if (tc.wantNote == "") != (note == "") || !strings.Contains(note, tc.wantNote) {
				t.Fatalf("payment note %q, want %q", note, tc.wantNote)
			}
		})
	}

	// neither resumed nor owed
	resumable, err := s.inState(t.Context(), StatePaid, StateRunning, StateQuoted)
	if err != nil || len(resumable) != 0 {
		t.Fatalf("resumable after marking: %d jobs (%v)", len(resumable), err)
	}
	if owed, err := s.unpaid(t.Context(), cust.pk); err != nil || owed != 0 {
		t.Fatalf("customer owes %d msat (%v), want 0", owed, err)
	}
}

// A paid job the worker cannot deliver becomes a debt: the job is owed (not resumed) and the
// debt, with amount and reason, is listed; a job that was not paid owes nothing.
func TestOwe(t *testing.T) {
	s, err := openJobStore(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cust := newCustomer()
	tests := []struct {
		name      string
		state     string // "" for a free job, which is never stored
		msat      int64
		wantOwed  bool
		wantState string
	}{
		{"free", "", 0, false, ""},
		{"quoted, not paid", StateQuoted, 3_000, false, StateQuoted},
		{"paid, claim refused", StatePaid, 21_000, true, StateOwed},
		{"running, failed", StateRunning, 4_000, true, StateOwed},
		{"post-paid, invoice on the lost result", StateUnpaid, 5_000, false, StateUnpaid},
		{"delivered already", StateDelivered, 1_000, false, StateDelivered},
	}
	var wantDebts []Debt
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &nostr.Event{Kind: 5800, CreatedAt: nostr.Timestamp(1700000000 + i), Tags: nostr.Tags{{"i", "x", "text"}}}
			if err := req.Sign(cust.sk); err != nil {
				t.Fatal(err)
			}
			if tc.state != "" {
				if err := s.put(t.Context(), storedJob{ID: req.ID, State: tc.state, Customer: cust.pk, AmountMsat: tc.msat, Request: req}); err != nil {
					t.Fatal(err)
				}
			}
			reason := "claim refused by ws://relay: leased by someone until 1"
			_, owed, err := s.owe(t.Context(), req.ID, reason)
			if err != nil || owed != tc.wantOwed {
				t.Fatalf("owe = %v, %v; want %v", owed, err, tc.wantOwed)
			}
			if _, again, err := s.owe(t.Context(), req.ID, reason); err != nil || again {
				t.Fatalf("second owe = %v, %v; want no second debt", again, err)
			}
			if tc.state != "" {
				if after, err := s.get(t.Context(), req.ID); err != nil || after.State != tc.wantState {
					t.Fatalf("state %q (%v), want %q", after.State, err, tc.wantState)
				}
			}
			if tc.wantOwed {
				wantDebts = append(wantDebts, Debt{JobID: req.ID, Customer: cust.pk, AmountMsat: tc.msat, Reason: reason})
			}
		})
	}
	debts, err := s.debts(t.Context())
	if err != nil || len(debts) != len(wantDebts) {
		t.Fatalf("debts %+v (%v), want %d", debts, err, len(wantDebts))
	}
	byID := map[string]Debt{}
	for _, d := range debts {
		d.At = time.Time{}
		byID[d.JobID] = d
	}
	for _, want := range wantDebts {
		if byID[want.JobID] != want {
			t.Fatalf("debt %+v, want %+v", byID[want.JobID], want)
		}
	}
	if resumable, err := s.inState(t.Context(), StatePaid, StateRunning, StateQuoted); err != nil || len(resumable) != 1 {
		t.Fatalf("resumable: %d jobs (%v), want only the quoted one", len(resumable), err)
	}
}

func TestOwedInfo(t *testing.T) {
	got := owedInfo("claim refused by ws://r: leased by ab until 5", 21000)
	want := "paid job not delivered: claim refused by ws://r: leased by ab until 5; 21,000 msat owed to you, recorded by the worker"
	if got != want {
		t.Fatalf("owedInfo = %q, want %q", got, want)
	}
}
