// Package testrelay starts a bare khatru relay with eventstore's LMDB store on 127.0.0.1: the
// vanilla baseline our relay is benchmarked against, and a plain NIP-01 relay for component
// tests that need "a relay" that speaks none of our extensions; and client helpers for tests.
package testrelay

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fiatjaf/eventstore/lmdb"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
)

// Start serves a vanilla khatru relay backed by LMDB in a temporary folder and returns its
// ws:// URL. It is torn down when the test ends.
func Start(t testing.TB) (url string) {
	t.Helper()
	db := &lmdb.LMDBBackend{Path: t.TempDir()}
	if err := db.Init(); err != nil {
		t.Fatal(err)
	}
	r := khatru.NewRelay()
	r.StoreEvent = append(r.StoreEvent, db.SaveEvent)
	r.QueryEvents = append(r.QueryEvents, db.QueryEvents)
	r.DeleteEvent = append(r.DeleteEvent, db.DeleteEvent)
	r.ReplaceEvent = append(r.ReplaceEvent, db.ReplaceEvent)
	srv := httptest.NewServer(r)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); db.Close() })
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
