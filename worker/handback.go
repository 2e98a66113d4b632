package worker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// maxHandbacks bounds the jobs one link watches for a hand-back: the #e values of one filter.
// A job past it is looked at again when its lease ends, as before.
const maxHandbacks = 64

// handbacks are the jobs this worker lost to another worker's lease on one relay, watched for
// their holder handing them back: error feedback from the holder releases its lease (a holder
// paused by its owner, an input it could not fetch, a result no relay took), and the job is
// tried again at once instead of when the lease would have lapsed, up to a lease's length later.
// The link follows them all with one subscription (kind 7000, #e of the jobs), renewed when the
// set grows.
type handbacks struct {
	mu      sync.Mutex
	jobs    map[string]*handback // by job id
	changed chan struct{}        // 1-buffered: the set grew since the subscription was made
}

// handback is one watched job.
type handback struct {
	holder  string          // the lease holder's pubkey: only its error feedback releases the lease
	since   nostr.Timestamp // the releasing feedback is no older than this
	claimed nostr.Timestamp // the holder's latest claim seen: an error older than it came before it
	back    chan struct{}   // closed when the holder handed the job back
}

// handbackSkew is how far before the refusal a holder's releasing feedback may be dated: its
// clock may be behind ours (a relay with leases takes claims up to skew_seconds, 60 by default,
// from its clock). A holder's error from before its latest claim does not count (see saw).
const handbackSkew = 60

func newHandbacks() *handbacks {
	return &handbacks{jobs: map[string]*handback{}, changed: make(chan struct{}, 1)}
}

// watch adds a job lost to holder's lease, refused at time at. It returns a channel closed when
// the holder hands the job back, nil when the job cannot be watched (the set is full, the holder
// is unknown, or the job is watched already), and the function that ends the watch.
func (h *handbacks) watch(id, holder string, at nostr.Timestamp) (back <-chan struct{}, stop func()) {
	if holder == "" {
		return nil, func() {}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.jobs[id]; ok || len(h.jobs) >= maxHandbacks {
		return nil, func() {}
	}
	// the holder's release comes after its claim, which the relay had when it refused ours
	hb := &handback{holder: holder, since: at - handbackSkew, back: make(chan struct{})}
	h.jobs[id] = hb
	select {
	case h.changed <- struct{}{}:
	default:
	}
	return hb.back, func() { h.forget(id, hb) }
}

// forget ends the watch hb of job id (if a later watch of the job took its place, that one stays).
func (h *handbacks) forget(id string, hb *handback) {
	h.mu.Lock()
	if h.jobs[id] == hb {
		delete(h.jobs, id)
	}
	h.mu.Unlock()
}

// filter is the subscription that follows the watched jobs; ok is false when there are none.
func (h *handbacks) filter() (f nostr.Filter, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.jobs) == 0 {
		return f, false
	}
	ids := make([]string, 0, len(h.jobs))
	since := nostr.Now()
	for id, hb := range h.jobs {
		ids = append(ids, id)
		since = min(since, hb.since)
	}
	slices.Sort(ids)
	return nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": ids}, Since: &since}, true
}

// saw takes one feedback event from the subscription: error feedback from a watched job's
// holder hands the job back, unless it is older than the watch allows or than a claim of the
// holder's seen before it. (A relay sends stored events newest first, so a claim that came after
// an earlier error is seen before that error; live events come in the order they happen.)
func (h *handbacks) saw(evt *nostr.Event) {
	fb, err := nip90.ParseJobFeedback(evt)
	if err != nil || (fb.Status != nip90.StatusError && fb.Status != nip90.StatusProcessing) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hb := h.jobs[fb.JobID]
	if hb == nil || evt.PubKey != hb.holder {
		return
	}
	if fb.Status == nip90.StatusProcessing {
		hb.claimed = max(hb.claimed, evt.CreatedAt)
		return
	}
	if evt.CreatedAt < hb.since || evt.CreatedAt < hb.claimed {
		return
	}
	delete(h.jobs, fb.JobID)
	close(hb.back)
}

// minRenew is the least time between two subscriptions of one link's watch: a worker that
// loses many claims in a busy market renews it at most this often (the relay counts REQs
// against a rate limit), and a job's hand-back is noticed at most this much later (the new
// subscription's since reads back what came meanwhile).
const minRenew = time.Second

// renewAfterEnd is how long after the relay ended the watch's subscription (a CLOSED: rate
// limited, too many subscriptions) it is made again.
const renewAfterEnd = 10 * time.Second

// follow keeps the subscription of the watched jobs on conn until ctx ends or the connection
// does: made when the first job is watched, made again (the old one closed) when the set grows,
// at most every minRenew. A set that shrank keeps its subscription until then: the feedback of
// a job nobody watches is dropped. Feedback that arrives between two subscriptions is stored,
// and the new one's since reads it back.
func (h *handbacks) follow(ctx context.Context, conn *relayconn.Conn, log func(error)) {
	var (
		sub  *relayconn.Subscription
		last time.Time        // when sub was made
		due  <-chan time.Time // a renewal waiting for minRenew to pass
	)
	defer func() {
		if sub != nil {
			sub.Close()
		}
	}()
	renew := func() {
		if sub != nil {
			sub.Close()
			sub = nil
		}
		f, ok := h.filter()
		if !ok {
			return
		}
		last = time.Now()
		s, err := conn.Subscribe(ctx, f)
		if err != nil {
			log(err) // the leases' ends still bring the jobs back
			return
		}
		sub = s
	}
	select { // a new connection follows what the last one did
	case h.changed <- struct{}{}:
	default:
	}
	for {
		var events <-chan *nostr.Event
		var ended <-chan struct{}
		if sub != nil {
			events, ended = sub.Events, sub.Done()
		}
		select {
		case <-ctx.Done():
			return
		case <-conn.Done():
			return
		case <-h.changed:
			if due != nil {
				continue // renewing soon already
			}
			if wait := time.Until(last.Add(minRenew)); wait > 0 {
				due = time.After(wait)
				continue
			}
			renew()
		case <-due:
			due = nil
			renew()
		case evt := <-events:
			h.saw(evt)
		case <-ended: // refused or closed by the relay: try again later (the leases' ends still bring the jobs back)
			log(errSubscriptionEnded(sub.Reason()))
			sub = nil
			if due == nil {
				due = time.After(renewAfterEnd)
			}
		}
	}
}

// errSubscriptionEnded is a watch subscription the relay ended.
type errSubscriptionEnded string

func (e errSubscriptionEnded) Error() string { return "hand-back subscription ended: " + string(e) }
