package e2e

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/worker"
)

// idleWorker configures a worker in idle mode whose owner's load is read from load (float64
// bits: the share of the cores other processes use), sampled every 100 ms: above 0.25 it pauses,
// after 300 ms below it serves again. Leases last 5 s.
func idleWorker(load *atomic.Uint64) func(*worker.Config) {
	return func(c *worker.Config) {
		c.When = worker.WhenIdle
		c.MaxOtherLoad = 0.25
		c.SampleEvery = 100 * time.Millisecond
		c.IdleAfter = 300 * time.Millisecond
		c.Lease = 5 * time.Second
		c.Owner = func() worker.OwnerSample { return worker.OwnerSample{OtherLoad: math.Float64frombits(load.Load())} }
	}
}

// An idle-mode worker holds a job's lease when its owner's CPU load goes high: it pauses, hands
// the running job back with "paused by owner" (releasing the lease), and the other worker, which
// found the job leased, takes it and finishes it. While paused it claims nothing new; once the
// load drops it serves again. The owner's load is injected: the real sampler is tested in
// worker/owner_test.go.
func TestIdleWorkerHandsBackItsLease(t *testing.T) {
	_, url := startRelay(t)
	// each worker's owner load, as float64 bits: the share of the cores other processes use
	var load, otherLoad atomic.Uint64
	noGrace := func(load *atomic.Uint64) func(*worker.Config) {
		return func(c *worker.Config) {
			idleWorker(load)(c)
			c.Grace = 0 // the running job is handed back at once: the test cannot wait for it to end first
		}
	}
	// the other worker starts paused (its owner busy), so the job is the idle worker's; both
	// are up before the job is posted, since loading a worker's models can take longer (with
	// -race) than the page takes to read
	otherLoad.Store(math.Float64bits(0.9))
	other := startWorkerWith(t, noGrace(&otherLoad), url)
	idle := startWorkerWith(t, noGrace(&load), url)
	c := testrelay.Dial(t, url)
	sk := nostr.GeneratePrivateKey()
	fb := feedbackFrom(t, c, idle.PubKey())
	if !waitUntil(context.Background(), 30*time.Second, func() bool { p, _ := idle.Paused(); return !p }) {
		t.Fatal("the idle worker never resumed after measuring its owner's load")
	}

	// a page long enough to be running still when the owner comes back
	job := post(t, c, sk, nostr.Tags{{"i", servePage(t, 24), "url"}})
	awaitFeedback(t, fb, job.ID, nip90.StatusProcessing, "")
	load.Store(math.Float64bits(0.9))       // the idle worker's owner comes back
	otherLoad.Store(math.Float64bits(0.05)) // and the other's leaves: it finds the job leased
	awaitFeedback(t, fb, job.ID, nip90.StatusError, "paused by owner")
	if paused, reason := idle.Paused(); !paused {
		t.Fatalf("the idle worker handed the job back but is not paused (%q)", reason)
	}
	if res := results(t, c, job.ID)[job.ID]; res.PubKey != other.PubKey() {
		t.Fatalf("result from %s, want the other worker %s", res.PubKey, other.PubKey())
	}

	// while paused, a new job is the other worker's alone
	job2 := post(t, c, sk, nostr.Tags{{"i", servePNG(t, "owner at work"), "url"}})
	if res := results(t, c, job2.ID)[job2.ID]; res.PubKey != other.PubKey() {
		t.Fatalf("job posted while paused: result from %s", res.PubKey)
	}
	if evs := testrelay.Query(t, c, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Authors: []string{idle.PubKey()}, Tags: nostr.TagMap{"e": {job2.ID}}}); len(evs) != 0 {
		t.Fatalf("the paused worker said %d things about a job posted while paused: %v", len(evs), evs[0].Tags)
	}
	if paused, _ := idle.Paused(); !paused {
		t.Fatal("the idle worker resumed while its owner was busy")
	}

	// the owner leaves: it serves again (a job addressed to it alone)
	load.Store(math.Float64bits(0.05))
	job3 := post(t, c, sk, nostr.Tags{{"i", servePNG(t, "spare cycles"), "url"}, {"p", idle.PubKey()}})
	if res := results(t, c, job3.ID)[job3.ID]; res.PubKey != idle.PubKey() {
		t.Fatalf("job addressed to the resumed worker: result from %s", res.PubKey)
	}
	if paused, reason := idle.Paused(); paused {
		t.Fatalf("paused after serving: %q", reason)
	}
}

// servePage serves a PNG of n lines of text.
func servePage(t testing.TB, n int) string {
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf("line %d of a long page the owner wants back", i+1))
	}
	return serveLines(t, lines...)
}

// feedbackFrom subscribes to every feedback event the pubkey publishes from now on.
func feedbackFrom(t testing.TB, c *relayconn.Conn, pubkey string) <-chan *nostr.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Authors: []string{pubkey}})
	if err != nil {
		t.Fatal(err)
	}
	return sub.Events
}

// awaitFeedback waits (bounded) for feedback on job with status, and info containing want.
func awaitFeedback(t testing.TB, fb <-chan *nostr.Event, job string, status nip90.Status, want string) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case evt := <-fb:
			f, err := nip90.ParseJobFeedback(evt)
			if err == nil && f.JobID == job && f.Status == status && (want == "" || f.Info == want) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s feedback %q on job %s", status, want, job)
		}
	}
}
