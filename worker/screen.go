package worker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// A worker that joins late finds a backlog of requests on the relay, most of them served
// already. It screens them before they are queued: a job with a result, a job whose NIP-40
// expiration passed, and (on a relay that coordinates leases) a job another worker holds the
// lease on are left alone, with no quote, no invoice and no "busy" feedback.

const (
	// screenBatch is how many job ids one screening query asks about.
	screenBatch = 50
	// maxBacklog bounds the stored requests a link holds before the relay's EOSE; a larger
	// backlog is screened in parts of this size.
	maxBacklog = 5_000
)

// screenBacklog screens requests that link l found stored on its relay and takes the open
// ones in. It runs off the link's goroutine (the link keeps reading live events), in the
// worker's background group.
func (w *Worker) screenBacklog(ctx context.Context, l *link, backlog []*nostr.Event) {
	w.async.Add(1)
	go func() {
		defer w.async.Done()
		for part := range slices.Chunk(backlog, screenBatch) {
			if ctx.Err() != nil {
				return
			}
			closed := w.closedJobs(ctx, l, part)
			for _, evt := range part {
				held, ok := closed[evt.ID]
				switch {
				case !ok:
					w.intake(ctx, l, evt)
				case held.Until != 0:
					w.log.Debug().Str("job", evt.ID).Str("relay", l.url).Msg("backlog job leased by another worker: looking again when its holder hands it back or the lease ends")
					w.intakeAfter(ctx, l, evt, held)
				default:
					w.log.Debug().Str("job", evt.ID).Str("relay", l.url).Msg("backlog job skipped: done or expired")
				}
			}
		}
	}()
}

// intakeAfter takes evt in once the lease held on l has ended (if its holder died without a
// result, this worker may serve the job) or once its holder hands it back (handback.go).
func (w *Worker) intakeAfter(ctx context.Context, l *link, evt *nostr.Event, held lease.Held) {
	if !w.later.add(evt.ID) {
		return // waiting already (seen again after a reconnect), or too many wait
	}
	back, stopWatch := l.handbacks.watch(evt.ID, held.Holder, nostr.Now())
	w.async.Add(1)
	go func() {
		defer w.async.Done()
		defer w.later.remove(evt.ID)
		defer stopWatch()
		t := time.NewTimer(time.Until(time.Unix(int64(held.Until)+1, 0)))
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			w.intake(ctx, l, evt)
		case <-back:
			w.intake(ctx, l, evt)
		}
	}()
}

// laterSet holds the ids of the jobs intakeAfter waits on, at most maxBacklog of them.
type laterSet struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

// add reports whether id was added: false when it is there already or the set is full.
func (s *laterSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok || len(s.ids) >= maxBacklog {
		return false
	}
	if s.ids == nil {
		s.ids = map[string]struct{}{}
	}
	s.ids[id] = struct{}{}
	return true
}

func (s *laterSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
}

// closedJobs returns the jobs among evs that are done or expired, or leased by another worker
// on l (with the lease's holder and end, zero for the others), asking l in one or two queries.
// A query that fails closes nothing: the claim before running still checks.
func (w *Worker) closedJobs(ctx context.Context, l *link, evs []*nostr.Event) map[string]lease.Held {
	closed := map[string]lease.Held{}
	now := nostr.Now()
	var ids []string
	var kinds []int
	for _, evt := range evs {
		if exp := expiration(evt); exp != 0 && exp <= now {
			closed[evt.ID] = lease.Held{}
			continue
		}
		ids = append(ids, evt.ID)
		if k := nip90.ResultKind(evt.Kind); !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	if len(ids) == 0 {
		return closed
	}
	results, err := l.query(ctx, nostr.Filter{Kinds: kinds, Tags: nostr.TagMap{"e": ids}, Limit: 4 * len(ids)})
	if err != nil {
		l.log.Debug().Err(err).Msg("screen backlog: results query failed")
	}
	for _, res := range results {
		if t := res.Tags.Find("e"); len(t) >= 2 && slices.Contains(ids, t[1]) {
			closed[t[1]] = lease.Held{}
		}
	}
	if !l.leases() {
		return closed
	}
	feedback, err := l.query(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": ids}, Limit: 20 * len(ids)})
	if err != nil {
		l.log.Debug().Err(err).Msg("screen backlog: feedback query failed")
	}
	for id, held := range liveLeases(feedback, w.key.PubKey, now) {
		if _, done := closed[id]; !done && slices.Contains(ids, id) {
			closed[id] = held
		}
	}
	return closed
}

// liveLeases reads job leases from feedback (nips/lease.md): for each job, the live lease held
// by a pubkey other than me at time now (its holder and end; of two, the later end). A holder's
// error feedback after its last claim releases the lease.
func liveLeases(feedback []*nostr.Event, me string, now nostr.Timestamp) map[string]lease.Held {
	type holding struct {
		lastClaim, released, end nostr.Timestamp
	}
	held := map[[2]string]*holding{} // job id, holder
	for _, fb := range feedback {
		if fb.Kind != nip90.KindFeedback || fb.PubKey == me {
			continue
		}
		e, status := fb.Tags.Find("e"), fb.Tags.Find("status")
		if len(e) < 2 || len(status) < 2 {
			continue
		}
		key := [2]string{e[1], fb.PubKey}
		h := held[key]
		if h == nil {
			h = &holding{}
			held[key] = h
		}
		switch status[1] {
		case string(nip90.StatusProcessing):
			d, ok, err := lease.Parse(fb.Tags)
			if !ok || err != nil {
				continue
			}
			h.lastClaim = max(h.lastClaim, fb.CreatedAt)
			h.end = max(h.end, fb.CreatedAt+nostr.Timestamp(d.Seconds()))
		case string(nip90.StatusError):
			h.released = max(h.released, fb.CreatedAt)
		}
	}
	live := map[string]lease.Held{}
	for key, h := range held {
		if h.lastClaim != 0 && h.end > now && h.released < h.lastClaim && h.end > live[key[0]].Until {
			live[key[0]] = lease.Held{Holder: key[1], Until: h.end}
		}
	}
	return live
}

// stillOpen checks a queued job again just before a priced worker quotes or runs it (it may
// have waited in the queue while another worker served it): expired, done on a relay that
// carries it, or leased by another worker on its home relay. A leased job is looked at again
// when the lease ends. Free jobs need only the expiration check here: their claim checks the
// rest before they run, and they publish nothing before it.
func (w *Worker) stillOpen(ctx context.Context, j *job) bool {
	if exp := expiration(j.event); exp != 0 && exp <= nostr.Now() {
		w.log.Debug().Str("job", j.event.ID).Msg("expired while queued: skipped")
		return false
	}
	if w.wallet == nil {
		return true
	}
	if w.delivered(ctx, j) {
		w.log.Debug().Str("job", j.event.ID).Msg("served by another worker while queued: skipped")
		return false
	}
	home := w.home(j)
	if home == nil {
		return true
	}
	feedback, err := home.query(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {j.event.ID}}, Limit: 100})
	if err != nil {
		return true // the claim finds out
	}
	if held, ok := liveLeases(feedback, w.key.PubKey, nostr.Now())[j.event.ID]; ok {
		w.log.Debug().Str("job", j.event.ID).Msg("leased by another worker: looking again when its holder hands it back or the lease ends")
		w.retryAfterLease(ctx, j, leaseHeld{Held: held, relay: home.url})
		return false
	}
	return true
}
