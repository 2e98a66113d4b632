package relay

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/heartbeat"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay/internal/store"
)

// presence is what the relay sees that no event can claim: which connections, authenticated
// (NIP-42) as which pubkey, hold a live subscription to job request kinds right now. It is fed
// by khatru hooks: OnAuth, the QueryEvents call each REQ filter makes (whose context ends
// when the subscription closes or is replaced), and OnDisconnect. A filter with limit 0 makes
// no query and is not seen. Memory is bounded by the connections (each is bounded by
// MaxSubscriptions × MaxFilters filters, and by maxJobSubsPerConn here).
type presence struct {
	now   func() time.Time
	mu    sync.Mutex
	conns map[*khatru.WebSocket]*connPresence
}

const maxJobSubsPerConn = 256

type connPresence struct {
	pubkey string
	subs   map[*int]struct{} // one entry per live job-kind filter; the key is only an identity
	since  time.Time         // when it became a connected worker (authenticated and subscribed)
}

func newPresence(now func() time.Time) *presence {
	return &presence{now: now, conns: map[*khatru.WebSocket]*connPresence{}}
}

func (p *presence) conn(ws *khatru.WebSocket) *connPresence {
	c := p.conns[ws]
	if c == nil {
		c = &connPresence{subs: map[*int]struct{}{}}
		p.conns[ws] = c
	}
	return c
}

// settle updates c.since after a change: set when it became a connected worker, cleared when
// it stopped being one.
func (c *connPresence) settle(now time.Time) {
	switch on := c.pubkey != "" && len(c.subs) > 0; {
	case on && c.since.IsZero():
		c.since = now
	case !on:
		c.since = time.Time{}
	}
}

// authed is the OnAuth hook.
func (p *presence) authed(ctx context.Context, pubkey string) {
	ws := khatru.GetConnection(ctx)
	if ws == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn(ws)
	if c.pubkey != pubkey {
		c.since = time.Time{} // a new identity on the same connection starts afresh
	}
	c.pubkey = pubkey
	c.settle(p.now())
}

// noEvents is a closed channel: what track returns (khatru reads one event from each
// QueryEvents channel in its deletion checks, so a nil channel would block it forever).
var noEvents = func() chan *nostr.Event {
	ch := make(chan *nostr.Event)
	close(ch)
	return ch
}()

// track is a QueryEvents hook that returns no events: it records a client's filter for job
// request kinds until the filter's subscription ends.
func (p *presence) track(ctx context.Context, f nostr.Filter) (chan *nostr.Event, error) {
	ws := khatru.GetConnection(ctx)
	if ws == nil || khatru.IsInternalCall(ctx) || !slices.ContainsFunc(f.Kinds, nip90.IsRequestKind) {
		return noEvents, nil
	}
	key := new(int)
	p.mu.Lock()
	c := p.conn(ws)
	if len(c.subs) >= maxJobSubsPerConn {
		p.mu.Unlock()
		return noEvents, nil
	}
	c.subs[key] = struct{}{}
	c.settle(p.now())
	p.mu.Unlock()
	context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if c := p.conns[ws]; c != nil {
			delete(c.subs, key)
			c.settle(p.now())
		}
	})
	return noEvents, nil
}

// gone is the OnDisconnect hook.
func (p *presence) gone(ctx context.Context) {
	if ws := khatru.GetConnection(ctx); ws != nil {
		p.mu.Lock()
		delete(p.conns, ws)
		p.mu.Unlock()
	}
}

// connected returns each pubkey that is a connected worker now, with the earliest time one of
// its connections became one.
func (p *presence) connected() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]time.Time{}
	for _, c := range p.conns {
		if c.since.IsZero() {
			continue
		}
		if s, ok := out[c.pubkey]; !ok || c.since.Before(s) {
			out[c.pubkey] = c.since
		}
	}
	return out
}

// WorkerView is one row of /api/workers.
type WorkerView struct {
	PubKey string `json:"pubkey"`
	// From the worker's newest NIP-89 announcement (kind 31990), when the relay has one.
	Name   string       `json:"name,omitempty"`
	Kinds  []int        `json:"kinds,omitempty"`
	Prices []ModelPrice `json:"prices,omitempty"`
	// Connected: a connection authenticated as this pubkey holds a subscription to job kinds
	// now; ConnectedSince is when (unix seconds).
	Connected      bool           `json:"connected"`
	ConnectedSince int64          `json:"connected_since,omitempty"`
	Heartbeat      *HeartbeatView `json:"heartbeat,omitempty"`
	// Alive: the last heartbeat is at most alive_after_seconds old and not "offline".
	Alive bool     `json:"alive"`
	Jobs  JobStats `json:"jobs"`
	// Reviews counts the paid reviews of the worker stored here (nips/review.md: each with a
	// proof of payment the relay checked), the newest per reviewer and job; Rating is their
	// mean, 1 to 5, to one decimal (absent without reviews).
	Reviews int     `json:"reviews"`
	Rating  float64 `json:"rating,omitempty"`
}

// ModelPrice is one model's price in a worker's announcement.
type ModelPrice struct {
	Model       string `json:"model"`
	Kind        int    `json:"kind"`
	BaseMsat    int64  `json:"base_msat"`
	PerUnitMsat int64  `json:"per_unit_msat"`
	Unit        string `json:"unit,omitempty"`
}

// HeartbeatView is a worker's last heartbeat.
type HeartbeatView struct {
	At         int64  `json:"at"`
	AgeSeconds int64  `json:"age_seconds"`
	Status     string `json:"status,omitempty"` // ready, busy, paused, offline; "" for a free-text status
	Queue      *int   `json:"queue,omitempty"`
	Provider   string `json:"provider,omitempty"`
	Kinds      []int  `json:"kinds,omitempty"`
}

// WorkersResponse is the body of GET /api/workers.
type WorkersResponse struct {
	AliveAfterSeconds int64        `json:"alive_after_seconds"`
	Workers           []WorkerView `json:"workers"`
	Truncated         bool         `json:"truncated"`
}

// maxWorkersShown bounds /api/workers; maxStoredLooked bounds the announcements and heartbeats
// it reads from the store for one answer.
const (
	maxWorkersShown = 500
	maxStoredLooked = 2000
)

// Workers builds /api/workers: every pubkey connected as a worker now, with a heartbeat or an
// announcement among the newest maxStoredLooked of each, in the job table's ledger, or
// reviewed among the newest maxReviewsLooked paid reviews.
// Connected workers come first, then alive ones, then by newest heartbeat.
func (r *Relay) Workers(ctx context.Context, limit int) WorkersResponse {
	now := r.cfg.now()
	rows := map[string]*WorkerView{}
	row := func(pk string) *WorkerView {
		v := rows[pk]
		if v == nil {
			v = &WorkerView{PubKey: pk, Jobs: JobStats{MedianLeaseToResult: -1}}
			rows[pk] = v
		}
		return v
	}
	for pk, since := range r.presence.connected() {
		v := row(pk)
		v.Connected, v.ConnectedSince = true, since.Unix()
	}
	for pk, s := range r.jobs.WorkerStats() {
		row(pk).Jobs = s
	}
	for _, evt := range r.newest(ctx, heartbeat.Kind) {
		b, err := heartbeat.Parse(evt)
		if err != nil || !evt.CheckID() {
			continue
		}
		v := row(evt.PubKey)
		if v.Heartbeat != nil && v.Heartbeat.At >= int64(b.CreatedAt) {
			continue
		}
		hv := &HeartbeatView{At: int64(b.CreatedAt), AgeSeconds: max(0, now.Unix()-int64(b.CreatedAt)), Status: b.Status, Provider: b.Provider, Kinds: b.Kinds}
		if b.Queue >= 0 {
			q := b.Queue
			hv.Queue = &q
		}
		v.Heartbeat, v.Alive = hv, b.Alive(now, r.cfg.AliveAfter)
	}
	for pk, s := range r.reviews(ctx) {
		v := row(pk)
		v.Reviews, v.Rating = s.count, s.rating()
	}
	for _, evt := range r.newest(ctx, nip89.KindHandlerInfo) {
		info, err := nip89.ParseHandlerInfo(evt)
		if err != nil {
			continue
		}
		v := row(evt.PubKey)
		if v.Name != "" || v.Kinds != nil {
			continue // newest first: this one is older
		}
		v.Name, v.Kinds = info.Metadata.Name, info.Kinds
		if info.Metadata.Worker != nil {
			for _, m := range info.Metadata.Worker.Models {
				v.Prices = append(v.Prices, ModelPrice{Model: m.Name, Kind: m.Kind, BaseMsat: m.Price.BaseMsat, PerUnitMsat: m.Price.PerUnitMsat, Unit: m.Price.Unit})
			}
		}
	}
	out := WorkersResponse{AliveAfterSeconds: int64(r.cfg.AliveAfter / time.Second), Workers: make([]WorkerView, 0, min(len(rows), limit))}
	for _, v := range rows {
		out.Workers = append(out.Workers, *v)
	}
	slices.SortFunc(out.Workers, func(a, b WorkerView) int {
		if a.Connected != b.Connected {
			return boolFirst(a.Connected)
		}
		if a.Alive != b.Alive {
			return boolFirst(a.Alive)
		}
		if c := cmp.Compare(beatAt(b), beatAt(a)); c != 0 {
			return c
		}
		return cmp.Compare(a.PubKey, b.PubKey)
	})
	if len(out.Workers) > limit {
		out.Workers, out.Truncated = out.Workers[:limit], true
	}
	return out
}

func boolFirst(a bool) int {
	if a {
		return -1
	}
	return 1
}

func beatAt(v WorkerView) int64 {
	if v.Heartbeat == nil {
		return 0
	}
	return v.Heartbeat.At
}

// newest reads up to maxStoredLooked stored events of kind, newest first, expired ones
// included (a heartbeat that expired is still the worker's last).
func (r *Relay) newest(ctx context.Context, kind int) []*nostr.Event {
	if !r.gate.enter() {
		return nil
	}
	defer r.gate.leave()
	var out []*nostr.Event
	_ = r.db.Query(ctx, nostr.Filter{Kinds: []int{kind}}, store.Limits{Limit: maxStoredLooked, Scan: 4 * maxStoredLooked, Gate: r.reads}, func(evs []*nostr.Event) error {
		out = append(out, evs...)
		return nil
	})
	return out
}

// handleWorkers serves GET /api/workers[?limit=N].
func (r *Relay) handleWorkers(w http.ResponseWriter, req *http.Request) {
	limit := 200
	if s := req.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxWorkersShown {
			http.Error(w, "invalid: limit must be 1.."+strconv.Itoa(maxWorkersShown), http.StatusBadRequest)
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, r.Workers(ctx, limit))
}
