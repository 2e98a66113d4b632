package relay

import (
	"encoding/json"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/sigcheck"
	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// BenchmarkIngestCPU measures, in one run, what BenchmarkIngest does (ours vs vanilla khatru +
// LMDB, 8 connections, 16 events in flight on each, one author per event) and the CPU time per
// accepted event against the signature floor (see ingestCPU). Build with -tags libsecp256k1
// (cgo, Debian's libsecp256k1-dev) to verify with libsecp256k1 instead of btcec: go-nostr
// (vanilla khatru) and internal/sigcheck (our relay and the floor) both switch. Run it with
// scripts/bench.
func BenchmarkIngestCPU(b *testing.B) {
	ingestCPU(b, signedJobRequests(b, b.N), 8, 16)
}

// BenchmarkIngestClients is BenchmarkIngestCPU under the load ordinary Nostr clients make: 8
// connections, each waiting for its OK before it sends the next event, of kind 5000 job
// requests of clientEventBytes bytes each (as EVENT messages), one author per event.
func BenchmarkIngestClients(b *testing.B) {
	ingestCPU(b, clientJobRequests(b, b.N), 8, 1)
}

// ingestCPU publishes events to our relay and to a vanilla khatru relay with the same LMDB
// store, over conns connections with up to window events awaiting their OK on each, and
// reports both rates and the CPU time per accepted event: the process's CPU time (getrusage)
// across our ingest, divided by the events, against the signature floor (signatureFloor),
// timed just before and just after our ingest. The load generator runs in a child process
// (see ingest), so the process CPU time is the relays': ours ingesting, vanilla idle.
func ingestCPU(b *testing.B, events []nostr.Event, conns, window int) {
	b.Helper()
	messages := make([]string, len(events))
	size := 0
	for i := range events {
		m, err := json.Marshal([]any{"EVENT", events[i]})
		if err != nil {
			b.Fatal(err)
		}
		messages[i] = string(m)
		size += len(m)
	}
	ours := startRelay(b, testConfig(b))
	vanilla := testrelay.Start(b)
	least := startLeastRelay(b)

	b.ResetTimer()
	floorBefore := signatureFloor(b, messages)
	file := writeMessages(b, events)
	runtime.GC()
	cpu0 := processCPU()
	st0 := ours.r.Stats()
	oursLoad := ingestLoad(b, ours.url, file, conns, window)
	oursRate := oursLoad.rate
	st1 := ours.r.Stats()
	oursCPU := (processCPU() - cpu0) / time.Duration(len(events))
	// the floor is timed just before and just after, so that a change in the machine's speed
	// during the run (a noisy neighbour) falls on both sides
	floor := (floorBefore + signatureFloor(b, messages)) / 2
	vanillaLoad := ingestLoad(b, vanilla, file, conns, window)
	vanillaRate := vanillaLoad.rate
	// the least relay (startLeastRelay) under the same load: what reading and answering costs
	// beyond the floor with nothing stored
	runtime.GC()
	cpu0 = processCPU()
	leastLoad := ingestLoad(b, least, file, conns, window)
	leastRate := leastLoad.rate
	leastCPU := (processCPU() - cpu0) / time.Duration(len(events))
	b.StopTimer()

	b.ReportMetric(oursRate, "ours-events/s")
	b.ReportMetric(vanillaRate, "vanilla-events/s")
	b.ReportMetric(oursRate/vanillaRate, "ratio")
	b.ReportMetric(float64(oursCPU.Nanoseconds())/1e3, "ours-cpu-µs/event")
	b.ReportMetric(float64(floor.Nanoseconds())/1e3, "floor-cpu-µs/event")
	b.ReportMetric(float64(oursCPU)/float64(floor), "cpu-ratio")
	b.ReportMetric(float64(st1.CommittedOps-st0.CommittedOps)/float64(max(st1.Commits-st0.Commits, 1)), "ours-events/commit")
	b.ReportMetric(oursLoad.okP50, "ours-ok-p50-µs")
	b.ReportMetric(oursLoad.okP99, "ours-ok-p99-µs")
	b.ReportMetric(vanillaLoad.okP50, "vanilla-ok-p50-µs")
	b.ReportMetric(vanillaLoad.okP99, "vanilla-ok-p99-µs")
	b.ReportMetric(leastLoad.okP50, "least-ok-p50-µs")
	b.ReportMetric(leastLoad.okP99, "least-ok-p99-µs")
	b.ReportMetric(oursLoad.okP99/vanillaLoad.okP99, "ok-p99-ratio")
	b.ReportMetric(leastRate, "least-events/s")
	b.ReportMetric(float64(leastCPU.Nanoseconds())/1e3, "least-cpu-µs/event")
	b.ReportMetric(float64(leastCPU)/float64(floor), "least-cpu-ratio")
	b.ReportMetric(float64(oursCPU)/float64(leastCPU), "cpu-vs-least")
	b.ReportMetric(float64(size)/float64(len(events)), "message-bytes")
}

// signatureFloor returns the least CPU time per message any relay must spend on it, on one
// goroutine: parse it (khatru's parser), compute and check the event's id, and verify its
// Schnorr signature once, with the author's key lifted once per distinct author, by the
// verifier library of this build (internal/sigcheck: btcec, or libsecp256k1 under -tags
// libsecp256k1), never split across goroutines. The benchmarks give every event its own author,
// so the floor lifts a key per event, as the relays must.
func signatureFloor(b *testing.B, messages []string) time.Duration {
	b.Helper()
	runtime.GC()
	parser := nostr.NewMessageParser()
	v := sigcheck.NewSequentialVerifier(len(messages))
	cpu0 := processCPU()
	for _, m := range messages {
		env, err := parser.ParseMessage(m)
		if err != nil {
			b.Fatal(err)
		}
		evt := &env.(*nostr.EventEnvelope).Event
		if !evt.CheckID() {
			b.Fatal("bad id")
		}
		if err := v.Verify(evt); err != nil {
			b.Fatal(err)
		}
	}
	return (processCPU() - cpu0) / time.Duration(len(messages))
}

// processCPU is the user plus system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
