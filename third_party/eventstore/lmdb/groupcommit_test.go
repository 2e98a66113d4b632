package lmdb

// sparecycles patch: tests for group commit (groupcommit.go) and marshal (marshal.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fiatjaf/eventstore"
	bin "github.com/fiatjaf/eventstore/internal/binary"
	"github.com/nbd-wtf/go-nostr"
)

func signedEvents(t testing.TB, n int) []*nostr.Event {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	events := make([]*nostr.Event, n)
	for i := range events {
		evt := &nostr.Event{Kind: 1, CreatedAt: nostr.Timestamp(1700000000 + i), Content: fmt.Sprint("hello ", i),
			Tags: nostr.Tags{{"t", "x"}, {"e", fmt.Sprintf("%064x", i)}}}
		if err := evt.Sign(sk); err != nil {
			t.Fatal(err)
		}
		events[i] = evt
	}
	return events
}

func openGroupCommit(t testing.TB, dir string) *LMDBBackend {
	t.Helper()
	db := &LMDBBackend{Path: dir, GroupCommit: true, NoWriteMap: true}
	if err := db.Init(); err != nil {
		t.Fatal(err)
	}
	return db
}

// Concurrent saves, each event sent twice, some of them in the same batch: every event is
// stored once, every second copy is told ErrDupEvent, and all survive reopening.
func TestGroupCommitConcurrentSavesAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	db := openGroupCommit(t, dir)
	events := signedEvents(t, 300)
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored, dups := map[string]int{}, map[string]int{}
	for _, evt := range append(append([]*nostr.Event{}, events...), events...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.SaveEvent(context.Background(), evt)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				stored[evt.ID]++
			case errors.Is(err, eventstore.ErrDupEvent):
				dups[evt.ID]++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, evt := range events {
		if stored[evt.ID] != 1 || dups[evt.ID] != 1 {
			t.Fatalf("%s: stored %d times, duplicate %d times; want 1 and 1", evt.ID, stored[evt.ID], dups[evt.ID])
		}
	}
	db.Close()

	db = openGroupCommit(t, dir)
	defer db.Close()
	ch, err := db.QueryEvents(eventstore.SetNegentropy(context.Background()), nostr.Filter{Kinds: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range ch {
		n++
	}
	if n != len(events) {
		t.Fatalf("reopened store has %d events, want %d", n, len(events))
	}
}

// A batch whose transaction fails is saved one event at a time: one bad event does not fail
// the others queued with it.
func TestGroupCommitBadEventDoesNotFailBatch(t *testing.T) {
	db := openGroupCommit(t, t.TempDir())
	defer db.Close()
	good := signedEvents(t, 2)
	bad := *good[1]
	bad.ID = "abcd" // fails inside the transaction (not 32 bytes of hex)
	batch := []*pendingSave{{evt: good[0], done: make(chan error, 1)}, {evt: &bad, done: make(chan error, 1)}, {evt: good[1], done: make(chan error, 1)}}
	db.commitBatch(batch)
	if err := <-batch[0].done; err != nil {
		t.Fatal(err)
	}
	if err := <-batch[1].done; err == nil {
		t.Fatal("bad event saved")
	}
	if err := <-batch[2].done; err != nil {
		t.Fatal(err)
	}
}

// Close writes what is queued, stops the committer, and later saves are refused.
func TestGroupCommitClose(t *testing.T) {
	before := runtime.NumGoroutine()
	db := openGroupCommit(t, t.TempDir())
	events := signedEvents(t, 50)
	waits := make([]func() error, len(events))
	for i, evt := range events {
		waits[i] = db.QueueSave(evt)
	}
	db.Close()
	for i, wait := range waits {
		if err := wait(); err != nil {
			t.Fatalf("event %d queued before Close: %v", i, err)
		}
	}
	if err := db.SaveEvent(context.Background(), signedEvents(t, 1)[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("save after Close: %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

func TestMarshalMatchesBinaryMarshal(t *testing.T) {
	events := signedEvents(t, 3)
	events = append(events, &nostr.Event{ID: events[0].ID, PubKey: events[0].PubKey, Sig: events[0].Sig, Kind: 5000,
		Tags: nostr.Tags{{"i", "some input", "text"}, {}, {"param", "a", "", "b"}}, Content: ""})
	for _, evt := range events {
		want, err := bin.Marshal(evt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshal(evt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("marshal differs from binary.Marshal for %v", evt)
		}
	}
}

// Enqueue tells a duplicate before queueing: while the first copy is queued, and after it is
// committed (also after reopening); only the first copy's wait sees a commit.
func TestEnqueueRefusesDuplicatesAtOnce(t *testing.T) {
	dir := t.TempDir()
	db := openGroupCommit(t, dir)
	evt := signedEvents(t, 1)[0]
	wait, err := db.Enqueue(evt)
	if err != nil {
		t.Fatalf("first Enqueue: %v", err)
	}
	if _, err := db.Enqueue(evt); !errors.Is(err, eventstore.ErrDupEvent) {
		t.Fatalf("second Enqueue while the first is queued: %v, want ErrDupEvent", err)
	}
	if err := wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if _, err := db.Enqueue(evt); !errors.Is(err, eventstore.ErrDupEvent) {
		t.Fatalf("Enqueue after commit: %v, want ErrDupEvent", err)
	}
	db.Close()
	if _, err := db.Enqueue(evt); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Close: %v, want ErrClosed", err)
	}
	db = openGroupCommit(t, dir)
	defer db.Close()
	if _, err := db.Enqueue(evt); !errors.Is(err, eventstore.ErrDupEvent) {
		t.Fatalf("Enqueue after reopening: %v, want ErrDupEvent", err)
	}
	if _, err := db.Enqueue(&nostr.Event{ID: "zz", Kind: 1}); err == nil || errors.Is(err, eventstore.ErrDupEvent) {
		t.Fatalf("Enqueue of a malformed id: %v, want an error", err)
	}
}

// Of many goroutines enqueueing the same events at once, exactly one per event is queued.
func TestEnqueueOneWinnerPerEvent(t *testing.T) {
	db := openGroupCommit(t, t.TempDir())
	defer db.Close()
	events := signedEvents(t, 50)
	var wg sync.WaitGroup
	var mu sync.Mutex
	queued := map[string]int{}
	for range 4 {
		for _, evt := range events {
			wg.Go(func() {
				wait, err := db.Enqueue(evt)
				if errors.Is(err, eventstore.ErrDupEvent) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if err := wait(); err != nil {
					t.Error(err)
				}
				mu.Lock()
				queued[evt.ID]++
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for _, evt := range events {
		if queued[evt.ID] != 1 {
			t.Errorf("event %s queued %d times, want 1", evt.ID, queued[evt.ID])
		}
	}
}
