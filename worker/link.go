package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// link is the worker's connection to one relay: it reconnects with back-off, re-subscribes
// from the newest request it has seen (the seen set drops what arrives twice), and learns from
// NIP-11 whether the relay coordinates leases and how large an event it takes.
type link struct {
	w   *Worker
	url string
	log zerolog.Logger

	stopped chan struct{} // closed when run has returned: no reconnect will come

	handbacks *handbacks // jobs lost to another worker's lease here (handback.go)

	mu     sync.Mutex
	conn   *relayconn.Conn
	ready  chan struct{} // closed while conn is set
	info   relayInfo     // from NIP-11 at the last connect (kept across reconnects)
	newest nostr.Timestamp
}

func newLink(w *Worker, url string) *link {
	return &link{w: w, url: url, log: w.log.With().Str("relay", url).Logger(), ready: make(chan struct{}), stopped: make(chan struct{}), handbacks: newHandbacks()}
}

func (l *link) leases() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info.leases
}

// limits are the event sizes the relay advertised; zero values are unknown.
func (l *link) limits() sizeLimits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info.limits
}

// run keeps the link up until ctx ends.
func (l *link) run(ctx context.Context) {
	defer close(l.stopped)
	const first, most = time.Second, 30 * time.Second
	backoff := first
	for {
		began := time.Now()
		err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > most {
			backoff = first // it was up for a while: this is a fresh failure
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		l.log.Warn().Err(err).Str("retry_in", logging.Dur(wait)).Msg("relay connection lost")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, most)
	}
}

// session is one connection's life: dial, learn, announce, subscribe, take jobs.
func (l *link) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := relayconn.Dial(dctx, l.url)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	var authing sync.WaitGroup
	defer authing.Wait()
	actx, stopAuth := context.WithCancel(ctx)
	defer stopAuth()
	l.answerAuth(actx, conn, &authing)
	info := probeInfo(ctx, l.url)

	l.mu.Lock()
	l.conn, l.info = conn, info
	close(l.ready)
	since := l.newest - 120 // a little overlap: the seen set drops repeats
	if l.newest == 0 {
		since = nostr.Timestamp(time.Now().Add(-l.w.cfg.Lookback).Unix())
	}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.conn, l.ready = nil, make(chan struct{})
		l.mu.Unlock()
	}()
	l.log.Info().Bool("leases", info.leases).Int("max_event_bytes", info.limits.event).
		Int("max_content_length", info.limits.content).Int("max_message_length", info.limits.message).Msg("relay connected")

	l.publishAsync(ctx, l.w.currentAnnouncement())
	l.beatNow(ctx)
	sub, err := conn.Subscribe(ctx,
		nostr.Filter{Kinds: l.w.kinds(), Since: &since},
		nostr.Filter{Tags: nostr.TagMap{"p": {l.w.key.PubKey}}, Since: &since},
	)
	if err != nil {
		return err
	}
	defer sub.Close()
	if info.leases { // jobs lost to another worker's lease come back when their holder hands them back
		var following sync.WaitGroup
		fctx, stopFollowing := context.WithCancel(ctx)
		defer func() { stopFollowing(); following.Wait() }()
		following.Add(1)
		go func() {
			defer following.Done()
			l.handbacks.follow(fctx, conn, func(err error) { l.log.Debug().Err(err).Msg("hand-back watch") })
		}()
	}
	// Requests stored before the subscription (until EOSE) are screened in batches before they
	// are queued: a late joiner's backlog is mostly done already (screen.go). Live requests
	// are taken in at once.
	eose, backlog := sub.EOSE, []*nostr.Event(nil)
	for {
		select {
		case <-ctx.Done():
			l.lastBeat(conn)
			return nil
		case <-eose:
			eose = nil
			if len(backlog) > 0 {
				l.w.screenBacklog(ctx, l, backlog)
				backlog = nil
			}
		case evt := <-sub.Events:
			if evt.Kind == nip90.KindFeedback { // addressed to us: a customer accepting an offer
				l.w.accepted(ctx, evt)
				continue
			}
			if !nip90.IsRequestKind(evt.Kind) {
				continue
			}
			l.mu.Lock()
			l.newest = max(l.newest, evt.CreatedAt)
			l.mu.Unlock()
			if eose != nil && !l.w.seen.known(evt.ID) {
				if backlog = append(backlog, evt); len(backlog) >= maxBacklog {
					l.w.screenBacklog(ctx, l, backlog)
					backlog = nil
				}
				continue
			}
			l.w.intake(ctx, l, evt)
		case <-sub.Done():
			if err := conn.Err(); err != nil {
				return err
			}
			return fmt.Errorf("subscription closed: %s", sub.Reason())
		}
	}
}

// awaitUp waits until the link is connected (so what its relay advertised is known), ctx ends
// or the link stops.
func (l *link) awaitUp(ctx context.Context) {
	l.mu.Lock()
	conn, ready := l.conn, l.ready
	l.mu.Unlock()
	if conn != nil {
		return
	}
	select {
	case <-ready:
	case <-l.stopped:
	case <-ctx.Done():
	}
}

// publish sends evt, waiting for the link to be up (until ctx ends) and retrying once it
// comes back if the connection drops before the OK.
func (l *link) publish(ctx context.Context, evt nostr.Event) (relayconn.OK, error) {
	for {
		l.mu.Lock()
		conn, ready := l.conn, l.ready
		l.mu.Unlock()
		if conn == nil {
			select {
			case <-ready:
				continue
			case <-l.stopped:
				return relayconn.OK{}, fmt.Errorf("publish to %s: link stopped", l.url)
			case <-ctx.Done():
				return relayconn.OK{}, fmt.Errorf("publish to %s: not connected: %w", l.url, ctx.Err())
			}
		}
		ok, err := conn.Publish(ctx, evt)
		if err == nil || !errors.Is(err, relayconn.ErrClosed) || ctx.Err() != nil {
			return ok, err
		}
		select { // the connection died under us: wait for the session to notice and redial
		case <-conn.Done():
		case <-ctx.Done():
		}
		select {
		case <-ctx.Done():
			return ok, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// publishAsync publishes in the background for at most 10s; the worker's Run waits for it.
func (l *link) publishAsync(ctx context.Context, evt nostr.Event) {
	l.w.async.Add(1)
	go func() {
		defer l.w.async.Done()
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if ok, err := l.publish(pctx, evt); err != nil || !ok.Accepted {
			l.log.Debug().Err(err).Str("reason", ok.Reason).Int("kind", evt.Kind).Msg("event not accepted")
		}
	}()
}

func (l *link) query(ctx context.Context, f nostr.Filter) ([]*nostr.Event, error) {
	l.mu.Lock()
	conn := l.conn
	l.mu.Unlock()
	if conn == nil {
		return nil, fmt.Errorf("query %s: not connected", l.url)
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return conn.Query(qctx, f)
}

// probeInfo reads the relay's NIP-11 document. Any failure means nothing is known: no leases
// (plain NIP-90 works everywhere) and no size limits (a result too large for the relay is
// then found out from its OK).
func probeInfo(ctx context.Context, wsURL string) relayInfo {
	httpURL := "http" + strings.TrimPrefix(wsURL, "ws")
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL, nil)
	if err != nil {
		return relayInfo{}
	}
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return relayInfo{}
	}
	defer resp.Body.Close()
	doc, err := io.ReadAll(http.MaxBytesReader(nil, resp.Body, 1<<16))
	if err != nil {
		return relayInfo{}
	}
	return parseInfo(doc)
}

func leaseTag(d time.Duration) nostr.Tag { return lease.Tag(d) }

// seenSet remembers recent job ids and where each was seen, so a job on several relays, or
// seen again after a reconnect, runs once. It forgets the oldest half when full.
type seenSet struct {
	mu    sync.Mutex
	max   int
	jobs  map[string]*job
	order []string
}

func newSeenSet(max int) *seenSet { return &seenSet{max: max, jobs: map[string]*job{}} }

// known reports whether id was seen already.
func (s *seenSet) known(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.jobs[id]
	return ok
}

// add records that id was seen on l; first is true the first time.
func (s *seenSet) add(id string, l *link) (first bool, j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[id]; ok {
		j.addRelay(l)
		return false, j
	}
	if len(s.order) >= s.max {
		for _, old := range s.order[:s.max/2] {
			delete(s.jobs, old)
		}
		s.order = append(s.order[:0], s.order[s.max/2:]...)
	}
	j = &job{}
	j.addRelay(l)
	s.jobs[id] = j
	s.order = append(s.order, id)
	return true, j
}
