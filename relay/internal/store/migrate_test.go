package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/PowerDNS/lmdb-go/lmdb"
	eslmdb "github.com/fiatjaf/eventstore/lmdb"
	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"
)

// writeEventstore fills dir with events through eventstore's own LMDB backend, the way a relay
// before this package did, and returns them in the order they were saved.
func writeEventstore(t *testing.T, dir string, n int) []*nostr.Event {
	t.Helper()
	db := &eslmdb.LMDBBackend{Path: dir, MapSize: 1 << 30}
	if err := db.Init(); err != nil {
		t.Fatal(err)
	}
	var evts []*nostr.Event
	for i := range n {
		tags := []nostr.Tag{
			{"e", hexOf(fmt.Sprint("e", i)), "wss://relay.example", "root"},
			{"p", hexOf(fmt.Sprint("p", i%7))},
			{"t", fmt.Sprint("topic", i%5)},
			{},
			{"alt", "a note"},
		}
		kind := []int{1, 7000, 5000, 0, 30023}[i%5]
		if kind == 30023 {
			tags = append(tags, nostr.Tag{"d", fmt.Sprint("post", i)})
		}
		// up to ~60 KB of content, eventstore's format stops at 64 KiB
		evt := mkEvent(hexOf(fmt.Sprint("author", i%11)), kind, nostr.Timestamp(1700000000+i%37), strings.Repeat("c", (i*211)%61000), tags...)
		if err := db.SaveEvent(context.Background(), evt); err != nil {
			t.Fatal(err)
		}
		evts = append(evts, evt)
	}
	// eventstore's SaveEvent never found duplicates; its folder may hold one
	if err := db.SaveEvent(context.Background(), evts[3]); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return evts
}

// legacyLeft lists the eventstore DBIs still in the store's environment.
func legacyLeft(t *testing.T, s *Store) []string {
	t.Helper()
	var left []string
	err := s.env.Update(func(txn *lmdb.Txn) error {
		l, err := openLegacy(txn)
		left = l.names
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// migrated reads the counts from the log line that ends a migration.
func migrated(t *testing.T, log *bytes.Buffer) (copied, duplicates int) {
	t.Helper()
	for _, line := range strings.Split(log.String(), "\n") {
		var entry struct {
			Message    string
			Copied     int
			Duplicates int
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "migrated eventstore data" {
			return entry.Copied, entry.Duplicates
		}
	}
	t.Fatalf("no migration in the log:\n%s", log)
	return 0, 0
}

func TestMigrateFromEventstore(t *testing.T) {
	dir := t.TempDir()
	evts := writeEventstore(t, dir, 300)

	var log bytes.Buffer
	s := openTest(t, Options{Path: dir, Logger: zerolog.New(&log)})
	if n, dups := migrated(t, &log); n != len(evts) || dups != 1 {
		t.Fatalf("migrated %d events and skipped %d duplicates, want %d and 1", n, dups, len(evts))
	}
	if left := legacyLeft(t, s); len(left) != 0 {
		t.Fatalf("eventstore DBIs left: %v", left)
	}
	for _, evt := range evts {
		got, err := s.Get(evt.ID)
		if err != nil || !sameEvent(got, evt) {
			t.Fatalf("event %s after migration: %v, %v", evt.ID, got, err)
		}
	}
	// eventstore's order is kept: ties on created_at come out latest saved first
	for _, f := range []nostr.Filter{{}, {Kinds: []int{7000}}, {Tags: nostr.TagMap{"t": {"topic2"}}}, {Authors: []string{hexOf("author3")}}} {
		requireSame(t, queryAll(t, s, f, Limits{}), bruteForce(evts, f, 0), f.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// opening again finds nothing to migrate
	log.Reset()
	s = openTest(t, Options{Path: dir, Logger: zerolog.New(&log)})
	if log.Len() != 0 {
		t.Fatalf("reopening logged %s", log.String())
	}
	n, err := s.Count(t.Context(), nostr.Filter{}, Limits{})
	if err != nil || n != int64(len(evts)) {
		t.Fatalf("count after reopen = %d, %v", n, err)
	}
}

// TestMigrateResumes: a migration cut short after some batches continues where it stopped.
func TestMigrateResumes(t *testing.T) {
	dir := t.TempDir()
	evts := writeEventstore(t, dir, 120)

	crash := errors.New("crash")
	s, err := newStore(Options{Path: dir, MapSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	s.migrateBatch = 25
	batches := 0
	s.afterMigrateBatch = func() error {
		if batches++; batches == 2 {
			return crash
		}
		return nil
	}
	if err := s.open(); !errors.Is(err, crash) {
		t.Fatalf("open = %v, want the crash", err)
	}

	var log bytes.Buffer
	s = openTest(t, Options{Path: dir, Logger: zerolog.New(&log)})
	// 50 were copied before the crash; the duplicate row is skipped
	if n, _ := migrated(t, &log); n != len(evts)-50 {
		t.Fatalf("resumed migration copied %d events, want %d", n, len(evts)-50)
	}
	requireSame(t, queryAll(t, s, nostr.Filter{}, Limits{}), bruteForce(evts, nostr.Filter{}, 0), "all")
	if left := legacyLeft(t, s); len(left) != 0 {
		t.Fatalf("eventstore DBIs left: %v", left)
	}
}
