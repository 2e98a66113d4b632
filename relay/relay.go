// Package relay is the sparecycles community relay: a khatru relay with an embedded LMDB store,
// market-safe write policies, the job table that coordinates leases (nips/lease.md), a truthful
// NIP-11 document and a read-only HTTP API (/api/jobs, /api/stats) on the same port.
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
	"time"

	"github.com/fiatjaf/eventstore"
	"github.com/fiatjaf/eventstore/lmdb"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip40"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/sigcheck"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// Version is reported in NIP-11 and /api/stats.
const Version = "0.1.0"

// Relay is one running relay: the khatru relay, its store and its job table.
type Relay struct {
	cfg Config
	log zerolog.Logger
	kr  *khatru.Relay
	db  *lmdb.LMDBBackend
	// enqueue queues an event for the store's group commit: db.Enqueue, replaced in tests to
	// make a commit fail.
	enqueue func(*nostr.Event) (wait func() error, err error)
	jobs    *JobTable
	// deleters are the authors of stored deletions (NIP-09): only their events can have been
	// deleted, so only theirs need the store's deletion lookup.
	deleters deleters
	gate     gate
	stats    stats
	start    time.Time
}

type stats struct {
	connections atomic.Int64
	accepted    atomic.Int64
	mu          sync.Mutex
	refused     map[string]int64 // by NIP-01 prefix
}

func (s *stats) refuse(msg string) {
	prefix := msg
	if i := indexColon(msg); i > 0 {
		prefix = msg[:i]
	}
	s.mu.Lock()
	s.refused[prefix]++
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
	// Without WRITEMAP a commit costs less CPU (LMDB writes the dirty pages and fdatasyncs rather
	// than msync-ing its whole map), and a stray write cannot reach the database file.
	db := &lmdb.LMDBBackend{Path: cfg.Data, GroupCommit: cfg.GroupCommit, NoWriteMap: true}
	if err := db.Init(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Data, err)
	}
	r := &Relay{
		cfg:     cfg,
		log:     logger,
		db:      db,
		enqueue: db.Enqueue,
		jobs:    NewJobTable(cfg.MaxLease, cfg.LeaseSkew, cfg.now),
		start:   cfg.now(),
	}
	r.stats.refused = map[string]int64{}
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

	policies := Policies(r.cfg)
	for _, p := range policies {
		kr.RejectEvent = append(kr.RejectEvent, r.counted(p))
	}

	kr.StoreEvent = append(kr.StoreEvent, r.storeEvent)
	kr.ReplaceEvent = append(kr.ReplaceEvent, r.replaceEvent)
	kr.DeleteEvent = append(kr.DeleteEvent, r.deleteEvent)
	kr.QueryEvents = append(kr.QueryEvents, r.queryEvents)
	kr.CountEvents = append(kr.CountEvents, r.countEvents)
	kr.OnEventSaved = append(kr.OnEventSaved, func(context.Context, *nostr.Event) { r.stats.accepted.Add(1) })
	kr.OnConnect = append(kr.OnConnect, func(context.Context) { r.stats.connections.Add(1) })
	kr.OnDisconnect = append(kr.OnDisconnect, func(context.Context) { r.stats.connections.Add(-1) })

	mux := kr.Router()
	mux.HandleFunc("GET /api/jobs", r.handleJobs)
	mux.HandleFunc("GET /api/stats", r.handleStats)
	mux.HandleFunc("GET /{$}", r.handleHome)
	return kr
}

// Policies are the checks an event passes before it is stored, in order, as cfg sets them.
func Policies(cfg Config) []policy {
	now := cfg.now
	var policies []policy
	if cfg.IPRate > 0 {
		policies = append(policies, RateLimitIP(cfg.IPRate, cfg.IPBurst, now))
	}
	policies = append(policies,
		RejectOversizedEvent(cfg.MaxEventBytes),
		RejectTooManyTags(cfg.MaxTags),
		RejectLargeTagValues(MaxIndexedTagValue),
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
	if cfg.PubkeyRate > 0 {
		policies = append(policies, RateLimitPubkey(cfg.PubkeyRate, cfg.PubkeyBurst, now))
	}
	return policies
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

// storeEvent saves a regular event; job events go through the job table so that lease
// decisions and storing are one step.
//
// storeEvent also broadcasts evt to live subscriptions (khatru's StoreBroadcasts): with group
// commit, as soon as evt has passed every check and is queued for the commit, so subscribers
// get it while the disk syncs; the publisher's OK still waits for the sync, so OK true means
// stored. If that commit fails (the disk is full, say), the publisher gets OK false for an event
// subscribers have already seen, and may send it again. A duplicate is never broadcast again.
func (r *Relay) storeEvent(ctx context.Context, evt *nostr.Event) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	if r.deleted(ctx, evt) {
		return errDeleted
	}
	var (
		wait func() error
		err  error
	)
	if evt.Kind == nostr.KindDeletion {
		// before the deletion is stored, so that from then on its author's events are checked
		r.deleters.add(evt.PubKey)
	}
	if Concerns(evt) {
		wait, err = r.queueJobEvent(evt)
	} else {
		wait, err = r.enqueue(evt)
	}
	if err == nil {
		r.kr.BroadcastEvent(evt)
		err = wait()
	}
	if err != nil && !errors.Is(err, eventstore.ErrDupEvent) && Concerns(evt) {
		r.stats.refuse(err.Error())
		r.log.Debug().Str("event", evt.ID).Int("kind", evt.Kind).Err(err).Msg("job event refused")
	}
	return err
}

// queueJobEvent queues a job event for the group commit without holding the job table's lock
// across the disk sync (without group commit it saves evt under the lock, and wait has nothing
// left to wait for). Under the lock the table checks evt, the save is queued (so saves are
// committed in the order the table decided them) and evt is folded in: that reserves the
// decision, so of two competing claims exactly one is granted. The returned wait waits for the
// commit; if the save fails, the reservation is undone. A duplicate is refused before anything
// is folded in.
func (r *Relay) queueJobEvent(evt *nostr.Event) (wait func() error, err error) {
	key := jobKey(evt)
	var before *Job // the job as it was before evt, nil when the table had none
	var commit func() error
	err = r.jobs.Store(evt, func() error { // runs with r.jobs.mu held
		if j := r.jobs.jobs[key]; j != nil {
			c := *j
			c.Quotes = slices.Clone(j.Quotes)
			before = &c
		}
		var err error
		commit, err = r.enqueue(evt)
		return err
	})
	if err != nil {
		return nil, err // refused by the lease rules or a duplicate: nothing was queued
	}
	return func() error {
		if err := commit(); err != nil {
			r.unreserve(evt, key, before)
			return err
		}
		return nil
	}, nil
}

// jobKey is the job table key evt concerns: its own id for a request, else the job it names.
func jobKey(evt *nostr.Event) string {
	if nip90.IsRequestKind(evt.Kind) {
		return evt.ID
	}
	return nip90.JobID(evt)
}

// unreserve undoes what apply folded in for evt, whose save failed, as far as later events have
// not already superseded it. before is the job as it was when evt was checked.
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
			if !slices.Contains(before.Quotes, evt.PubKey) {
				job.Quotes = slices.DeleteFunc(job.Quotes, func(pk string) bool { return pk == evt.PubKey })
			}
		case nip90.StatusProcessing:
			if job.LeaseEvent == evt.ID {
				job.Holder, job.LeaseUntil, job.LeaseEvent = before.Holder, before.LeaseUntil, before.LeaseEvent
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
	ch, err := r.db.QueryEvents(ctx, nostr.Filter{Kinds: []int{nostr.KindDeletion}, Authors: []string{evt.PubKey}, Tags: nostr.TagMap{"e": {evt.ID}}, Limit: 1})
	if err != nil {
		return false
	}
	found := false
	for range ch {
		found = true
	}
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
	ctx := eventstore.SetNegentropy(context.Background()) // no per-query limit
	ch, err := r.db.QueryEvents(ctx, nostr.Filter{Kinds: []int{nostr.KindDeletion}})
	if err != nil {
		return fmt.Errorf("load deletions: %w", err)
	}
	for evt := range ch {
		r.deleters.add(evt.PubKey)
	}
	return nil
}

func (r *Relay) replaceEvent(ctx context.Context, evt *nostr.Event) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	return r.db.ReplaceEvent(ctx, evt)
}

func (r *Relay) deleteEvent(ctx context.Context, evt *nostr.Event) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	if err := r.db.DeleteEvent(ctx, evt); err != nil {
		return err
	}
	if Concerns(evt) {
		r.jobs.Forget(evt)
	}
	return nil
}

// queryEvents serves stored events, leaving out those past their NIP-40 expiration (khatru
// only purges them hourly).
func (r *Relay) queryEvents(ctx context.Context, filter nostr.Filter) (chan *nostr.Event, error) {
	if isKhatruDeletionCheck(filter) {
		ch := make(chan *nostr.Event)
		close(ch)
		return ch, nil
	}
	if !r.gate.enter() {
		return nil, errShuttingDown
	}
	in, err := r.db.QueryEvents(ctx, filter)
	if err != nil {
		r.gate.leave()
		return nil, err
	}
	out := make(chan *nostr.Event)
	go func() {
		defer r.gate.leave()
		defer close(out)
		now := nostr.Timestamp(r.cfg.now().Unix())
		for evt := range in {
			if exp := nip40.GetExpiration(evt.Tags); exp != -1 && exp <= now {
				continue
			}
			select {
			case out <- evt:
			case <-ctx.Done():
				for range in { // let the store's reader finish
				}
				return
			}
		}
	}()
	return out, nil
}

// isKhatruDeletionCheck reports whether filter is the query khatru makes for every event it is
// about to store: kind 5 with the tag "#e" (a tag name no deletion carries, so it never matches
// one, while the store scans up to its limit of stored deletions to find that out). Our own
// deleted check does this properly, so the relay answers khatru's with nothing at once.
func isKhatruDeletionCheck(f nostr.Filter) bool {
	return len(f.Kinds) == 1 && f.Kinds[0] == nostr.KindDeletion && len(f.Tags) == 1 && f.Tags["#e"] != nil &&
		f.IDs == nil && f.Authors == nil && f.Since == nil && f.Until == nil && f.Search == ""
}

func (r *Relay) countEvents(ctx context.Context, filter nostr.Filter) (int64, error) {
	if !r.gate.enter() {
		return 0, errShuttingDown
	}
	defer r.gate.leave()
	return r.db.CountEvents(ctx, filter)
}

// rebuildJobs folds every stored job event into the job table.
func (r *Relay) rebuildJobs() error {
	kinds := []int{nip90.KindFeedback}
	for k := nip90.KindRequestMin; k <= nip90.KindResultMax; k++ {
		kinds = append(kinds, k)
	}
	// the negentropy flag lifts the store's per-query limit: we need every job event
	ctx := eventstore.SetNegentropy(context.Background())
	ch, err := r.db.QueryEvents(ctx, nostr.Filter{Kinds: kinds})
	if err != nil {
		return fmt.Errorf("rebuild job table: %w", err)
	}
	var events []*nostr.Event
	for evt := range ch {
		events = append(events, evt)
	}
	r.jobs.Rebuild(events)
	r.log.Info().Int("events", len(events)).Int("jobs", len(r.jobs.Views())).Msg("job table rebuilt")
	return nil
}

// Jobs is the relay's job table.
func (r *Relay) Jobs() *JobTable { return r.jobs }

// ServeHTTP serves websockets, NIP-11 and the API.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Header.Get("Upgrade") != "websocket" && req.Header.Get("Accept") == "application/nostr+json" {
		r.handleNIP11(w, req)
		return
	}
	r.kr.ServeHTTP(w, req)
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
	tl.closeAll()
	<-errc
	r.log.Info().Msg("relay stopped")
	return nil
}

// Close releases the store. Call it after Serve has returned (or instead of Serve).
func (r *Relay) Close() error {
	r.gate.close(-1)
	r.db.Close()
	return nil
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

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
