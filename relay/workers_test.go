package relay

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// awaitWorker polls /api/workers' data (bounded: 10 s) until cond holds for pubkey's row (a
// zero row when it is not listed), and returns that row.
func awaitWorker(t *testing.T, tr *testRelay, pubkey, what string, cond func(WorkerView) bool) WorkerView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var row WorkerView
		for _, v := range tr.r.Workers(context.Background(), maxWorkersShown).Workers {
			if v.PubKey == pubkey {
				row = v
			}
		}
		if cond(row) {
			return row
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; last row %+v", what, row)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func authAs(t *testing.T, c *relayconn.Conn, k key) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// the relay challenges every connection as it opens
	if ok, err := c.Auth(ctx, func(e *nostr.Event) error { return e.Sign(k.sk) }); err != nil || !ok.Accepted {
		t.Fatalf("auth: %+v %v", ok, err)
	}
}

// An authenticated connection that subscribes to job kinds is a connected worker until the
// subscription closes or the connection drops; its heartbeat says alive until it ages past
// AliveAfter; its announcement gives its name and prices.
func TestWorkersConnected(t *testing.T) {
	var skew atomic.Int64
	cfg := testConfig(t)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	cfg.AliveAfter = 30 * time.Second
	tr := startRelay(t, cfg)
	w, reader := newKey(t), newKey(t)
	c := tr.connect(t)
	authAs(t, c, w)
	connected := func(v WorkerView) bool { return v.Connected }
	gone := func(v WorkerView) bool { return !v.Connected }

	// a reader that authenticates and subscribes to something else is no worker
	rc := tr.connect(t)
	authAs(t, rc, reader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := rc.Subscribe(ctx, nostr.Filter{Kinds: []int{1}}); err != nil {
		t.Fatal(err)
	}

	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{5000, 5800}, Since: ptrTS(nostr.Now())})
	if err != nil {
		t.Fatal(err)
	}
	v := awaitWorker(t, tr, w.pk, "connected after subscribing", connected)
	if v.ConnectedSince == 0 || v.Alive || v.Heartbeat != nil {
		t.Fatalf("row %+v: want connected since a time, no heartbeat, not alive", v)
	}
	for _, v := range tr.r.Workers(ctx, maxWorkersShown).Workers {
		if v.PubKey == reader.pk {
			t.Fatalf("a reader of kind 1 is listed: %+v", v)
		}
	}
	sub.Close()
	awaitWorker(t, tr, w.pk, "not connected once its job subscription closed", gone)

	if _, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{5000}, Since: ptrTS(nostr.Now())}); err != nil {
		t.Fatal(err)
	}
	awaitWorker(t, tr, w.pk, "connected again", connected)
	beat := heartbeat.Beat{Identifier: "sparecycles-worker", Status: heartbeat.StatusBusy, Queue: 2, Kinds: []int{5000}, Provider: "cpu"}.Event()
	if msg := publish(t, c, w.sign(t, beat)); msg != "" {
		t.Fatalf("heartbeat refused: %s", msg)
	}
	info := nip89.HandlerInfo{Identifier: "sparecycles-worker", Kinds: []int{5000}, CreatedAt: nostr.Now(), Metadata: nip89.Metadata{
		Name: "w1", Worker: &nip89.Worker{Version: 1, Provider: "cpu", Models: []nip89.Model{{Name: "ocr", Kind: 5000, Price: nip89.Price{BaseMsat: 1000, PerUnitMsat: 10, Unit: "page"}}}},
	}}
	ann, err := info.Event()
	if err != nil {
		t.Fatal(err)
	}
	if msg := publish(t, c, w.sign(t, ann)); msg != "" {
		t.Fatalf("announcement refused: %s", msg)
	}
	v = awaitWorker(t, tr, w.pk, "heartbeat and announcement listed", func(v WorkerView) bool { return v.Heartbeat != nil && v.Name != "" })
	if !v.Connected || !v.Alive || v.Heartbeat.Status != heartbeat.StatusBusy || v.Heartbeat.Queue == nil || *v.Heartbeat.Queue != 2 ||
		v.Heartbeat.Provider != "cpu" || v.Name != "w1" || len(v.Prices) != 1 || v.Prices[0].BaseMsat != 1000 {
		t.Fatalf("row %+v", v)
	}

	c.Close()
	awaitWorker(t, tr, w.pk, "not connected once its connection closed", gone)
	skew.Store(int64(31 * time.Second))
	if v := awaitWorker(t, tr, w.pk, "listed", func(v WorkerView) bool { return v.PubKey != "" }); v.Alive {
		t.Fatalf("a beat 31 s old with alive_after 30 s: %+v", v)
	}
}

func ptrTS(ts nostr.Timestamp) *nostr.Timestamp { return &ts }

// ledgerTable is a job table on a clock the test sets: at(s) moves it to s seconds after the
// start and returns that time; store folds an event in, failing the test if it is refused.
func ledgerTable(t *testing.T) (jt *JobTable, store func(nostr.Event), at func(int64) time.Time) {
	var now atomic.Int64
	t0 := time.Unix(1_800_000_000, 0)
	now.Store(t0.Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	jt = NewJobTable(10*time.Minute, time.Minute, clock)
	store = func(evt nostr.Event) {
		t.Helper()
		if err := jt.Store(&evt, func() error { return nil }); err != nil {
			t.Fatalf("kind %d refused: %v", evt.Kind, err)
		}
	}
	at = func(s int64) time.Time { now.Store(t0.Unix() + s); return clock() }
	return jt, store, at
}

// The ledger counts results, lease-to-result times, lapsed leases and failures per worker,
// by the events' times: an hour later they leave the hour's counts and stay in the day's.
func TestLedger(t *testing.T) {
	jt, store, at := ledgerTable(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)

	r1 := jobRequest(t, customer, at(0))
	store(r1)
	store(claim(t, a, r1, at(0), time.Minute))
	store(result(t, a, r1, at(7)))

	r2 := jobRequest(t, customer, at(10))
	store(r2)
	store(claim(t, a, r2, at(10), 30*time.Second))
	store(claim(t, b, r2, at(100), time.Minute)) // a's lease ended at 40
	store(result(t, b, r2, at(111)))

	r3 := jobRequest(t, customer, at(120))
	store(r3)
	store(claim(t, b, r3, at(120), time.Minute))
	store(b.sign(t, nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Timestamp(at(125).Unix()), Tags: nostr.Tags{
		{"status", "error"}, {"e", r3.ID}, {"p", customer.pk},
	}}))

	got := jt.WorkerStats()
	want := map[string]JobStats{
		a.pk: {DoneHour: 1, DoneDay: 1, LapsedHour: 1, LapsedDay: 1, MedianLeaseToResult: 7},
		b.pk: {DoneHour: 1, DoneDay: 1, FailedHour: 1, FailedDay: 1, MedianLeaseToResult: 11},
	}
	for pk, w := range want {
		if got[pk] != w {
			t.Errorf("%s: %+v, want %+v", pk[:8], got[pk], w)
		}
	}
	at(2 * 3600)
	got = jt.WorkerStats()
	if s := got[a.pk]; s.DoneHour != 0 || s.DoneDay != 1 || s.LapsedDay != 1 {
		t.Errorf("two hours on: %+v, want the day's counts only", s)
	}
	at(25 * 3600)
	if s := jt.WorkerStats()[b.pk]; s.DoneDay != 0 || s.FailedDay != 0 || s.MedianLeaseToResult != 11 {
		t.Errorf("a day on: %+v, want no counts (the median's samples stay)", s)
	}
}

// A lease that runs out with nobody taking the job over counts as lapsed once it has run out
// (a worker that died holding it shows it); taking the job over later, or the old holder's
// late result being refused, does not count it twice; a lease released by error feedback never
// lapses.
func TestLedgerLapseWithoutTakeover(t *testing.T) {
	jt, store, at := ledgerTable(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)
	r1 := jobRequest(t, customer, at(0))
	store(r1)
	store(claim(t, a, r1, at(0), 30*time.Second))
	if s := jt.WorkerStats()[a.pk]; s.LapsedDay != 0 {
		t.Fatalf("lease still running: %+v", s)
	}
	at(31)
	if s := jt.WorkerStats()[a.pk]; s.LapsedDay != 1 || s.LapsedHour != 1 {
		t.Fatalf("lease ran out with no one taking the job: %+v, want 1 lapsed", s)
	}
	if s := jt.WorkerStats()[a.pk]; s.LapsedDay != 1 {
		t.Fatalf("asked again: %+v, want it counted once", s)
	}
	store(claim(t, b, r1, at(60), time.Minute))
	store(result(t, b, r1, at(70)))
	if s := jt.WorkerStats(); s[a.pk].LapsedDay != 1 || s[b.pk].DoneDay != 1 || s[b.pk].LapsedDay != 0 {
		t.Fatalf("after another worker took it over and delivered: a %+v, b %+v", s[a.pk], s[b.pk])
	}

	// released with error feedback: not lapsed
	r2 := jobRequest(t, customer, at(100))
	store(r2)
	store(claim(t, b, r2, at(100), 30*time.Second))
	store(b.sign(t, nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Timestamp(at(105).Unix()), Tags: nostr.Tags{
		{"status", "error"}, {"e", r2.ID}, {"p", customer.pk},
	}}))
	at(200)
	if s := jt.WorkerStats()[b.pk]; s.LapsedDay != 0 || s.FailedDay != 1 {
		t.Fatalf("released by error feedback: %+v, want failed, not lapsed", s)
	}
}

// The ledger tracks at most maxLedgerWorkers pubkeys, dropping the one idle longest.
func TestLedgerBounded(t *testing.T) {
	l := newLedger()
	for i := range maxLedgerWorkers + 10 {
		l.done(string(rune(0x1000+i)), nostr.Timestamp(1_800_000_000+i), time.Second, true)
	}
	if len(l.workers) != maxLedgerWorkers {
		t.Fatalf("%d workers tracked, want %d", len(l.workers), maxLedgerWorkers)
	}
	if _, ok := l.workers[string(rune(0x1000))]; ok {
		t.Fatal("the oldest worker was kept")
	}
}
