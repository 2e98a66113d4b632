package store

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// benchEvent is a small event with a made-up id (the store never checks ids are hashes).
func benchEvent(i int64) *nostr.Event {
	return &nostr.Event{
		ID:        hexOf(fmt.Sprint("bench", i)),
		PubKey:    hexOf(fmt.Sprint("author", i%100)),
		Sig:       hexOf("s") + hexOf("ig"),
		CreatedAt: nostr.Timestamp(1700000000 + i),
		Kind:      int(i % 10),
		Tags:      nostr.Tags{{"p", hexOf(fmt.Sprint("p", i%50))}, {"t", "bench"}},
		Content:   "a benchmark event of a typical size, give or take a few words",
	}
}

// BenchmarkSave measures Save through the group commit, one writer at a time and many at
// once (where commits are shared: see events/commit).
func BenchmarkSave(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s := openTest(b, Options{})
		var i int64
		for b.Loop() {
			i++
			if err := s.Save(benchEvent(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(s.Stats().Ops)/float64(s.Stats().Commits), "events/commit")
	})
	b.Run("parallel", func(b *testing.B) {
		s := openTest(b, Options{})
		var n atomic.Int64
		b.SetParallelism(16) // writers per CPU: a relay has many connections waiting on OKs
		b.ResetTimer()
		// b.Loop does not apply to RunParallel, which counts its own iterations
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Save(benchEvent(n.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(s.Stats().Ops)/float64(s.Stats().Commits), "events/commit")
	})
}

// BenchmarkQuery measures a kind query with limit 100 over 10,000 events (1,000 of that kind).
func BenchmarkQuery(b *testing.B) {
	s := openTest(b, Options{})
	evts := make([]*nostr.Event, 10000)
	for i := range evts {
		evts[i] = benchEvent(int64(i))
	}
	saveBatch(b, s, evts)
	for _, bc := range []struct {
		name string
		f    nostr.Filter
	}{
		{"kind", nostr.Filter{Kinds: []int{3}}},
		{"tag", nostr.Filter{Tags: nostr.TagMap{"p": {hexOf("p7")}}}},
		{"authors", nostr.Filter{Authors: []string{hexOf("author1"), hexOf("author2"), hexOf("author3")}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got := 0
				err := s.Query(b.Context(), bc.f, Limits{Limit: 100}, func(e []*nostr.Event) error {
					got += len(e)
					return nil
				})
				if err != nil || got != 100 {
					b.Fatalf("got %d events, %v", got, err)
				}
			}
		})
	}
}

// BenchmarkCommitCPU measures the process's CPU time (user + system, getrusage: the LMDB
// commit's pwrites and fdatasync count) per event stored in batches of k: k events queued, then
// one commit. Each event has its own author and an "i" tag, as the relay's ingest benchmarks'
// job requests do, so every event dirties its own index pages. It is the store's share of the
// relay's CPU per event at k events per commit (see docs/relay-cpu.md).
func BenchmarkCommitCPU(b *testing.B) {
	for _, k := range []int{1, 2, 4, 8, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", k), func(b *testing.B) {
			s := openTest(b, Options{})
			var serial int64
			batch := func() []*nostr.Event {
				evts := make([]*nostr.Event, k)
				for j := range evts {
					serial++
					e := benchEvent(serial)
					e.PubKey = hexOf(fmt.Sprint("author", serial))
					e.Kind = 5000
					e.Tags = nostr.Tags{{"i", "https://example.com/" + e.ID[:16] + ".png", "url"}, {"bid", "5000"}}
					evts[j] = e
				}
				return evts
			}
			// a store that already holds events, so index pages are not all new
			for range 20 {
				saveBatch(b, s, batch())
			}
			var cpu time.Duration
			events := 0
			for b.Loop() {
				evts := batch()
				c0 := processCPU()
				saveBatch(b, s, evts)
				cpu += processCPU() - c0
				events += k
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(events), "cpu-µs/event")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
