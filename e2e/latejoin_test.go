package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/worker"
)

// A priced worker that joins late finds a backlog on the relay: a job with a result, a job whose
// NIP-40 expiration passed, a job another worker holds the lease on, and an open job. It quotes
// the open job and a fresh one, and publishes nothing at all (no quote, no invoice, no "busy")
// for the other three. A fourth job's lease lapses without a result: the worker quotes it then. A
// fifth job's holder hands it back (error feedback) long before its lease would end: the worker
// quotes it then.
func TestLateWorkerSkipsFinishedJobs(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	c := testrelay.Dial(t, url)
	customer, other := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	img := servePNG(t, "late but wise")
	job := func(name string, extra ...nostr.Tag) nostr.Event {
		return post(t, c, customer, append(nostr.Tags{{"i", img, "url"}, {"output", "text/plain"}, {"alt", name}}, extra...))
	}
	publish := func(evt nostr.Event) {
		t.Helper()
		if err := evt.Sign(other); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ok, err := c.Publish(ctx, evt); err != nil || !ok.Accepted {
			t.Fatalf("publish kind %d: %+v %v", evt.Kind, ok, err)
		}
	}

	done := job("done")
	publish(nostr.Event{Kind: 6000, CreatedAt: nostr.Now(), Content: "served already",
		Tags: nostr.Tags{{"e", done.ID}, {"p", done.PubKey}, {"request", done.String()}}})
	leased := job("leased")
	publish(nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"status", "processing"}, {"e", leased.ID}, {"p", leased.PubKey}, lease.Tag(10 * time.Minute)}})
	handedBack := job("handed back")
	publish(nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"status", "processing"}, {"e", handedBack.ID}, {"p", handedBack.PubKey}, lease.Tag(10 * time.Minute)}})
	lapsing := job("lapsing") // its lease holder dies: the worker serves it when the lease ends
	publish(nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"status", "processing"}, {"e", lapsing.ID}, {"p", lapsing.PubKey}, lease.Tag(4 * time.Second)}})
	exp := nostr.Now() + 5 // room to post it before it expires, on a loaded machine too
	expired := job("expired", nostr.Tag{"expiration", strconv.FormatInt(int64(exp), 10)})
	open := job("open")
	for nostr.Now() <= exp { // the expiration must pass before the worker starts
		time.Sleep(50 * time.Millisecond)
	}

	w, stop := runWorker(t, func(cfg *worker.Config) {
		cfg.NWC = workerURI.Encode()
		cfg.Models = pricedModels(t, 5000, 0, "")
		cfg.Parallel, cfg.Queue = 1, 1 // a worker that queued the backlog would answer busy
	}, url)
	awaitQuote(t, c, w.PubKey(), open.ID) // the backlog is screened
	publish(nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"status", "error", "paused by owner"}, {"e", handedBack.ID}, {"p", handedBack.PubKey}}})
	awaitQuote(t, c, w.PubKey(), handedBack.ID)
	fresh := job("fresh")
	awaitQuote(t, c, w.PubKey(), fresh.ID)
	awaitQuote(t, c, w.PubKey(), lapsing.ID)
	stop() // everything the worker was going to publish is out

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := c.Query(ctx, nostr.Filter{Authors: []string{w.PubKey()}, Tags: nostr.TagMap{"e": {done.ID, leased.ID, expired.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, evt := range evs {
		t.Errorf("worker published kind %d for job %s: %s %v", evt.Kind, nip90.JobID(evt), evt.Content, evt.Tags)
	}
	if s := w.Stats(); s.Busy != 0 {
		t.Errorf("worker answered busy %d times", s.Busy)
	}
}

// awaitQuote waits until worker has published payment-required feedback for job on c.
func awaitQuote(t *testing.T, c *relayconn.Conn, worker, job string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Authors: []string{worker}, Tags: nostr.TagMap{"e": {job}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		select {
		case evt := <-sub.Events:
			if fb, err := nip90.ParseJobFeedback(evt); err == nil && fb.Status == nip90.StatusPaymentRequired {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no quote from the worker for job %s", job)
		}
	}
}
