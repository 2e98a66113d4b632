// Package testrelay starts a bare khatru relay with eventstore's LMDB store on 127.0.0.1: the
// vanilla baseline our relay is benchmarked against, and a plain NIP-01 relay for component
// tests that need "a relay" that speaks none of our extensions; and client helpers for tests.
package testrelay

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiatjaf/eventstore/lmdb"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// Start serves a vanilla khatru relay backed by LMDB in a temporary folder and returns its
// ws:// URL. It is torn down when the test ends.
func Start(t testing.TB) (url string) {
	t.Helper()
	return StartAt(t, "127.0.0.1:0")
}

// StartAt is Start on the given address (host:port), for tests that need a relay to appear at
// an address a client was already told about.
func StartAt(t testing.TB, addr string) (url string) {
	t.Helper()
	return start(t, addr, nil)
}

// StartWith is Start with configure applied to the khatru relay before it serves, for tests
// that need a hook (e.g. one that asks every connection to authenticate).
func StartWith(t testing.TB, configure func(*khatru.Relay)) (url string) {
	t.Helper()
	return start(t, "127.0.0.1:0", configure)
}

func start(t testing.TB, addr string, configure func(*khatru.Relay)) (url string) {
	t.Helper()
	// upstream eventstore's LMDB backend, as it is: the baseline. A small map keeps the address
	// space of a test binary with many of these modest (it does not change how the store works).
	db := &lmdb.LMDBBackend{Path: t.TempDir(), MapSize: 1 << 30}
	if err := db.Init(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// khatru handles each message on its own goroutine, which nothing waits for: count the
	// store calls in flight so the store closes only after the last one.
	var g storeGate
	r := khatru.NewRelay()
	r.StoreEvent = append(r.StoreEvent, gated(&g, db.SaveEvent))
	r.QueryEvents = append(r.QueryEvents, func(ctx context.Context, f nostr.Filter) (chan *nostr.Event, error) {
		if !g.enter() {
			return nil, errClosed
		}
		defer g.leave()
		return db.QueryEvents(ctx, f)
	})
	r.DeleteEvent = append(r.DeleteEvent, gated(&g, db.DeleteEvent))
	r.ReplaceEvent = append(r.ReplaceEvent, gated(&g, db.ReplaceEvent))
	if configure != nil {
		configure(r)
	}
	srv := httptest.NewUnstartedServer(r)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	// The store is never closed: upstream's QueryEvents ends its read transaction after it has
	// closed the channel the caller drains, so no caller can know when closing is safe (closing
	// during that window crashes in mdb_txn_commit). The environment goes with the process.
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); g.close() })
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// Dial connects a client to url; the connection closes when the test ends.
func Dial(t testing.TB, url string) *relayconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := relayconn.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Query returns the stored events matching f, failing the test on error.
func Query(t testing.TB, c *relayconn.Conn, f nostr.Filter) []*nostr.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := c.Query(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

var errClosed = errors.New("error: test relay closed")

type storeGate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *storeGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *storeGate) leave() { g.wg.Done() }

func (g *storeGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

func gated(g *storeGate, fn func(context.Context, *nostr.Event) error) func(context.Context, *nostr.Event) error {
	return func(ctx context.Context, evt *nostr.Event) error {
		if !g.enter() {
			return errClosed
		}
		defer g.leave()
		return fn(ctx, evt)
	}
}

// JobOutcome waits (up to 3 minutes: a loaded machine is slow, a met condition returns at once) for a job's result or error feedback on c: it returns the
// result event, or nil and the error feedback's text.
func JobOutcome(t testing.TB, c *relayconn.Conn, job nostr.Event) (result *nostr.Event, errorInfo string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.ResultKind(job.Kind), nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		select {
		case evt := <-sub.Events:
			if nip90.IsResultKind(evt.Kind) {
				return evt, ""
			}
			fb, err := nip90.ParseJobFeedback(evt)
			if err != nil {
				t.Fatalf("malformed feedback: %v", err)
			}
			if fb.Status == nip90.StatusError {
				return nil, fb.Info
			}
		case <-ctx.Done():
			t.Fatalf("no result or error for job %s within 3 minutes", job.ID)
		}
	}
}
