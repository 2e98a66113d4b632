package relay

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// BenchmarkIngest publishes the same signed job requests to our relay and to a vanilla khatru
// relay with the same LMDB store, in one run, over 8 connections with up to 16 events in
// flight on each, and reports events/s for both and their ratio. Each op is one event
// published to each relay. Run it with scripts/bench.
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

func signedJobRequests(b *testing.B, n int) []nostr.Event {
	b.Helper()
	k := newKey(b)
	events := make([]nostr.Event, n)
	now := time.Now()
	for i := range events {
		events[i] = jobRequest(b, k, now, nostr.Tag{"param", "seq", fmt.Sprint(i)})
	}
	return events
}

// ingest publishes events to url and returns the accepted events per second. Every event must
// be accepted.
func ingest(b *testing.B, url string, events []nostr.Event, conns, window int) float64 {
	b.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := 0; c < conns; c++ {
		var mine []nostr.Event
		for i := c; i < len(events); i += conns {
			mine = append(mine, events[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publishPipelined(url, mine, window); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return float64(len(events)) / time.Since(start).Seconds()
}

// publishPipelined sends events on one websocket with at most window awaiting their OK.
func publishPipelined(url string, events []nostr.Event, window int) error {
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	slots := make(chan struct{}, window)
	readErr := make(chan error, 1)
	go func() {
		for range events {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			var ok []json.RawMessage
			if err := json.Unmarshal(msg, &ok); err != nil || len(ok) < 3 || string(ok[0]) != `"OK"` {
				readErr <- fmt.Errorf("unexpected message %s", msg)
				return
			}
			if string(ok[2]) != "true" {
				readErr <- fmt.Errorf("event refused: %s", msg)
				return
			}
			<-slots
		}
		readErr <- nil
	}()
	for _, evt := range events {
		select {
		case slots <- struct{}{}:
		case err := <-readErr:
			return err
		}
		if err := conn.WriteJSON([]any{"EVENT", evt}); err != nil {
			return err
		}
	}
	return <-readErr
}
