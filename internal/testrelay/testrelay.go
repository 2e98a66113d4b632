// Package testrelay starts a bare khatru relay with eventstore's LMDB store on 127.0.0.1: the
// vanilla baseline our relay is benchmarked against, and a plain NIP-01 relay for component
// tests that need "a relay" that speaks none of our extensions.
package testrelay

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fiatjaf/eventstore/lmdb"
	"github.com/fiatjaf/khatru"
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
