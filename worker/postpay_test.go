package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/nips/postpay"
)

// Only the job's customer, naming this worker and the offered amount, starts an offered job;
// every other acceptance is ignored and leaves the offer open.
func TestAcceptance(t *testing.T) {
	customer, stranger := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	customerPK, _ := nostr.GetPublicKey(customer)
	me := strings.Repeat("a", 64)
	m := &model{manifest: Manifest{Name: "ocr"}}
	newWorker := func(t *testing.T) (*Worker, *job) {
		store, err := openJobStore(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		w := &Worker{log: zerolog.Nop(), key: keyfile.Key{PubKey: me}, store: store, paid: map[*model]chan *job{m: make(chan *job, 1)}}
		w.cfg.MaxUnpaidMsat = 100_000
		req := nostr.Event{Kind: 5000, PubKey: customerPK, CreatedAt: nostr.Now()}
		req.ID = req.GetID()
		j := &job{event: &req, model: m}
		if !w.offers.add(j, 3000, time.Minute) {
			t.Fatal("offer refused")
		}
		return w, j
	}
	accept := func(sk, job, worker string, msat int64) *nostr.Event {
		evt := postpay.Acceptance{JobID: job, Worker: worker, Msat: msat}.Event()
		if err := evt.Sign(sk); err != nil {
			t.Fatal(err)
		}
		return &evt
	}
	tests := []struct {
		name string
		evt  func(job string) *nostr.Event
		runs bool
	}{
		{"the customer accepts", func(job string) *nostr.Event { return accept(customer, job, me, 3000) }, true},
		{"a stranger accepts", func(job string) *nostr.Event { return accept(stranger, job, me, 3000) }, false},
		{"another amount", func(job string) *nostr.Event { return accept(customer, job, me, 2999) }, false},
		{"another worker", func(job string) *nostr.Event { return accept(customer, job, strings.Repeat("b", 64), 3000) }, false},
		{"another job", func(string) *nostr.Event { return accept(customer, strings.Repeat("c", 64), me, 3000) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, j := newWorker(t)
			w.accepted(context.Background(), tc.evt(j.event.ID))
			w.async.Wait()
			select {
			case got := <-w.paid[m]:
				if !tc.runs || got != j || got.postPrice == nil || *got.postPrice != 3000 {
					t.Fatalf("queued %+v", got)
				}
				if w.offers.take(j.event.ID) != nil {
					t.Fatal("the offer is still open after it was accepted")
				}
			default:
				if tc.runs {
					t.Fatal("the accepted job was not queued")
				}
				if w.offers.take(j.event.ID) == nil {
					t.Fatal("an ignored acceptance closed the offer")
				}
			}
		})
	}
}

// Offers are bounded and forgotten after their wait.
func TestOffersBoundedAndForgotten(t *testing.T) {
	var o offers
	j := &job{event: &nostr.Event{ID: strings.Repeat("0", 64)}}
	if !o.add(j, 1, 10*time.Millisecond) {
		t.Fatal("first offer refused")
	}
	deadline := time.Now().Add(30 * time.Second)
	for { // forgotten after its wait: poll, bounded
		o.mu.Lock()
		n := len(o.jobs)
		o.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("offer never forgotten")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < maxOffers; i++ {
		if !o.add(&job{event: &nostr.Event{ID: nostr.GeneratePrivateKey()}}, 1, time.Hour) {
			t.Fatalf("offer %d refused below the bound", i)
		}
	}
	if o.add(j, 1, time.Hour) {
		t.Fatal("an offer beyond the bound was taken")
	}
}
