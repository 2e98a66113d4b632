package relay

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/relay/internal/store"
)

// With group commit, a job event whose commit fails after it was queued (and broadcast)
// leaves the job table as it was: the lease reserved for a claim is released, a quote that
// was never stored neither adds a quote nor changes its author's price, and a request that was
// never stored leaves no job. A store that refuses the save at once reserves nothing.
func TestGroupCommitFailedSaveUndoesReservation(t *testing.T) {
	cfg := testConfig(t)
	r, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	customer, worker := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	if err := r.storeEvent(context.Background(), &req); err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	q := quote(t, worker, req, time.Now(), 3000)
	if err := r.storeEvent(context.Background(), &q); err != nil {
		t.Fatal(err)
	}
	diskFull := errors.New("mdb_txn_commit: MDB_MAP_FULL")
	r.enqueue = func(*nostr.Event) (pending, error) {
		return pending{fresh: true, wait: func() error { return diskFull }}, nil
	}
	requote, q2 := quote(t, worker, req, time.Now().Add(time.Second), 4000), quote(t, other, req, time.Now(), 1000)
	for _, evt := range []nostr.Event{requote, q2} {
		if err := r.storeEvent(context.Background(), &evt); !errors.Is(err, diskFull) {
			t.Fatalf("quote whose commit fails: %v, want %v", err, diskFull)
		}
	}
	if job, _ := r.jobs.Lookup(req.ID); len(job.Quotes) != 1 || job.Quotes[0].PubKey != worker.pk || job.Quotes[0].Msat != 3000 {
		t.Fatalf("failed quotes left %+v, want the first quote of 3000 msat only", job.Quotes)
	}
	c := claim(t, worker, req, time.Now(), time.Minute)
	if err := r.storeEvent(context.Background(), &c); !errors.Is(err, diskFull) {
		t.Fatalf("claim whose commit fails: %v, want %v", err, diskFull)
	}
	if job, _ := r.jobs.Lookup(req.ID); job.Holder != "" || job.LeaseEvent != "" {
		t.Fatalf("failed claim left a lease: %+v", job)
	}
	req2 := jobRequest(t, customer, time.Now().Add(time.Second))
	if err := r.storeEvent(context.Background(), &req2); !errors.Is(err, diskFull) {
		t.Fatalf("request whose commit fails: %v, want %v", err, diskFull)
	}
	if _, ok := r.jobs.Lookup(req2.ID); ok {
		t.Fatal("failed request left a job")
	}

	r.enqueue = func(*nostr.Event) (pending, error) { return pending{}, store.ErrClosed }
	if err := r.storeEvent(context.Background(), &c); !errors.Is(err, errShuttingDown) {
		t.Fatalf("claim refused by the store: %v, want %v", err, errShuttingDown)
	}
	if job, _ := r.jobs.Lookup(req.ID); job.Holder != "" || job.LeaseEvent != "" {
		t.Fatalf("refused claim left a lease: %+v", job)
	}
}

// Sending the same claim twice is accepted (OK true, as a duplicate) and keeps the lease.
func TestGroupCommitDuplicateClaim(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, worker := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	cl := claim(t, worker, req, time.Now(), time.Minute)
	for _, evt := range []struct {
		name string
		msg  string
	}{{"request", publish(t, c, req)}, {"request again", publish(t, c, req)}, {"claim", publish(t, c, cl)}, {"claim again", publish(t, c, cl)}} {
		if evt.msg != "" {
			t.Fatalf("%s: %s", evt.name, evt.msg)
		}
	}
	job, ok := tr.r.jobs.Lookup(req.ID)
	if !ok || job.Holder != worker.pk || job.LeaseEvent != cl.ID {
		t.Fatalf("job after duplicate claim: %+v", job)
	}
}

// --group-commit=false keeps the old path: each save commits on its own under the table's lock.
func TestWithoutGroupCommit(t *testing.T) {
	cfg := testConfig(t)
	cfg.GroupCommit = false
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	if msg := publish(t, c, req); msg != "" {
		t.Fatal(msg)
	}
	if msg := publish(t, c, claim(t, a, req, time.Now(), time.Minute)); msg != "" {
		t.Fatal(msg)
	}
	if msg := publish(t, c, claim(t, b, req, time.Now(), time.Minute)); msg == "" {
		t.Fatal("second claim granted")
	}
	// /api/stats: one commit per accepted event without group commit
	if st := tr.r.Stats(); st.EventsAccepted != 2 || st.Commits != 2 || st.CommittedOps != 2 {
		t.Fatalf("stats: %d accepted, %d commits of %d ops; want 2, 2, 2", st.EventsAccepted, st.Commits, st.CommittedOps)
	}
}

// A live subscription gets each accepted event once, whether it is a job event (through the job
// table) or not, and sending an event again does not broadcast it again; refused events are
// never broadcast. Both with and without group commit.
func TestBroadcastOncePerAcceptedEvent(t *testing.T) {
	for _, group := range []bool{true, false} {
		t.Run(map[bool]string{true: "group-commit", false: "no-group-commit"}[group], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.GroupCommit = group
			kinds, err := ParseKindSet(DefaultKinds + ",1")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Kinds = kinds
			tr := startRelay(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sub, err := tr.connect(t).Subscribe(ctx, nostr.Filter{Kinds: []int{1, 5000, 7000}, Limit: 0})
			if err != nil {
				t.Fatal(err)
			}
			<-sub.EOSE
			c := tr.connect(t)
			customer, a, b := newKey(t), newKey(t), newKey(t)
			req := jobRequest(t, customer, time.Now())
			note := customer.sign(t, nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: "hello"})
			claimA := claim(t, a, req, time.Now(), time.Minute)
			claimB := claim(t, b, req, time.Now(), time.Minute) // refused: a holds the lease
			for i, evt := range []nostr.Event{req, req, note, note, claimA, claimB, claimA} {
				if msg := publish(t, c, evt); (msg == "") != (evt.ID != claimB.ID) {
					t.Fatalf("publish #%d (kind %d): %q", i, evt.Kind, msg)
				}
			}
			// a last event marks the end: whatever arrives before it is all that was broadcast
			end := customer.sign(t, nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: "the end"})
			if msg := publish(t, c, end); msg != "" {
				t.Fatalf("publish the end marker: %q", msg)
			}
			want := []string{req.ID, note.ID, claimA.ID}
			var got []string
		read:
			for {
				select {
				case evt := <-sub.Events:
					if evt.ID == end.ID {
						break read
					}
					got = append(got, evt.ID)
				case <-ctx.Done():
					t.Fatalf("the end marker never arrived; got %v", got)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("subscription got %v, want %v", got, want)
			}
		})
	}
}

// An event broadcast as soon as it is queued, before a subscription starts, is not lost to that
// subscription while its commit is still pending: the subscription listens first, and its
// query waits for the commits queued before it (Store.Flush), so it finds the event stored.
func TestSubscriptionSeesEventQueuedBeforeIt(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	queued := make(chan struct{}, 1)
	hold := make(chan struct{})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(hold) }) }) // before the relay stops
	tr.r.enqueue = func(evt *nostr.Event) (pending, error) {
		p, err := tr.r.queue(evt)
		if err == nil {
			queued <- struct{}{}
			wait := p.wait
			p.wait = func() error { <-hold; return wait() } // the publisher's OK waits
		}
		return p, err
	}
	k := newKey(t)
	evt := jobRequest(t, k, time.Now())
	published := make(chan string, 1)
	go func() { published <- publish(t, tr.connect(t), evt) }()
	<-queued // evt is queued and was broadcast to nobody
	got := testrelay.Query(t, tr.connect(t), nostr.Filter{Kinds: []int{5000}, Authors: []string{k.pk}})
	if len(got) != 1 || got[0].ID != evt.ID {
		t.Fatalf("a subscription that started after the broadcast found %d events", len(got))
	}
	release.Do(func() { close(hold) })
	if msg := <-published; msg != "" {
		t.Fatalf("publish: %q", msg)
	}
}
