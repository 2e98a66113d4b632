package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// BenchmarkIngest publishes the same signed job requests, one author per event, to our relay
// and to a vanilla khatru relay with the same LMDB store, in one run, over 8 connections with
// up to 16 events in flight on each, and reports events/s for both and their ratio. Each op is
// one event published to each relay. The load generator is a child process (see ingest). Run
// it with scripts/bench.
func BenchmarkIngest(b *testing.B) {
	const conns, window = 8, 16
	events := signedJobRequests(b, b.N)

	cfg := testConfig(b)
	ours := startRelay(b, cfg)
	vanilla := testrelay.Start(b)

	b.ResetTimer()
	oursRate := ingest(b, ours.url, events, conns, window)
	vanillaRate := ingest(b, vanilla, events, conns, window)
	b.StopTimer()

	b.ReportMetric(oursRate, "ours-events/s")
	b.ReportMetric(vanillaRate, "vanilla-events/s")
	b.ReportMetric(oursRate/vanillaRate, "ratio")
}

// signedJobRequests returns n signed kind 5000 job requests, each by an author of its own, so
// that no cache of lifted keys (ours or a verifier library's) serves the load.
func signedJobRequests(b *testing.B, n int) []nostr.Event {
	b.Helper()
	events := make([]nostr.Event, n)
	now := time.Now()
	for i := range events {
		events[i] = jobRequest(b, newKey(b), now, nostr.Tag{"param", "seq", fmt.Sprint(i)})
	}
	return events
}

// clientEventBytes is the size, as an EVENT message, of clientJobRequests' events: about what
// a client's OCR job request with an image URL, a bid, a few parameters and a short
// description comes to.
const clientEventBytes = 820

// clientJobRequests returns n signed kind 5000 job requests of clientEventBytes bytes each as
// EVENT messages, each by an author of its own.
func clientJobRequests(b testing.TB, n int) []nostr.Event {
	b.Helper()
	events := make([]nostr.Event, n)
	now := time.Now()
	for i := range events {
		k := newKey(b)
		tags := nostr.Tags{
			{"i", fmt.Sprintf("https://images.example.com/scans/%08d.png", i), "url"},
			{"param", "model", "pp-ocrv4"}, {"param", "seq", fmt.Sprint(i)},
			{"relays", "wss://relay.example.com"},
		}
		evt := jobRequest(b, k, now, tags...)
		// the message's size does not depend on the content's value: pad the content to size
		evt.Content = paddedText(clientEventBytes - messageSize(b, evt))
		events[i] = k.sign(b, evt)
		if got := messageSize(b, events[i]); got != clientEventBytes {
			b.Fatalf("event of %d bytes, want %d", got, clientEventBytes)
		}
	}
	return events
}

func messageSize(b testing.TB, evt nostr.Event) int {
	m, err := json.Marshal([]any{"EVENT", evt})
	if err != nil {
		b.Fatal(err)
	}
	return len(m)
}

// paddedText is n bytes of prose that JSON does not escape.
func paddedText(n int) string {
	const words = "Please read the text on this scanned page and return it as plain text. "
	if n < 0 {
		n = 0
	}
	return strings.Repeat(words, n/len(words)+1)[:n]
}

// ingest publishes events to url from a load generator in a child process (this test binary
// running TestIngestLoad), so that the load generator's CPU is not counted as the relay's,
// and returns the accepted events per second it measured. Every event must be accepted.
func ingest(b *testing.B, url string, events []nostr.Event, conns, window int) float64 {
	b.Helper()
	return ingestFile(b, url, writeMessages(b, events), conns, window)
}

// writeMessages writes events as EVENT messages, one per line, to a temporary file.
func writeMessages(b *testing.B, events []nostr.Event) (file string) {
	b.Helper()
	f, err := os.CreateTemp(b.TempDir(), "events-*.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	writeMessagesTo(b, f, events)
	return f.Name()
}

// writeMessagesTo writes events as EVENT messages, one per line, to f and closes it.
func writeMessagesTo(b testing.TB, f *os.File, events []nostr.Event) {
	b.Helper()
	w := bufio.NewWriter(f)
	for _, evt := range events {
		m, err := json.Marshal([]any{"EVENT", evt})
		if err != nil {
			b.Fatal(err)
		}
		w.Write(m)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// ingestFile is ingest of the messages writeMessages wrote to file.
func ingestFile(b *testing.B, url, file string, conns, window int) float64 {
	b.Helper()
	return ingestLoad(b, url, file, conns, window).rate
}

// loadResult is what the load generator measured: events/s, and the p50 and p99 of the time
// from writing an EVENT to reading its OK.
type loadResult struct {
	rate, okP50, okP99 float64 // events/s, µs, µs
}

// ingestLoad runs the load generator (TestIngestLoad) in a child process against url.
func ingestLoad(b *testing.B, url, file string, conns, window int) loadResult {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIngestLoad$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d %d", loadEnv, url, file, conns, window))
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("load generator: %v\n%s", err, out)
	}
	var r loadResult
	fields := map[string]*float64{"events/s: ": &r.rate, "ok-p50-µs: ": &r.okP50, "ok-p99-µs: ": &r.okP99}
	for _, line := range strings.Split(string(out), "\n") {
		for prefix, v := range fields {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
				f, err := strconv.ParseFloat(rest, 64)
				if err != nil {
					b.Fatal(err)
				}
				*v = f
			}
		}
	}
	if r.rate == 0 {
		b.Fatalf("load generator printed no rate:\n%s", out)
	}
	return r
}

// clientEventsEnv, set to "file n", makes TestWriteClientEvents write n of
// BenchmarkIngestClients' events (clientJobRequests) to file, as EVENT messages one per line,
// for TestIngestLoad to publish: scripts/profile-ingest profiles a relay process under that load.
const clientEventsEnv = "SPARECYCLES_WRITE_CLIENT_EVENTS"

// TestWriteClientEvents writes the events clientEventsEnv asks for; it is skipped otherwise.
func TestWriteClientEvents(t *testing.T) {
	spec := os.Getenv(clientEventsEnv)
	if spec == "" {
		t.Skip("run by scripts/profile-ingest")
	}
	var file string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &file, &n); err != nil {
		t.Fatalf("%s=%q: %v", clientEventsEnv, spec, err)
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	writeMessagesTo(t, f, clientJobRequests(t, n))
}

// loadEnv, set to "url file conns window", makes TestIngestLoad the load generator of ingest.
const loadEnv = "SPARECYCLES_INGEST_LOAD"

// TestIngestLoad is the load generator of the ingest benchmarks, run by them in a child
// process; it is skipped otherwise. It publishes the EVENT messages of file (one per line) to
// url over conns websockets, each with at most window events awaiting their OK, and prints the
// accepted events per second, counted from when every connection is open.
func TestIngestLoad(t *testing.T) {
	spec := os.Getenv(loadEnv)
	if spec == "" {
		t.Skip("run by BenchmarkIngest and BenchmarkIngestCPU")
	}
	var url, file string
	var conns, window int
	if _, err := fmt.Sscanf(spec, "%s %s %d %d", &url, &file, &conns, &window); err != nil {
		t.Fatalf("%s=%q: %v", loadEnv, spec, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	messages := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	sockets := make([]*websocket.Conn, conns)
	for c := range sockets {
		if sockets[c], _, err = websocket.DefaultDialer.Dial(url, nil); err != nil {
			t.Fatal(err)
		}
		defer sockets[c].Close()
	}
	ids := make([]string, len(messages)) // read before the clock starts
	for i, m := range messages {
		if ids[i], err = eventID(m); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	latencies := make([][]time.Duration, conns)
	for c := range sockets {
		var mine [][]byte
		var theirIDs []string
		for i := c; i < len(messages); i += conns {
			mine, theirIDs = append(mine, messages[i]), append(theirIDs, ids[i])
		}
		wg.Go(func() {
			var err error
			if latencies[c], err = publishPipelined(sockets[c], mine, theirIDs, window); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	pct := func(p int) float64 { return float64(all[(len(all)-1)*p/100].Nanoseconds()) / 1e3 }
	fmt.Printf("events/s: %f\n", float64(len(messages))/elapsed.Seconds())
	fmt.Printf("ok-p50-µs: %f\nok-p99-µs: %f\n", pct(50), pct(99))
}

// publishPipelined sends EVENT messages (their event ids in ids) on one websocket with at most
// window awaiting their OK, and returns the time from writing each EVENT to reading its OK.
func publishPipelined(conn *websocket.Conn, messages [][]byte, ids []string, window int) ([]time.Duration, error) {
	sent := make(map[string]time.Time, window) // by event id, while awaiting its OK
	var mu sync.Mutex
	latencies := make([]time.Duration, 0, len(messages))
	slots := make(chan struct{}, window)
	readErr := make(chan error, 1)
	go func() {
		for oks := 0; oks < len(messages); {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			at := time.Now()
			if bytes.HasPrefix(msg, []byte(`["AUTH",`)) {
				continue // our relay asks every connection to authenticate (NIP-42); publishing does not need it
			}
			oks++
			if !bytes.HasPrefix(msg, []byte(`["OK",`)) || len(msg) < len(`["OK",`)+66+len(`,true`) {
				readErr <- fmt.Errorf("unexpected message %s", msg)
				return
			}
			if !bytes.HasPrefix(msg[len(`["OK",`)+66:], []byte(`,true`)) { // after the quoted id
				readErr <- fmt.Errorf("event refused: %s", msg)
				return
			}
			id := string(msg[len(`["OK","`) : len(`["OK","`)+64])
			mu.Lock()
			t0, ok := sent[id]
			delete(sent, id)
			mu.Unlock()
			if !ok {
				readErr <- fmt.Errorf("an OK for %s, which was not sent or was answered already", id)
				return
			}
			latencies = append(latencies, at.Sub(t0))
			<-slots
		}
		readErr <- nil
	}()
	for i, m := range messages {
		select {
		case slots <- struct{}{}:
		case err := <-readErr:
			return nil, err
		}
		mu.Lock()
		sent[ids[i]] = time.Now()
		mu.Unlock()
		if err := conn.WriteMessage(websocket.TextMessage, m); err != nil {
			return nil, err
		}
	}
	if err := <-readErr; err != nil {
		return nil, err
	}
	return latencies, nil
}

// eventID reads the id of the event in an EVENT message.
func eventID(msg []byte) (string, error) {
	var env []json.RawMessage
	if err := json.Unmarshal(msg, &env); err != nil || len(env) != 2 {
		return "", fmt.Errorf("not an EVENT message: %.40s", msg)
	}
	var evt struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(env[1], &evt); err != nil || len(evt.ID) != 64 {
		return "", fmt.Errorf("no event id in %.80s", msg)
	}
	return evt.ID, nil
}
