package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/worker"
)

// notRunning is a zerolog writer that closes a job's channel when the worker logs "not
// running job" for it, and passes warnings and worse on to the test log.
type notRunning struct {
	t    testing.TB
	mu   sync.Mutex
	jobs map[string]chan struct{}
}

func (n *notRunning) of(job string) <-chan struct{} { return n.ch(job) }

func (n *notRunning) ch(job string) chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.jobs[job] == nil {
		n.jobs[job] = make(chan struct{})
	}
	return n.jobs[job]
}

func (n *notRunning) Write(p []byte) (int, error) {
	var line struct {
		Level   string `json:"level"`
		Message string `json:"message"`
		Job     string `json:"job"`
	}
	if json.Unmarshal(bytes.TrimSpace(p), &line) == nil && line.Message == "not running job" {
		ch := n.ch(line.Job)
		n.mu.Lock()
		select {
		case <-ch:
		default:
			close(ch)
		}
		n.mu.Unlock()
	}
	if line.Level == "warn" || line.Level == "error" {
		n.t.Logf("%s", bytes.TrimSpace(p))
	}
	return len(p), nil
}

// A free job's claim goes out as the worker takes the job, beside the fetch of its input. When
// another worker holds the job's lease, the claim fails: the fetch stops, the model never runs,
// no result and no error feedback come from this worker. The job before it, claimed the same
// way, runs as ever.
func TestFreeClaimBesideTheFetch(t *testing.T) {
	const text = "claimed beside the fetch"
	_, url := startRelay(t)
	logs := &notRunning{t: t, jobs: map[string]chan struct{}{}}
	w, _ := runWorkerLog(t, zerolog.New(logs).Level(zerolog.InfoLevel), func(cfg *worker.Config) {
		cfg.Parallel, cfg.Queue = 1, 4 // the second job waits while the first one is fetched
	}, url)
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	// /one.png is held until released; /two.png until its fetch is given up
	askedOne, askedTwo, gaveUp, releaseOne := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/one.png":
			once1.Do(func() { close(askedOne) })
			select {
			case <-releaseOne:
			case <-r.Context().Done():
				return
			}
		case "/two.png":
			once2.Do(func() { close(askedTwo) })
			<-r.Context().Done()
			close(gaveUp)
			return
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	t.Cleanup(srv.Close)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(releaseOne) }) }
	t.Cleanup(release)
	within := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(time.Minute):
			t.Fatalf("%s never happened", what)
		}
	}

	c := testrelay.Dial(t, url)
	cust := nostr.GeneratePrivateKey()
	one := post(t, c, cust, nostr.Tags{{"i", srv.URL + "/one.png", "url"}})
	within(askedOne, "the fetch of the first job's input")
	two := post(t, c, cust, nostr.Tags{{"i", srv.URL + "/two.png", "url"}})
	claim := nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"status", "processing"}, {"e", two.ID}, {"p", two.PubKey}, lease.Tag(10 * time.Minute)}}
	if err := claim.Sign(nostr.GeneratePrivateKey()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, err := c.Publish(ctx, claim); err != nil || !ok.Accepted {
		t.Fatalf("another worker's claim on the second job: %+v %v", ok, err)
	}
	release()

	res := results(t, c, one.ID)[one.ID]
	if strings.ToLower(strings.TrimSpace(res.Content)) != text || res.PubKey != w.PubKey() {
		t.Fatalf("first job: %q from %s", res.Content, res.PubKey)
	}
	within(logs.of(two.ID), "the worker giving up the second job")
	select {
	case <-askedTwo: // the fetch had started: it was given up, not finished
		within(gaveUp, "the second job's fetch stopping")
	default: // the refusal came before the fetch began
	}
	if n := w.Stats().Executed; n != 1 {
		t.Fatalf("executed %d jobs, want only the first", n)
	}
	// the relay refused its claim; a result or error feedback would be the worker answering
	// a job another worker holds
	if evs := testrelay.Query(t, c, nostr.Filter{Authors: []string{w.PubKey()}, Tags: nostr.TagMap{"e": {two.ID}}}); len(evs) != 0 {
		t.Fatalf("the worker published on a job another worker holds: %v", evs[0])
	}
}

// heldPNG serves png at the returned URL; the first request waits until release is called
// (asked is closed when it arrives), the others are answered at once.
func heldPNG(t testing.TB, png []byte) (url string, asked <-chan struct{}, release func()) {
	t.Helper()
	return holdPNG(t, png, false)
}

// holdPNG is heldPNG, and with all set every request waits until release.
func holdPNG(t testing.TB, png []byte, all bool) (url string, asked <-chan struct{}, release func()) {
	t.Helper()
	a, rel := make(chan struct{}), make(chan struct{})
	var first, once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		held := all
		first.Do(func() { held = true; close(a) })
		if held {
			select {
			case <-rel:
			case <-r.Context().Done():
				return
			}
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	return srv.URL + "/page.png", a, release
}

// The owner comes back while a free job's input is fetched and its claim already holds: the
// worker does not sit on the lease while paused, it hands the job back with error feedback
// "paused by owner" (which releases the lease) and another worker serves it.
func TestPausedWhileFetchingHandsBackTheClaim(t *testing.T) {
	const text = "handed back while fetching"
	_, url := startRelay(t)
	var load, otherLoad atomic.Uint64
	otherLoad.Store(math.Float64bits(0.9)) // the other worker starts paused: the job is the idle one's
	other := startWorkerWith(t, idleWorker(&otherLoad), url)
	idle := startWorkerWith(t, idleWorker(&load), url)
	if !waitUntil(context.Background(), 30*time.Second, func() bool { p, _ := idle.Paused(); return !p }) {
		t.Fatal("the idle worker never resumed after measuring its owner's load")
	}
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	input, asked, release := heldPNG(t, png)
	c := testrelay.Dial(t, url)
	fb := feedbackFrom(t, c, idle.PubKey())

	job := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", input, "url"}})
	select {
	case <-asked:
	case <-time.After(time.Minute):
		t.Fatal("the idle worker never fetched the input")
	}
	awaitFeedback(t, fb, job.ID, nip90.StatusProcessing, "") // claimed beside the fetch
	load.Store(math.Float64bits(0.9))                        // the owner comes back
	if !waitUntil(context.Background(), 30*time.Second, func() bool { p, _ := idle.Paused(); return p }) {
		t.Fatal("the idle worker never paused")
	}
	release()
	awaitFeedback(t, fb, job.ID, nip90.StatusError, "paused by owner")
	otherLoad.Store(math.Float64bits(0.05))
	res := results(t, c, job.ID)[job.ID]
	if res.PubKey != other.PubKey() || strings.ToLower(strings.TrimSpace(res.Content)) != text {
		t.Fatalf("result %q from %s, want the other worker %s", res.Content, res.PubKey, other.PubKey())
	}
	if n := idle.Stats().Executed; n != 0 {
		t.Fatalf("the paused worker ran %d jobs", n)
	}
}

// A free job whose input URL stalls holds its lease no longer than the fetch's time limit: the
// worker that won the lease gives up the fetch after --fetch-timeout and answers error feedback
// (which releases the lease), without running the model; the rival worker, whose claim was
// refused (its own fetch, beside the claim, stopped), sees that error feedback and takes the job
// at once, not at the lease's end (the lease outlasts the test), fetches the input (served from
// then on) and delivers it. The model runs once.
func TestStalledInputReleasesTheLease(t *testing.T) {
	const text = "the rival reads it"
	_, url := startRelay(t)
	short := func(c *worker.Config) {
		c.FetchTime = 2 * time.Second
		// longer than the test waits: the rival comes back when the holder hands the job back
		// (its error feedback), not when the lease would lapse
		c.Lease = 5 * time.Minute
	}
	workers := []*worker.Worker{startWorkerWith(t, short, url), startWorkerWith(t, short, url)}
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	// every fetch waits until release: the lease holder's until it gives up
	input, asked, release := holdPNG(t, png, true)
	c := testrelay.Dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", input, "url"}})
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-ctx.Done():
		t.Fatal("no worker fetched the input")
	}
	var stalled string // the lease holder whose fetch stalled
	for stalled == "" {
		select {
		case evt := <-sub.Events:
			if f, err := nip90.ParseJobFeedback(evt); err == nil && f.Status == nip90.StatusError {
				if !strings.HasPrefix(f.Info, "input URL unreachable") {
					t.Fatalf("error feedback %q, want the fetch's timeout", f.Info)
				}
				stalled = evt.PubKey
			}
		case <-ctx.Done():
			t.Fatal("the stalled fetch never ended in error feedback")
		}
	}
	release()
	res := results(t, c, job.ID)[job.ID]
	if res.PubKey == stalled || strings.ToLower(strings.TrimSpace(res.Content)) != text {
		t.Fatalf("result %q from %s; the stalled worker was %s", res.Content, res.PubKey, stalled)
	}
	var ran int64
	for _, w := range workers {
		ran += w.Stats().Executed
		if w.PubKey() == stalled && w.Stats().Executed != 0 {
			t.Fatal("the worker whose fetch stalled ran the model")
		}
	}
	if ran != 1 {
		t.Fatalf("the model ran %d times, want once", ran)
	}
}
