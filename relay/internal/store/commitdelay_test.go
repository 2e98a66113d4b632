package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// commitSizes records the batch size of every commit of s.
func commitSizes(s *Store) func() []int {
	var mu sync.Mutex
	var sizes []int
	s.beforeCommit = func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}
	return func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(sizes)
	}
}

// leaderWaiting polls, until ctx ends, for a commit leader waiting for its batch to fill.
func leaderWaiting(t *testing.T, ctx context.Context, s *Store) {
	t.Helper()
	for {
		s.mu.Lock()
		waiting := s.full != nil
		s.mu.Unlock()
		if waiting {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("no leader waits for its batch")
		case <-time.After(time.Millisecond):
		}
	}
}

// TestCommitGathersItsWriters: after a commit of k ops, the next leader waits for k ops before
// it commits, so writers that each queue their next op only once the last one is stored (as
// clients waiting for their OK do) share one commit instead of splitting into alternating
// batches. Each writer here queues only after the one before is waiting, so without the wait
// the first would commit alone.
func TestCommitGathersItsWriters(t *testing.T) {
	const k = 4
	s := openTest(t, Options{MaxCommitDelay: time.Minute})
	sizes := commitSizes(s)
	var round1 []*nostr.Event
	for i := range k {
		round1 = append(round1, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint("round 1, ", i)))
	}
	saveBatch(t, s, round1) // queued before anyone waits: one commit of k
	s.mu.Lock()
	s.lastCommit = time.Hour // so that the wait's bound is MaxCommitDelay, not the disk's speed
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, k)
	var round2 []*nostr.Event
	for i := range k {
		e := mkEvent(pkB, 1, nostr.Timestamp(i), fmt.Sprint("round 2, ", i))
		round2 = append(round2, e)
		c, err := s.Enqueue(e)
		if err != nil {
			t.Fatal(err)
		}
		go func() { errs <- c.Wait() }()
		if i == 0 {
			leaderWaiting(t, ctx, s)
		}
	}
	for range k {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("round 2 not committed; commits so far %v", sizes())
		}
	}
	if got := sizes(); !slices.Equal(got, []int{k, k}) {
		t.Fatalf("commit sizes %v, want [%d %d]", got, k, k)
	}
	requireSame(t, queryAll(t, s, nostr.Filter{Authors: []string{pkB}}, Limits{}),
		bruteForce(round2, nostr.Filter{}, 0), "round 2 stored")
}

// TestCommitWaitIsBounded: a leader waiting for writers that do not come commits what it has
// once MaxCommitDelay passes, and Close ends the wait at once.
func TestCommitWaitIsBounded(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		close bool
	}{
		{"delay passes", 5 * time.Millisecond, false},
		{"close", time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{MaxCommitDelay: tc.delay})
			sizes := commitSizes(s)
			var round1 []*nostr.Event
			for i := range 3 {
				round1 = append(round1, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i)))
			}
			saveBatch(t, s, round1)
			s.mu.Lock()
			s.lastCommit = 4 * time.Hour
			s.mu.Unlock()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lone := mkEvent(pkB, 1, 1, "alone")
			c, err := s.Enqueue(lone)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			if tc.close {
				leaderWaiting(t, ctx, s)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatal("the lone write was never committed")
			}
			if got := sizes(); !slices.Equal(got, []int{3, 1}) {
				t.Fatalf("commit sizes %v, want [3 1]", got)
			}
		})
	}
}

// TestCommitWaitBacksOff: a leader whose wait gathered nothing (its writers did not come back,
// as a job request's customer does not while a worker's claim commits) makes the next leader
// that would wait commit at once, so a claim does not pay the wait on every job; the one after
// that waits again, and a wait that gathers ops clears the backoff. Whether a leader waited is
// read without timing it: with the bound at an hour, one that waits never commits alone.
func TestCommitWaitBacksOff(t *testing.T) {
	s := openTest(t, Options{MaxCommitDelay: 5 * time.Millisecond})
	sizes := commitSizes(s)
	batch := func(round string) {
		var evts []*nostr.Event
		for i := range 3 {
			evts = append(evts, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(round, i)))
		}
		saveBatch(t, s, evts) // one commit of 3: the next leader waits for 3 ops
	}
	lone := func(content string) *Commit {
		c, err := s.Enqueue(mkEvent(pkB, 1, 1, content))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	backoff := func() (skip, backoff int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waitSkip, s.waitBackoff
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := func(c *Commit, what string) {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("%s never committed; commits so far %v", what, sizes())
		}
	}

	batch("first ")
	s.mu.Lock()
	s.lastCommit = time.Hour
	s.mu.Unlock()
	wait(lone("nobody follows"), "the first lone write") // waits 5 ms for nobody
	if skip, b := backoff(); skip != 1 || b != 1 {
		t.Fatalf("after a wait that gathered nothing: skip %d, backoff %d; want 1, 1", skip, b)
	}

	batch("second ")
	s.mu.Lock()
	s.opts.MaxCommitDelay, s.lastCommit = time.Hour, time.Hour // a leader that waits now waits an hour
	s.mu.Unlock()
	wait(lone("skips the wait"), "the write after a fruitless wait") // commits at once
	if skip, _ := backoff(); skip != 0 {
		t.Fatalf("skip %d after one skipped wait, want 0", skip)
	}

	batch("third ")
	s.mu.Lock()
	s.lastCommit = time.Hour
	s.mu.Unlock()
	c := lone("waits again")
	go c.Wait() // leads the commit
	leaderWaiting(t, ctx, s)
	var more []*Commit
	for i := range 2 { // its writers come back: the wait ends full, and the backoff is cleared
		m, err := s.Enqueue(mkEvent(pkA, 1, nostr.Timestamp(10+i), fmt.Sprint("back ", i)))
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, m)
	}
	for _, m := range append(more, c) {
		wait(m, "the gathered batch")
	}
	if skip, b := backoff(); skip != 0 || b != 0 {
		t.Fatalf("after a wait that gathered ops: skip %d, backoff %d; want 0, 0", skip, b)
	}
	if got, want := sizes(), []int{3, 1, 3, 1, 3, 3}; !slices.Equal(got, want) {
		t.Fatalf("commit sizes %v, want %v", got, want)
	}
}
