// Package relay is the sparecycles community relay: a khatru relay with an embedded LMDB store,
// market-safe write policies, the job table that coordinates leases (nips/lease.md), a truthful
// NIP-11 document and a read-only HTTP API (/api/jobs, /api/stats, /api/series, /api/workers) on
// the same port.
//
// Every policy is a plain function appended to khatru's hook slices; the job table is one more
// hook, wrapped around the store so a lease is granted in the same critical section that stores
// the claim.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fiatjaf/eventstore"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip40"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/sigcheck"
	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay/internal/store"
	"github.com/sparecycles/sparecycles/relay/web"
)

// Version is reported in NIP-11 and /api/stats.
const Version = "0.1.0"

// Relay is one running relay: the khatru relay, its store and its job table.
type Relay struct {
	cfg Config
	log zerolog.Logger
	kr  *khatru.Relay
	db  *store.Store
	// enqueue queues an event for the store's group commit (Relay.queue), replaced in tests to
	// make a commit fail.
	enqueue func(*nostr.Event) (pending, error)
	jobs    *JobTable
	// presence knows which authenticated connections subscribe to job kinds now (workers.go)
	presence *presence
	// conns counts open websockets per client IP; queries bounds each connection's reads of
	// stored events and reads is the relay-wide bound on read transactions for clients.
	conns   connLimit
	queries querySlots
	reads   chan struct{}
	// deleters are the authors of stored deletions (NIP-09): only their events can have been
	// deleted, so only theirs need the store's deletion lookup.
	deleters deleters
	gate     gate
	stats    stats
	start    time.Time
	page     *web.Page // the market page; nil with --web=false
}

type stats struct {
	connections atomic.Int64
	accepted    atomic.Int64
	mu          sync.Mutex
	refused     map[string]int64 // by NIP-01 prefix
	series      refusalSeries    // refusals per minute by prefix, for /api/series
	now         func() time.Time
}

func (s *stats) refuse(msg string) {
	prefix := msg
	if i := indexColon(msg); i > 0 {
		prefix = msg[:i]
	}
	now := s.now()
	s.mu.Lock()
	s.refused[prefix]++
	s.series.add(prefix, now)
	s.mu.Unlock()
}

func indexColon(s string) int {
	for i := 0; i < len(s) && i < 20; i++ {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// New opens the store in cfg.Data, rebuilds the job table from it and wires the policies.
// It starts no goroutine of its own; Serve serves and Close releases the store.
func New(cfg Config, logger zerolog.Logger) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := store.Options{
		Path:       cfg.Data,
		MaxReaders: maxReaders,
		// the store's encoding is never larger than the event's JSON; the margin is for safety
		MaxEventBytes: cfg.MaxEventBytes + 1024,
		Logger:        logger.With().Str("from", "store").Logger(),
	}
	opts.MaxCommitDelay = cfg.CommitDelay
	if cfg.CommitDelay == 0 {
		opts.MaxCommitDelay = -1 // the store's 0 means its default
	}
	if !cfg.GroupCommit {
		opts.MaxBatch = 1
	}
	db, err := store.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Data, err)
	}
	r := &Relay{
		cfg:      cfg,
		log:      logger,
		db:       db,
		jobs:     NewJobTable(cfg.MaxLease, cfg.LeaseSkew, cfg.now),
		presence: newPresence(cfg.now),
		conns:    connLimit{max: cfg.MaxConnsPerIP},
		queries:  querySlots{per: cfg.MaxQueriesPerConn},
		reads:    make(chan struct{}, cfg.MaxQueries),
		start:    cfg.now(),
	}
	r.enqueue = r.queue
	r.stats.refused = map[string]int64{}
	r.stats.now = cfg.now
	if cfg.Web {
		title := cfg.WebTitle
		if title == "" {
			title = cfg.Name
		}
		if r.page, err = web.New(title); err != nil {
			db.Close()
			return nil, fmt.Errorf("market page: %w", err)
		}
	}
	if err := r.rebuildJobs(); err != nil {
		db.Close()
		return nil, err
	}
	if err := r.loadDeleters(); err != nil {
		db.Close()
		return nil, err
	}
	r.kr = r.khatru()
	return r, nil
}

func (r *Relay) khatru() *khatru.Relay {
	kr := khatru.NewRelay()
	kr.EncodeOnce = true      // encode each broadcast event once, not once per listener
	kr.StoreBroadcasts = true // storeEvent broadcasts once the event is queued (see there)
	kr.ReuseGoroutines = true // handle messages on goroutines whose stacks have grown already
	// verify over the checked id, with lifted pubkeys cached (see internal/sigcheck)
	kr.CheckSignature = sigcheck.NewVerifier(0).CheckSignature
	kr.Log = log.New(r.log.With().Str("from", "khatru").Logger(), "", 0)
	// A message may carry an event of MaxEventBytes plus its envelope; anything larger is
	// refused by the policy with a clear OK rather than by the socket closing.
	kr.MaxMessageSize = int64(max(2*r.cfg.MaxEventBytes, 512000))
	// what one connection can make the relay hold or wait for (third_party/khatru/PATCHES.md)
	kr.MaxOutboundBytes = r.cfg.MaxOutboundBytes
	kr.WriteWait = r.cfg.WriteTimeout
	kr.MaxMessagesInFlight = r.cfg.MaxInFlight
	kr.MaxRequestSize = r.cfg.MaxRequestBytes

	policies := Policies(r.cfg)
	// paid reviews are checked against the store, so after every cheap check and before the
	// last, the per-author rate limit (which charges only events that would be stored)
	policies = slices.Insert(policies, len(policies)-1, RejectUnprovenReviews(r.lookup))
	for _, p := range policies {
		kr.RejectEvent = append(kr.RejectEvent, r.counted(p))
	}
	kr.RejectRequest = append(kr.RejectRequest,
		RejectLargeRequests(r.cfg.MaxSubIDLength, r.cfg.MaxSubscriptions, r.cfg.MaxFilters, r.cfg.MaxFilterValues))
	kr.RejectCountFilter = append(kr.RejectCountFilter, RejectLargeCount(r.cfg.MaxFilterValues))
	if r.cfg.ReqRate > 0 {
		limit := RateLimitRequests(r.cfg.ReqRate, r.cfg.ReqBurst, r.cfg.now)
		kr.RejectRequest = append(kr.RejectRequest, func(ctx context.Context, _ string, _ nostr.Filters, _ int) (bool, string) {
			return limit(ctx)
		})
		kr.RejectCountFilter = append(kr.RejectCountFilter, func(ctx context.Context, _ nostr.Filter) (bool, string) {
			return limit(ctx)
		})
	}

	kr.StoreEvent = append(kr.StoreEvent, r.storeEvent)
	kr.ReplaceEvent = append(kr.ReplaceEvent, r.replaceEvent)
	kr.DeleteEvent = append(kr.DeleteEvent, r.deleteEvent)
	kr.QueryEvents = append(kr.QueryEvents, r.queryEvents)
	kr.CountEvents = append(kr.CountEvents, r.countEvents)
	kr.OnEventSaved = append(kr.OnEventSaved, func(context.Context, *nostr.Event) { r.stats.accepted.Add(1) })
	// Every connection is asked to authenticate (NIP-42): a worker that does is listed as
	// connected in /api/workers while it subscribes to job kinds (workers.go).
	kr.QueryEvents = append(kr.QueryEvents, r.presence.track)
	kr.OnAuth = append(kr.OnAuth, r.presence.authed)
	kr.OnConnect = append(kr.OnConnect, func(ctx context.Context) {
		r.stats.connections.Add(1)
		khatru.RequestAuth(ctx)
	})
	kr.OnDisconnect = append(kr.OnDisconnect, func(ctx context.Context) {
		r.stats.connections.Add(-1)
		r.presence.gone(ctx)
		r.queries.forget(khatru.GetConnection(ctx))
		if info := connInfoOf(ctx); info != nil {
			info.release()
		}
	})

	mux := kr.Router()
	mux.HandleFunc("GET /api/jobs", r.handleJobs)
	mux.HandleFunc("GET /api/stats", r.handleStats)
	mux.HandleFunc("GET /api/series", r.handleSeries)
	mux.HandleFunc("GET /api/workers", r.handleWorkers)
	mux.HandleFunc("GET /{$}", r.handleHome)
	if r.page != nil {
		mux.HandleFunc("GET "+web.Prefix, r.page.ServeAsset)
	}
	return kr
}

// Policies are the checks an event passes before it is stored, in order, as cfg sets them.
func Policies(cfg Config) []policy {
	now := cfg.now
	byIP, byPubkey := RateLimitEvents(cfg.RateLimits(), now)
	policies := []policy{byIP}
	policies = append(policies,
		RejectOversizedEvent(cfg.MaxEventBytes),
		RejectTooManyTags(cfg.MaxTags),
		AllowKinds(cfg.Kinds),
		RejectOutsideWindow(cfg.MaxPast, cfg.MaxFuture, now),
		RejectExpired(now),
	)
	if cfg.StrictJobs {
		policies = append(policies, RejectMalformedJobs())
	}
	if cfg.AuthWrites || len(cfg.AllowPubkeys) > 0 {
		policies = append(policies, RequireAuth(cfg.AllowPubkeys))
	}
	if cfg.JobPoW > 0 {
		policies = append(policies, RequireJobPoW(cfg.JobPoW))
	}
	return append(policies, byPubkey)
}

// counted wraps a policy so its refusals show in /api/stats.
func (r *Relay) counted(p policy) policy {
	return func(ctx context.Context, evt *nostr.Event) (bool, string) {
		reject, msg := p(ctx, evt)
		if reject {
			r.stats.refuse(msg)
		}
		return reject, msg
	}
}

// pending is an event queued for the store's group commit.
type pending struct {
	fresh bool         // the event was new; false: a copy of it is queued, and wait reports on that
	wait  func() error // waits for the commit: nil once the event is on disk
}

// queue queues evt for the store's group commit.
func (r *Relay) queue(evt *nostr.Event) (pending, error) {
	c, err := r.db.Enqueue(evt)
	if err != nil {
		return pending{}, err
	}
	return pending{fresh: c.Fresh, wait: c.Wait}, nil
}

// storeEvent saves a regular event; job events go through the job table so that lease
// decisions and storing are one step.
//
// storeEvent also broadcasts evt to live subscriptions (khatru's StoreBroadcasts): as soon as
// evt has passed every check and is queued for the commit, so subscribers get it without
// waiting for the disk sync. The broadcast writes to each subscriber what its socket takes at
// once and queues the rest (third_party/khatru/PATCHES.md, patches 9 and 20), so it waits for
// nobody, and it is over before this goroutine leads a commit (a blocking cgo call that keeps
// its core through the sync). The publisher's OK waits for the sync, so OK true means stored.
// A copy of an event still queued waits for the first copy's commit, and is neither broadcast
// nor folded again. If a commit fails (the disk is full, say), the publisher gets OK false for
// an event subscribers have already seen, and may send it again.
func (r *Relay) storeEvent(ctx context.Context, evt *nostr.Event) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	if r.deleted(ctx, evt) {
		return errDeleted
	}
	if evt.Kind == nostr.KindDeletion {
		// before the deletion is stored, so that from then on its author's events are checked
		r.deleters.add(evt.PubKey)
	}
	var (
		p   pending
		err error
	)
	if Concerns(evt) {
		p, err = r.queueJobEvent(evt)
	} else {
		p, err = r.enqueue(evt)
	}
	if err == nil {
		if p.fresh {
			r.kr.BroadcastEvent(evt)
		}
		err = p.wait()
	}
	if err != nil && !errors.Is(err, store.ErrDuplicate) && Concerns(evt) {
		r.stats.refuse(nip01.Reason(err))
		r.log.Debug().Str("event", evt.ID).Int("kind", evt.Kind).Err(err).Msg("job event refused")
	}
	return r.storeError(evt, err)
}

// storeError turns a store error into what khatru answers: eventstore.ErrDupEvent (which it
// answers with OK true and does not broadcast) for a duplicate, a NIP-01 refusal for the rest.
func (r *Relay) storeError(evt *nostr.Event, err error) error {
	var rej *nip01.Rejection
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrDuplicate):
		return eventstore.ErrDupEvent
	case errors.As(err, &rej):
		return err
	case errors.Is(err, store.ErrClosed):
		return errShuttingDown
	case errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrInvalid):
		return nip01.Reject(nip01.PrefixInvalid, err.Error())
	}
	r.log.Error().Str("event", evt.ID).Err(err).Msg("store failed")
	return storeFailure{err}
}

// storeFailure is a failed write as the publisher reads it; the cause (a full disk, say) stays
// in the log and in errors.Is, never in the OK message.
type storeFailure struct{ cause error }

func (f storeFailure) Error() string { return "error: could not store the event, try again" }
func (f storeFailure) Unwrap() error { return f.cause }

// errInFlight tells queueJobEvent that a copy of the event is queued already.
var errInFlight = errors.New("relay: a copy of this event is queued")

// queueJobEvent queues a job event for the group commit without holding the job table's lock
// across the disk sync. Under the lock the table checks evt, the save is queued (so saves are
// committed in the order the table decided them) and evt is folded in: that reserves the
// decision, so of two competing claims exactly one is granted. The returned wait waits for the
// commit; if the save fails, the reservation is undone. A duplicate is refused, and a copy of
// a queued event waits for it, before anything is folded in.
func (r *Relay) queueJobEvent(evt *nostr.Event) (pending, error) {
	key := jobKey(evt)
	var before *Job // the job as it was before evt, nil when the table had none
	var p pending
	err := r.jobs.Store(evt, func() error { // runs with r.jobs.mu held
		if j := r.jobs.jobs[key]; j != nil {
			c := *j
			c.Quotes = slices.Clone(j.Quotes)
			c.Lessees = slices.Clone(j.Lessees)
			before = &c
		}
		var err error
		if p, err = r.enqueue(evt); err == nil && !p.fresh {
			return errInFlight
		}
		return err
	})
	switch {
	case errors.Is(err, errInFlight):
		return p, nil
	case err != nil:
		return pending{}, err // refused by the lease rules or a duplicate: nothing was queued
	}
	return pending{fresh: true, wait: func() error {
		if err := p.wait(); err != nil {
			r.unreserve(evt, key, before)
			return err
		}
		return nil
	}}, nil
}

// jobKey is the job table key evt concerns: its own id for a request, else the job it names.
func jobKey(evt *nostr.Event) string {
	if nip90.IsRequestKind(evt.Kind) {
		return evt.ID
	}
	return nip90.JobID(evt)
}

// unreserve undoes what apply folded in for evt, whose save failed, as far as later events have
// not already superseded it. before is the job as it was when evt was checked. The ledger's and
// the series' counts are not undone: a failed commit is rare (a full disk), and the table
// rebuilt on the next start counts only what was stored.
func (r *Relay) unreserve(evt *nostr.Event, key string, before *Job) {
	t := r.jobs
	t.mu.Lock()
	defer t.mu.Unlock()
	job := t.jobs[key]
	if job == nil {
		return
	}
	if before == nil {
		if nip90.IsRequestKind(evt.Kind) {
			delete(t.jobs, key) // the request was never stored
		}
		return
	}
	switch {
	case evt.Kind == nip90.KindFeedback:
		switch feedbackStatus(evt) {
		case nip90.StatusPaymentRequired:
			if i := quoteIndex(before.Quotes, evt.PubKey); i >= 0 {
				if j := quoteIndex(job.Quotes, evt.PubKey); j >= 0 && job.Quotes[j].At == evt.CreatedAt {
					job.Quotes[j] = before.Quotes[i] // the quote it replaced
				}
			} else {
				job.Quotes = slices.DeleteFunc(job.Quotes, func(q Quote) bool { return q.PubKey == evt.PubKey })
			}
		case nip90.StatusProcessing:
			if job.LeaseEvent == evt.ID {
				job.Holder, job.LeaseUntil, job.LeaseEvent = before.Holder, before.LeaseUntil, before.LeaseEvent
			}
			if !slices.Contains(before.Lessees, evt.PubKey) {
				job.Lessees = slices.DeleteFunc(job.Lessees, func(pk string) bool { return pk == evt.PubKey })
			}
		case nip90.StatusError:
			if before.Holder == evt.PubKey && job.Holder == "" {
				job.Holder, job.LeaseUntil, job.LeaseEvent = before.Holder, before.LeaseUntil, before.LeaseEvent
			}
		}
	case nip90.IsResultKind(evt.Kind):
		if job.ResultID == evt.ID && before.ResultID != evt.ID {
			job.ResultBy, job.ResultID = before.ResultBy, before.ResultID
			job.Holder, job.LeaseUntil, job.LeaseEvent = before.Holder, before.LeaseUntil, before.LeaseEvent
		}
	}
}

// deleted reports whether the author has already deleted evt (NIP-09), so a deleted event,
// such as a cancelled job, cannot be published again. (khatru's own check filters on "#e" and
// never matches.) Authors who never stored a deletion are answered without a lookup.
func (r *Relay) deleted(ctx context.Context, evt *nostr.Event) bool {
	if !r.deleters.has(evt.PubKey) {
		return false
	}
	found := false
	f := nostr.Filter{Kinds: []int{nostr.KindDeletion}, Authors: []string{evt.PubKey}, Tags: nostr.TagMap{"e": {evt.ID}}}
	r.db.Query(ctx, f, store.Limits{Limit: 1}, func(evs []*nostr.Event) error {
		found = len(evs) > 0
		return nil
	})
	return found
}

// deleters is a set of pubkeys, safe for concurrent use.
type deleters struct {
	mu   sync.RWMutex
	keys map[string]struct{}
}

func (d *deleters) add(pk string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys == nil {
		d.keys = map[string]struct{}{}
	}
	d.keys[pk] = struct{}{}
}

func (d *deleters) has(pk string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.keys[pk]
	return ok
}

// loadDeleters collects the authors of the stored deletions.
func (r *Relay) loadDeleters() error {
	err := r.db.Query(context.Background(), nostr.Filter{Kinds: []int{nostr.KindDeletion}}, store.Limits{}, func(evs []*nostr.Event) error {
		for _, evt := range evs {
			r.deleters.add(evt.PubKey)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load deletions: %w", err)
	}
	return nil
}

func (r *Relay) replaceEvent(ctx context.Context, evt *nostr.Event) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	return r.storeError(evt, r.db.Replace(evt))
}

func (r *Relay) deleteEvent(ctx context.Context, evt *nostr.Event) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	if err := r.db.Delete(evt.ID); err != nil {
		return r.storeError(evt, err)
	}
	if Concerns(evt) {
		r.jobs.Forget(evt)
	}
	if IsClaim(evt) {
		return r.deleteClaims(ctx, evt)
	}
	return nil
}

// deleteClaims deletes the other lease claims evt's author stored for evt's job: deleting any
// one of them withdraws the lease (nips/lease.md), and a renewal left behind would grant it
// again when the job table is rebuilt from the store after a restart.
func (r *Relay) deleteClaims(ctx context.Context, evt *nostr.Event) error {
	job := nip90.JobID(evt)
	if job == "" {
		return nil
	}
	if err := r.db.Flush(ctx); err != nil {
		return r.storeError(evt, err)
	}
	var ids []string
	f := nostr.Filter{Kinds: []int{nip90.KindFeedback}, Authors: []string{evt.PubKey}, Tags: nostr.TagMap{"e": {job}}}
	err := r.db.Query(context.WithoutCancel(ctx), f, store.Limits{}, func(evs []*nostr.Event) error {
		for _, e := range evs {
			if e.ID != evt.ID && IsClaim(e) && nip90.JobID(e) == job {
				ids = append(ids, e.ID)
			}
		}
		return nil
	})
	if err != nil {
		return r.storeError(evt, fmt.Errorf("find the other claims on job %s: %w", job, err))
	}
	for _, id := range ids {
		if err := r.db.Delete(id); err != nil {
			return r.storeError(evt, fmt.Errorf("delete claim %s with %s: %w", id, evt.ID, err))
		}
	}
	if len(ids) > 0 {
		r.log.Debug().Str("job", job).Str("by", evt.PubKey).Int("claims", len(ids)).Msg("lease withdrawn: its other claims deleted")
	}
	return nil
}

// queryEvents serves stored events, leaving out those past their NIP-40 expiration (khatru
// only purges them hourly). A connection has at most MaxQueriesPerConn reads in progress
// (further ones wait, and with them that connection's further messages), each holding its slot
// until its last event is queued for the client; the store copies events out in short read
// transactions (at most MaxQueries of them at once, relay-wide) and never holds one while the
// client reads.
func (r *Relay) queryEvents(ctx context.Context, filter nostr.Filter) (chan *nostr.Event, error) {
	if isKhatruDeletionCheck(filter) {
		ch := make(chan *nostr.Event)
		close(ch)
		return ch, nil
	}
	if !r.gate.enter() {
		return nil, errShuttingDown
	}
	release, err := r.queries.acquire(ctx, khatru.GetConnection(ctx))
	if err != nil {
		r.gate.leave()
		return nil, err
	}
	lim := store.Limits{Limit: r.limit(filter), Scan: r.cfg.QueryScan, Gate: r.reads}
	if khatru.IsInternalCall(ctx) || khatru.GetConnection(ctx) == nil {
		lim.Scan, lim.Gate = 0, nil // the relay's own lookups: a deletion's targets, expirations
	}
	out := make(chan *nostr.Event)
	go func() {
		defer r.gate.leave()
		defer release()
		defer close(out)
		// An event is broadcast as soon as it is queued for its commit (see storeEvent). khatru
		// starts listening before it queries, so an event broadcast before that must be found
		// stored: wait for the commits queued so far (at most the ones in progress).
		if err := r.db.Flush(ctx); err != nil {
			return
		}
		now := nostr.Timestamp(r.cfg.now().Unix())
		err := r.db.Query(ctx, filter, lim, func(evs []*nostr.Event) error {
			for _, evt := range evs {
				if exp := nip40.GetExpiration(evt.Tags); exp != -1 && exp <= now {
					continue
				}
				select {
				case out <- evt:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			r.log.Debug().Err(err).Str("filter", filter.String()).Msg("query cut short")
		}
	}()
	return out, nil
}

// limit is how many stored events filter gets: its limit within MaxLimit, else DefaultLimit.
func (r *Relay) limit(filter nostr.Filter) int {
	switch {
	case filter.Limit <= 0:
		return r.cfg.DefaultLimit
	case filter.Limit > r.cfg.MaxLimit:
		return r.cfg.MaxLimit
	}
	return filter.Limit
}

// isKhatruDeletionCheck reports whether filter is the query khatru makes for every event it is
// about to store: kind 5 with the tag "#e" (a tag name no deletion carries, so it never matches
// one, while the store scans up to its limit of stored deletions to find that out). Our own
// deleted check does this properly, so the relay answers khatru's with nothing at once.
func isKhatruDeletionCheck(f nostr.Filter) bool {
	return len(f.Kinds) == 1 && f.Kinds[0] == nostr.KindDeletion && len(f.Tags) == 1 && f.Tags["#e"] != nil &&
		f.IDs == nil && f.Authors == nil && f.Since == nil && f.Until == nil && f.Search == ""
}

// countEvents answers NIP-45 COUNT exactly, or refuses a count that would visit more than
// QueryScan index entries. It takes a read slot like a query.
func (r *Relay) countEvents(ctx context.Context, filter nostr.Filter) (int64, error) {
	if !r.gate.enter() {
		return 0, errShuttingDown
	}
	defer r.gate.leave()
	release, err := r.queries.acquire(ctx, khatru.GetConnection(ctx))
	if err != nil {
		return 0, err
	}
	defer release()
	n, err := r.db.Count(ctx, filter, store.Limits{Scan: r.cfg.QueryScan, Gate: r.reads})
	if errors.Is(err, store.ErrScanBudget) {
		return 0, nip01.Reject(nip01.PrefixBlocked, fmt.Sprintf("counting this filter needs more than %d index entries; narrow it (kinds, authors, tags, since)", r.cfg.QueryScan))
	}
	return n, err
}

// rebuildJobs folds every stored job event into the job table.
func (r *Relay) rebuildJobs() error {
	kinds := []int{nip90.KindFeedback}
	for k := nip90.KindRequestMin; k <= nip90.KindResultMax; k++ {
		kinds = append(kinds, k)
	}
	var events []*nostr.Event
	err := r.db.Query(context.Background(), nostr.Filter{Kinds: kinds}, store.Limits{}, func(evs []*nostr.Event) error {
		events = append(events, evs...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild job table: %w", err)
	}
	r.jobs.Rebuild(events)
	r.log.Info().Int("events", len(events)).Int("jobs", len(r.jobs.Views())).Msg("job table rebuilt")
	return nil
}

// Jobs is the relay's job table.
func (r *Relay) Jobs() *JobTable { return r.jobs }

// ServeHTTP serves websockets, NIP-11 and the API.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Header.Get("Upgrade") == "websocket" {
		r.serveWebsocket(w, req)
		return
	}
	if req.Header.Get("Accept") == "application/nostr+json" {
		r.handleNIP11(w, req)
		return
	}
	r.kr.ServeHTTP(w, req)
}

// serveWebsocket hands a websocket to khatru once its client IP (ClientIP, which believes
// forwarding headers only from --trusted-proxies) has a connection slot free.
func (r *Relay) serveWebsocket(w http.ResponseWriter, req *http.Request) {
	ip := ClientIP(req, r.cfg.TrustedProxies)
	if !r.conns.acquire(ip) {
		r.stats.refuse("rate-limited")
		http.Error(w, fmt.Sprintf("rate-limited: %d connections open from your address, the most allowed", r.cfg.MaxConnsPerIP), http.StatusTooManyRequests)
		return
	}
	var once sync.Once
	info := &connInfo{ip: ip, release: func() { once.Do(func() { r.conns.release(ip) }) }}
	hw := &hijackWatcher{ResponseWriter: w}
	r.kr.ServeHTTP(hw, withConnInfo(req, info))
	if !hw.hijacked {
		info.release() // the upgrade failed: khatru answered with an HTTP error
	}
}

// Serve serves on ln until ctx is done, then shuts down: it stops accepting connections,
// waits for writes in progress (their OKs go out), closes every connection and returns.
// Close the relay after Serve returns.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	tl := &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ErrorLog: r.kr.Log}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tl) }()
	r.log.Info().Str("listen", ln.Addr().String()).Str("data", r.cfg.Data).Msg("relay serving")

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx) // stops the listener; websockets are hijacked and closed below
	// Refuse new writes and let those in flight finish, so every OK true that went out is
	// stored; a client that stops reading cannot hold this up for more than the grace period.
	if !r.gate.close(5 * time.Second) {
		r.log.Warn().Msg("operations still in flight after 5s; closing connections")
	}
	// and the answers owed go out (an OK is written after its write finished), within a bound
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	if !r.kr.Drain(dctx) {
		r.log.Warn().Msg("answers still unsent after 2s; closing connections")
	}
	dcancel()
	tl.closeAll()
	<-errc
	r.log.Info().Msg("relay stopped")
	return nil
}

// Close releases the store. Call it after Serve has returned (or instead of Serve).
func (r *Relay) Close() error {
	r.gate.close(-1)
	return r.db.Close()
}

// Run listens on cfg.Listen and serves until ctx is done.
func Run(ctx context.Context, cfg Config, logger zerolog.Logger) error {
	r, err := New(cfg, logger)
	if err != nil {
		return err
	}
	defer r.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	return r.Serve(ctx, ln)
}

// gate counts store operations in flight so that closing waits for them and refuses new ones.
type gate struct {
	mu       sync.Mutex
	closed   bool
	inFlight sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.inFlight.Add(1)
	return true
}

func (g *gate) leave() { g.inFlight.Done() }

// close refuses new operations and waits up to d for those in flight; it reports whether
// they all finished. d < 0 waits without limit.
func (g *gate) close(d time.Duration) bool {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.inFlight.Wait(); close(done) }()
	if d < 0 {
		<-done
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// socketSendBuffer is each connection's kernel send buffer (Linux doubles it): enough for a
// 256 KiB event in flight, and bandwidth × delay for ~2.5 MB/s at 100 ms per connection.
const socketSendBuffer = 128 << 10

// trackingListener remembers accepted connections so shutdown can close the hijacked
// websockets that http.Server no longer tracks.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		// A client that stops reading leaves what the kernel buffers for it in the kernel: on
		// loopback its autotuned send buffer grew to 4 MB and more, out of the outbox's sight.
		// A fixed buffer keeps that small, and so what a stalled client holds is the outbox's,
		// which has a bound and a deadline.
		tcp.SetWriteBuffer(socketSendBuffer)
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.(*trackedConn).Conn.Close()
	}
	clear(l.conns)
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

// SyscallConn lets khatru write to the socket without waiting, so that a broadcast hands each
// subscriber its event on the broadcasting goroutine (third_party/khatru/frameconn.go).
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
