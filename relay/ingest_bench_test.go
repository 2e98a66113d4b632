package relay

import (
	"encoding/json"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// BenchmarkIngestCPU measures, in one run, what BenchmarkIngest does (ours vs vanilla khatru +
// LMDB, 8 connections, 16 events in flight on each) and the CPU time per accepted event: the
// process's CPU time (getrusage) across our ingest, divided by the events, against the
// signature-check floor, which is parsing the same EVENT messages with khatru's parser and
// checking each id and Schnorr signature on one goroutine (go-nostr's CheckID and
// CheckSignature), timed just before and just after our ingest. The load generator runs in a
// child process (see ingest), so the process CPU time is the relays': ours ingesting, vanilla
// idle. Build with -tags libsecp256k1 (cgo, Debian's libsecp256k1-dev) to verify with
// libsecp256k1 instead of btcec: go-nostr (vanilla khatru, the floor) and internal/sigcheck (our
// relay) both switch. Run it with scripts/bench.
func BenchmarkIngestCPU(b *testing.B) {
	const conns, window = 8, 16
	events := signedJobRequests(b, b.N)
	messages := make([]string, len(events))
	for i := range events {
		m, err := json.Marshal([]any{"EVENT", events[i]})
		if err != nil {
			b.Fatal(err)
		}
		messages[i] = string(m)
	}
	ours := startRelay(b, testConfig(b))
	vanilla := testrelay.Start(b)

	b.ResetTimer()
	floorBefore := signatureFloor(b, messages)
	file := writeMessages(b, events)
	runtime.GC()
	cpu0 := processCPU()
	oursRate := ingestFile(b, ours.url, file, conns, window)
	oursCPU := (processCPU() - cpu0) / time.Duration(len(events))
	// the floor is timed just before and just after, so that a change in the machine's speed
	// during the run (a noisy neighbour) falls on both sides
	floor := (floorBefore + signatureFloor(b, messages)) / 2
	vanillaRate := ingestFile(b, vanilla, file, conns, window)
	b.StopTimer()

	b.ReportMetric(oursRate, "ours-events/s")
	b.ReportMetric(vanillaRate, "vanilla-events/s")
	b.ReportMetric(oursRate/vanillaRate, "ratio")
	b.ReportMetric(float64(oursCPU.Nanoseconds())/1e3, "ours-cpu-µs/event")
	b.ReportMetric(float64(floor.Nanoseconds())/1e3, "floor-cpu-µs/event")
	b.ReportMetric(float64(oursCPU)/float64(floor), "cpu-ratio")

}

// signatureFloor returns the CPU time per message of parsing it as khatru does and checking
// the event's id and signature, on one goroutine.
func signatureFloor(b *testing.B, messages []string) time.Duration {
	b.Helper()
	runtime.GC()
	parser := nostr.NewMessageParser()
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
		if ok, err := evt.CheckSignature(); !ok || err != nil {
			b.Fatal("bad signature", err)
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
