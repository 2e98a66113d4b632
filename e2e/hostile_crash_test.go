//go:build linux

package e2e

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/relay"
)

// TestHostileCrash SIGKILLs the relay process in a publish storm from several connections (job
// requests, quotes, lease claims, results and plain events, each connection publishing as fast
// as it gets OKs), restarts it on the same data folder and checks that every event that got OK
// true is served back and that the job table is what it was before the storm, plus the storm's
// jobs as far as their OKs say (a job's events sent without an OK may or may not be there).
// It kills twice, early in a storm and late in one, the second time on a folder that has been
// through the first.
func TestHostileCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startRelayProc(t, noLimitFlags...)
	accepted := quiescentJobs(t, p)
	before, err := p.jobs()
	if err != nil {
		t.Fatal(err)
	}
	for _, killAt := range []int{20, 400} {
		s := runStorm(t, p, killAt)
		t.Logf("SIGKILL after %d OK true: %d accepted, %d sent without an OK, %d jobs", killAt, len(s.accepted), len(s.unknown), len(s.jobs))
		for _, r := range s.refused {
			t.Errorf("storm: refused: %s", r)
		}
		p.restart()
		accepted = append(accepted, s.accepted...)
		missing, err := missingEvents(ctx, p.url(), accepted)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("after SIGKILL at %d OKs and a restart, %d of %d events that got OK true are gone (first: %s)",
				killAt, len(missing), len(accepted), missing[0])
		}
		after, err := p.jobs()
		if err != nil {
			t.Fatal(err)
		}
		compareJobs(t, before, after, s)
		before = after // quiescent again: the next storm starts from here
	}
}

// quiescentJobs publishes 20 jobs, five in each state (open, quoted, leased, done), one event
// at a time, and returns the ids of their events.
func quiescentJobs(t *testing.T, p *relayProc) []string {
	t.Helper()
	rc, err := dialRaw(context.Background(), p.url(), "127.0.0.7", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var ids []string
	for i := 0; i < 20; i++ {
		customer, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
		for _, evt := range jobEvents(customer, worker, "quiet-"+strconv.Itoa(i), i%4) {
			ok, err := rc.publish(evt, probeWait)
			if err != nil || !ok.OK {
				t.Fatalf("quiescent phase: kind %d: OK %v %q %v", evt.Kind, ok.OK, ok.Reason, err)
			}
			ids = append(ids, evt.ID)
		}
	}
	return ids
}

// jobEvents is a job's request and as many of its quote, lease claim and result as stage says
// (0: open, 1: quoted, 2: leased, 3: done), in the order they are published.
func jobEvents(customer, worker, name string, stage int) []nostr.Event {
	req := jobRequest(customer, nostr.Tag{"param", "n", name})
	evts := []nostr.Event{req, quote(worker, req, 1000), leaseClaim(worker, req, 10*time.Minute), jobResult(worker, req, "done: "+name)}
	return evts[:stage+1]
}

// stateAfter is the state of a job whose first n events (jobEvents order) are stored.
func stateAfter(n int) relay.JobState {
	return []relay.JobState{"", relay.JobOpen, relay.JobQuoted, relay.JobLeased, relay.JobDone}[n]
}

// stormJob is one job of a storm and how far its events got.
type stormJob struct {
	worker string // pubkey
	events []nostr.Event
	sent   int // events written, counted before the write (the last may have no OK)
	oked   int // 1 + the index of the last event that got OK true, on any connection
}

type storm struct {
	mu       sync.Mutex
	jobs     map[string]*stormJob // by request id
	accepted []string
	unknown  []string // sent, no OK before the kill
	refused  []string
}

// stormEvent is an event of a storm, with its job (nil for plain events) and index in it.
type stormEvent struct {
	evt nostr.Event
	job *stormJob
	idx int
}

// record notes ev's outcome on one connection; it reports whether the event got OK true. A
// copy may be refused: by the time it arrives the job may have moved on (a claim after the
// result is "duplicate: job already has a result"), so only the first publisher's refusals are
// kept.
func (s *storm) record(ev stormEvent, copy bool, ok nostr.OKEnvelope, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.unknown = append(s.unknown, ev.evt.ID)
		return false
	case !ok.OK:
		if !copy {
			s.refused = append(s.refused, fmt.Sprintf("kind %d: %s", ev.evt.Kind, ok.Reason))
		}
		return false
	}
	s.accepted = append(s.accepted, ev.evt.ID)
	if ev.job != nil {
		ev.job.oked = max(ev.job.oked, ev.idx+1)
	}
	return true
}

// runStorm runs four publishing connections until killAt events have got OK true, SIGKILLs the
// relay, and returns what each event's outcome was. A fifth connection publishes a copy of
// each event as its publisher sends it, as a client posting to a relay twice would: its copies
// arrive while the first is in flight, and an OK true for one means stored as much as any.
func runStorm(t *testing.T, p *relayProc, killAt int) *storm {
	t.Helper()
	s := &storm{jobs: map[string]*stormJob{}}
	var oks atomic.Int64
	kill := make(chan struct{})
	var killOnce sync.Once
	dial := func(ip string) *rawClient {
		rc, err := dialRaw(context.Background(), p.url(), ip, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		return rc
	}
	echoes := make(chan stormEvent, 64)
	var publishers, echo sync.WaitGroup
	echo.Add(1)
	go func(rc *rawClient) {
		defer echo.Done()
		alive := true
		for ev := range echoes {
			if alive { // after the kill, drain until the publishers are done
				ok, err := rc.publish(ev.evt, probeWait)
				s.record(ev, true, ok, err)
				alive = err == nil
			}
		}
	}(dial("127.0.2.9"))
	for c := 0; c < 4; c++ {
		rc := dial(fmt.Sprintf("127.0.2.%d", c+1))
		publishers.Add(1)
		go func() {
			defer publishers.Done()
			publish := func(ev stormEvent) bool {
				s.mu.Lock()
				if ev.job != nil {
					ev.job.sent++
				}
				s.mu.Unlock()
				select {
				case echoes <- ev:
				default: // the echo is behind: this one goes out once
				}
				ok, err := rc.publish(ev.evt, probeWait)
				if !s.record(ev, false, ok, err) {
					return false
				}
				if oks.Add(1) == int64(killAt) {
					killOnce.Do(func() { close(kill) })
				}
				return true
			}
			for i := 0; ; i++ {
				customer, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
				evts := jobEvents(customer, worker, fmt.Sprintf("storm-%d-%d-%d", killAt, c, i), i%4)
				job := &stormJob{events: evts}
				if len(evts) > 1 {
					job.worker = evts[1].PubKey
				}
				s.mu.Lock()
				s.jobs[evts[0].ID] = job
				s.mu.Unlock()
				for idx, evt := range evts {
					if !publish(stormEvent{evt, job, idx}) {
						return
					}
				}
				// a plain event beside the jobs: a NIP-89 handler announcement
				ann := signed(worker, nostr.Event{Kind: 31990, Tags: nostr.Tags{{"d", fmt.Sprint("storm-", i)}, {"k", "5000"}}, Content: "{}"})
				if !publish(stormEvent{evt: ann}) {
					return
				}
			}
		}()
	}
	select {
	case <-kill:
	case <-time.After(30 * time.Second):
		t.Errorf("storm: %d of %d OKs in 30 s; killing anyway", oks.Load(), killAt)
	}
	p.kill()
	publishers.Wait() // every connection fails once the process is gone
	close(echoes)
	echo.Wait()
	return s
}

// compareJobs checks the job table after a restart: each row of before is unchanged (but for
// its age); each storm job whose request got OK true has a row, in a state between what its
// OKs say and what its sent events would make it; no other row appears.
func compareJobs(t *testing.T, before, after []relay.JobView, s *storm) {
	t.Helper()
	rows := map[string]relay.JobView{}
	for _, r := range after {
		rows[r.ID] = r
	}
	for _, b := range before {
		a, ok := rows[b.ID]
		if !ok {
			t.Errorf("job table after the kill: job %s (%s) is gone", b.ID, b.State)
			continue
		}
		delete(rows, b.ID)
		b.AgeSeconds, a.AgeSeconds = 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Errorf("job table after the kill: job changed:\nbefore %+v\nafter  %+v", b, a)
		}
	}
	rank := map[relay.JobState]int{"": 0, relay.JobOpen: 1, relay.JobQuoted: 2, relay.JobLeased: 3, relay.JobDone: 4}
	for id, job := range s.jobs {
		r, ok := rows[id]
		delete(rows, id)
		if !ok {
			if job.oked > 0 {
				t.Errorf("job table after the kill: storm job %s got OK true for its request but has no row", id)
			}
			continue
		}
		lo, hi := stateAfter(max(job.oked, 1)), stateAfter(job.sent)
		if rank[r.State] < rank[lo] || rank[r.State] > rank[hi] {
			t.Errorf("job table after the kill: storm job %s is %s; %d of its events got OK true, %d were sent: want %s to %s",
				id, r.State, job.oked, job.sent, lo, hi)
		}
		switch {
		case r.State == relay.JobLeased && r.Holder != job.worker:
			t.Errorf("job table after the kill: storm job %s leased by %s, want %s", id, r.Holder, job.worker)
		case r.State == relay.JobDone && r.ResultBy != job.worker:
			t.Errorf("job table after the kill: storm job %s done by %s, want %s", id, r.ResultBy, job.worker)
		}
	}
	for id, r := range rows {
		t.Errorf("job table after the kill: unexpected job %s (%s)", id, r.State)
	}
}
