package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/relay"
)

// A worker that takes a lease and dies: the lease lapses and another worker completes the job.
func TestLeaseHolderDies(t *testing.T) {
	_, url := startRelay(t)
	c := testrelay.Dial(t, url)
	job := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", servePNG(t, "second chance"), "url"}})

	// the dying worker: claims for 2 s and is never heard of again
	dead := nostr.GeneratePrivateKey()
	claim := nostr.Event{Kind: 7000, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"status", "processing"}, {"e", job.ID}, {"p", job.PubKey}, lease.Tag(2 * time.Second)}}
	claim.Sign(dead)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := c.Publish(ctx, claim); err != nil || !ok.Accepted {
		t.Fatalf("claim: %+v %v", ok, err)
	}

	w := startWorker(t, url) // finds the job leased, comes back when the lease lapses
	res := results(t, c, job.ID)[job.ID]
	if res.PubKey != w.PubKey() || strings.ToLower(strings.TrimSpace(res.Content)) != "second chance" {
		t.Fatalf("result %q from %s", res.Content, res.PubKey)
	}
}

// The relay is killed and restarted in the middle of a job: nothing accepted is lost, the
// worker and the client reconnect, and the job completes.
func TestRelayRestartMidJob(t *testing.T) {
	url, restart := restartableRelay(t)
	w := startWorker(t, url)

	png, err := testimage.Render(28, "survives a restart")
	if err != nil {
		t.Fatal(err)
	}
	fetched := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		close(fetched)
		<-release // the job is in the worker's hands while the relay restarts
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	defer srv.Close()

	c, err := client.Open(context.Background(), client.Config{Relays: []string{url}, Data: t.TempDir(), SecretKey: nostr.GeneratePrivateKey(), QuoteWindow: time.Second, Timeout: 90 * time.Second}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type result struct {
		out client.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.Do(context.Background(), ocrJob(srv.URL+"/page.png", 0), nil)
		done <- result{out, err}
	}()
	<-fetched
	restart(nil)
	close(release)
	r := <-done
	if r.err != nil || strings.ToLower(strings.TrimSpace(r.out.Result)) != "survives a restart" || r.out.Worker != w.PubKey() {
		t.Fatalf("outcome %+v %v", r.out, r.err)
	}
	// the request, accepted before the restart, is still stored
	if evs := testrelay.Query(t, testrelay.Dial(t, url), nostr.Filter{IDs: []string{r.out.Job}}); len(evs) != 1 {
		t.Fatalf("request lost in the restart")
	}
}

// A flood of invalid and rate-limited events from one client does not keep an honest
// client's jobs from completing, and the relay's memory stays bounded.
func TestFloodDoesNotStarveHonestClients(t *testing.T) {
	r, url := startRelayWith(t, func(cfg *relay.Config) {
		// every test client shares 127.0.0.1; the per-pubkey limit does the work
		cfg.PubkeyRate, cfg.PubkeyBurst = 5, 20
	})
	startWorker(t, url)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// the flood: 4 connections, 3000 events each — bad signatures and a spammer over its rate
	floodCtx, stopFlood := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	spammer := nostr.GeneratePrivateKey()
	for f := 0; f < 4; f++ {
		conn := testrelay.Dial(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3000 && floodCtx.Err() == nil; i++ {
				evt := nostr.Event{Kind: 5000, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"i", "spam", "text"}, {"param", "n", strings.Repeat("x", i%50)}}, Content: ""}
				evt.Sign(spammer)
				if i%2 == 0 {
					evt.Sig = strings.Repeat("0", 128) // invalid
				}
				pctx, cancel := context.WithTimeout(floodCtx, 5*time.Second)
				conn.Publish(pctx, evt)
				cancel()
			}
		}()
	}

	// meanwhile an honest client's jobs complete
	honest := testrelay.Dial(t, url)
	sk := nostr.GeneratePrivateKey()
	img := servePNG(t, "still served")
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, post(t, honest, sk, nostr.Tags{{"i", img, "url"}, {"param", "n", strings.Repeat("y", i)}}).ID)
	}
	for _, res := range results(t, honest, ids...) {
		if strings.ToLower(strings.TrimSpace(res.Content)) != "still served" {
			t.Fatalf("result %q", res.Content)
		}
	}
	stopFlood()
	wg.Wait()

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	if grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB during the flood", grew>>20)
	}
	st := r.Stats()
	if st.EventsRefused["rate-limited"] == 0 {
		t.Fatalf("no event was rate limited: %+v", st.EventsRefused)
	}
	t.Logf("heap grew %d KiB; refused %v", grew>>10, st.EventsRefused)
}
