package worker

import (
	"errors"
	"strings"
	"testing"

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
		{"paid before running", StateRunning, 21_000, StateUndeliverable, "you paid 21,000 msat for this job and did not get its result; this worker does not refund automatically"},
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
