package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay"
	"github.com/sparecycles/sparecycles/worker"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// testLog logs warnings and errors to the test's output; SPARECYCLES_E2E_LOG=debug (or info)
// shows more when a test's failure needs explaining.
func testLog(t testing.TB) zerolog.Logger {
	level := zerolog.WarnLevel
	if l, err := zerolog.ParseLevel(os.Getenv("SPARECYCLES_E2E_LOG")); err == nil && l != zerolog.NoLevel {
		level = l
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
}

// startRelay serves our relay on 127.0.0.1 with its store in a temporary folder.
func startRelay(t testing.TB) (*relay.Relay, string) {
	t.Helper()
	return startRelayWith(t, nil)
}

// startRelayWith is startRelay with mut adjusting the config (rate limits off by default).
func startRelayWith(t testing.TB, mut func(*relay.Config)) (*relay.Relay, string) {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.IPRate, cfg.PubkeyRate = 0, 0
	cfg.ReqRate, cfg.MaxConnsPerIP = 0, 0 // every test client shares 127.0.0.1
	if mut != nil {
		mut(&cfg)
	}
	r, err := relay.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	return r, "ws://" + ln.Addr().String()
}

func startWorker(t testing.TB, relays ...string) *worker.Worker {
	t.Helper()
	return startWorkerWith(t, nil, relays...)
}

// startWorkerWith starts a worker on relays, letting mut adjust its config; it stops when the
// test ends.
func startWorkerWith(t testing.TB, mut func(*worker.Config), relays ...string) *worker.Worker {
	t.Helper()
	w, _ := runWorker(t, mut, relays...)
	return w
}

// runWorker starts a worker and returns it with a stop function (also called at cleanup).
func runWorker(t testing.TB, mut func(*worker.Config), relays ...string) (*worker.Worker, func()) {
	t.Helper()
	return runWorkerLog(t, testLog(t), mut, relays...)
}

// runWorkerLog is runWorker logging to log.
func runWorkerLog(t testing.TB, log zerolog.Logger, mut func(*worker.Config), relays ...string) (*worker.Worker, func()) {
	t.Helper()
	cfg := worker.DefaultConfig()
	cfg.Relays = relays
	cfg.Models = modelsDir()
	cfg.KeyFile = filepath.Join(t.TempDir(), "worker.nsec")
	cfg.Data = t.TempDir()
	cfg.Device = onnx.Device{Kind: onnx.DeviceCPU}
	cfg.AllowPrivate = true
	if mut != nil {
		mut(&cfg)
	}
	w, err := worker.New(cfg, log)
	if err != nil {
		t.Fatalf("%v (fetch the library and models with scripts/fetch-onnxruntime and scripts/fetch-models)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; w.Close() }) }
	t.Cleanup(stop)
	for _, u := range relays { // subscribed once announced
		c := testrelay.Dial(t, u)
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		sub, err := c.Subscribe(wctx, nostr.Filter{Kinds: []int{nip89.KindHandlerInfo}, Authors: []string{w.PubKey()}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.Events:
		case <-wctx.Done():
			t.Fatalf("worker never announced itself on %s", u)
		}
		wcancel()
	}
	return w, stop
}

func post(t testing.TB, c *relayconn.Conn, sk string, tags nostr.Tags) nostr.Event {
	t.Helper()
	evt := nostr.Event{Kind: 5000, CreatedAt: nostr.Now(), Tags: tags}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := c.Publish(ctx, evt); err != nil || !ok.Accepted {
		t.Fatalf("post job: %+v %v", ok, err)
	}
	return evt
}

// results waits until every job in ids has a result on c and returns them by job id.
func results(t testing.TB, c *relayconn.Conn, ids ...string) map[string]*nostr.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": ids}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := map[string]*nostr.Event{}
	for len(got) < len(ids) {
		select {
		case evt := <-sub.Events:
			got[nip90.JobID(evt)] = evt
		case <-ctx.Done():
			t.Fatalf("%d of %d jobs have results", len(got), len(ids))
		}
	}
	return got
}

func servePNG(t testing.TB, text string) string { return serveLines(t, text) }

// serveLines serves a PNG of the lines of text, one under another.
func serveLines(t testing.TB, lines ...string) string {
	png, err := testimage.Render(28, lines...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/page.png"
}

// On our relay a worker leases the job before running it; the relay's table ends "done".
func TestWorkerLeasesOnOurRelay(t *testing.T) {
	r, url := startRelay(t)
	w := startWorker(t, url)
	c := testrelay.Dial(t, url)
	job := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", servePNG(t, "leased work"), "url"}})
	res := results(t, c, job.ID)[job.ID]
	if strings.ToLower(strings.TrimSpace(res.Content)) != "leased work" || res.PubKey != w.PubKey() {
		t.Fatalf("result %q from %s", res.Content, res.PubKey)
	}
	j, ok := r.Jobs().Lookup(job.ID)
	if !ok || j.State(nostr.Now()) != relay.JobDone || j.ResultBy != w.PubKey() {
		t.Fatalf("relay job table: %+v", j)
	}
	if s := r.Stats(); s.Jobs.LeasesGranted != 1 {
		t.Fatalf("leases granted %d, want 1", s.Jobs.LeasesGranted)
	}
}

// Two workers on one relay: every job runs exactly once, whoever wins its lease.
func TestTwoWorkersRunEachJobOnce(t *testing.T) {
	r, url := startRelay(t)
	a, b := startWorker(t, url), startWorker(t, url)
	c := testrelay.Dial(t, url)
	img := servePNG(t, "shared market")
	sk := nostr.GeneratePrivateKey()
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, post(t, c, sk, nostr.Tags{{"i", img, "url"}, {"param", "n", fmt.Sprint(i)}}).ID)
	}
	got := results(t, c, ids...)
	if ea, eb := a.Stats().Executed, b.Stats().Executed; ea+eb != int64(len(ids)) {
		t.Fatalf("workers executed %d + %d jobs, want %d in all", ea, eb, len(ids))
	}
	for _, id := range ids {
		evs := testrelay.Query(t, c, nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": {id}}})
		if len(evs) != 1 {
			t.Fatalf("job %s has %d results", id, len(evs))
		}
		if got[id].PubKey != evs[0].PubKey {
			t.Fatalf("job %s result author changed", id)
		}
	}
	if s := r.Stats().Jobs; s.ByState[relay.JobDone] != len(ids) {
		t.Fatalf("relay says %v", s.ByState)
	}
}

// The relay restarts under a running worker: the worker reconnects and serves a job posted
// after the restart, and the lease state survives.
func TestWorkerReconnectsAfterRelayRestart(t *testing.T) {
	url, restart := restartableRelay(t)
	w := startWorker(t, url)
	img := servePNG(t, "after restart")

	c := testrelay.Dial(t, url)
	first := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", img, "url"}})
	results(t, c, first.ID)
	restart(nil)
	c = testrelay.Dial(t, url)
	second := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", img, "url"}, {"param", "n", "2"}})
	res := results(t, c, second.ID)[second.ID]
	if res.PubKey != w.PubKey() || w.Stats().Executed != 2 {
		t.Fatalf("after restart: result from %s, %d executions", res.PubKey, w.Stats().Executed)
	}
}

// modelsDir is the fetched models folder: $SPARECYCLES_MODELS, else the repo's models/.
func modelsDir() string {
	if dir := os.Getenv("SPARECYCLES_MODELS"); dir != "" {
		return dir
	}
	return filepath.Join("..", "models")
}

// restartableRelay serves our relay on a fixed loopback address and returns a restart that
// stops it, runs between (if not nil) while it is down, and starts it again on the same address
// and data folder, as a crashed-and-restarted relay would be.
func restartableRelay(t testing.TB) (url string, restart func(between func())) {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.IPRate, cfg.PubkeyRate = 0, 0
	cfg.ReqRate, cfg.MaxConnsPerIP = 0, 0 // every test client shares 127.0.0.1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) func() {
		r, err := relay.New(cfg, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); r.Serve(ctx, ln) }()
		var once sync.Once
		return func() { once.Do(func() { cancel(); <-done; r.Close() }) }
	}
	stop := serve(ln)
	t.Cleanup(func() { stop() })
	return "ws://" + addr, func(between func()) {
		stop()
		if between != nil {
			between()
		}
		ln, err := net.Listen("tcp", addr) // same address: clients redial it
		if err != nil {
			t.Fatal(err)
		}
		stop = serve(ln)
	}
}
