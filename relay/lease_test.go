package relay

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
)

// Two workers claim the same job at once, 100 times: every time exactly one wins and the
// other is told who holds the lease and until when.
func TestLeaseRace(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	customer := newKey(t)
	workers := []key{newKey(t), newKey(t)}
	conns := []*relayconn.Conn{tr.connect(t), tr.connect(t)}
	post := tr.connect(t)
	wins := map[string]int{}
	for i := 0; i < 100; i++ {
		req := jobRequest(t, customer, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)})
		if msg := publish(t, post, req); msg != "" {
			t.Fatal(msg)
		}
		claims := []nostr.Event{claim(t, workers[0], req, time.Now(), time.Minute), claim(t, workers[1], req, time.Now(), time.Minute)}
		msgs := make([]string, 2)
		var start, done sync.WaitGroup
		start.Add(1)
		for w := range workers {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				msgs[w] = publish(t, conns[w], claims[w])
			}()
		}
		start.Done()
		done.Wait()
		var winner, loser int
		switch {
		case msgs[0] == "" && msgs[1] != "":
			winner, loser = 0, 1
		case msgs[1] == "" && msgs[0] != "":
			winner, loser = 1, 0
		default:
			t.Fatalf("round %d: claims answered %q and %q, want exactly one OK", i, msgs[0], msgs[1])
		}
		held, err := lease.ParseRefusal(msgs[loser])
		if err != nil || held.Holder != workers[winner].pk {
			t.Fatalf("round %d: loser told %q, want duplicate naming %s", i, msgs[loser], workers[winner].pk)
		}
		if want := claims[winner].CreatedAt + 60; held.Until != want {
			t.Fatalf("round %d: lease until %d, want %d", i, held.Until, want)
		}
		wins[workers[winner].pk]++
	}
	if got := tr.r.Stats().Jobs; got.LeasesGranted != 100 || got.LeasesRefused != 100 || got.ByState[JobLeased] != 100 {
		t.Fatalf("stats %+v, want 100 granted, 100 refused, 100 leased", got)
	}
	t.Logf("wins: %v", wins)
}

func TestLeaseLifecycle(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t)
	cfg.Now = clk.Now
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)
	req := jobRequest(t, customer, clk.Now())
	publish(t, c, req)
	state := func() JobState {
		j, _ := tr.r.Jobs().Lookup(req.ID)
		return j.State(nostr.Timestamp(clk.Now().Unix()))
	}
	quote := a.sign(t, nostr.Event{Kind: 7000, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"status", "payment-required"}, {"e", req.ID}, {"p", customer.pk}, {"amount", "5000", "lnbc..."}}})

	steps := []struct {
		name      string
		evt       func() nostr.Event
		want      string // OK reason prefix, "" for OK true
		wantState JobState
	}{
		{"quote", func() nostr.Event { return quote }, "", JobQuoted},
		{"a claims 30s", func() nostr.Event { return claim(t, a, req, clk.Now(), 30*time.Second) }, "", JobLeased},
		{"b claims", func() nostr.Event { return claim(t, b, req, clk.Now(), 30*time.Second) }, "duplicate: leased by " + a.pk, JobLeased},
		{"b says processing without a lease", func() nostr.Event {
			return b.sign(t, nostr.Event{Kind: 7000, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"status", "processing"}, {"e", req.ID}}})
		}, "duplicate: leased by " + a.pk, JobLeased},
		{"b posts a result", func() nostr.Event { return result(t, b, req, clk.Now()) }, "duplicate: leased by " + a.pk, JobLeased},
		{"a claims too long", func() nostr.Event { return claim(t, a, req, clk.Now(), time.Hour) }, "invalid: lease of 1h0m0s is longer", JobLeased},
		{"a renews 30s at +20s", func() nostr.Event { clk.Advance(20 * time.Second); return claim(t, a, req, clk.Now(), 30*time.Second) }, "", JobLeased},
		{"lease lapses at +51s: b claims", func() nostr.Event { clk.Advance(31 * time.Second); return claim(t, b, req, clk.Now(), 30*time.Second) }, "", JobLeased},
		{"a's late result", func() nostr.Event { return result(t, a, req, clk.Now()) }, "duplicate: leased by " + b.pk, JobLeased},
		{"b gives up", func() nostr.Event {
			return b.sign(t, nostr.Event{Kind: 7000, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"status", "error", "out of memory"}, {"e", req.ID}}})
		}, "", JobQuoted},
		{"a claims again", func() nostr.Event { return claim(t, a, req, clk.Now(), 30*time.Second) }, "", JobLeased},
		{"a delivers", func() nostr.Event { return result(t, a, req, clk.Now()) }, "", JobDone},
		{"b claims a done job", func() nostr.Event { return claim(t, b, req, clk.Now(), 30*time.Second) }, "duplicate: job already has a result from " + a.pk, JobDone},
		{"b posts a second result", func() nostr.Event { return result(t, b, req, clk.Now()) }, "duplicate: job already has a result", JobDone},
	}
	for _, s := range steps {
		msg := publish(t, c, s.evt())
		if (s.want == "" && msg != "") || !strings.HasPrefix(msg, s.want) {
			t.Fatalf("%s: OK reason %q, want %q", s.name, msg, s.want)
		}
		if got := state(); got != s.wantState {
			t.Fatalf("%s: job is %s, want %s", s.name, got, s.wantState)
		}
	}
}

func TestLeaseClaimClock(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, w := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	publish(t, c, req)
	if msg := publish(t, c, claim(t, w, req, time.Now().Add(-5*time.Minute), time.Minute)); !strings.HasPrefix(msg, "invalid: lease claim created_at") {
		t.Fatalf("back-dated claim: %q", msg)
	}
}

func TestLeaseRestrictedToNamedProviders(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, named, stranger := newKey(t), newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now(), nostr.Tag{"p", named.pk})
	publish(t, c, req)
	if msg := publish(t, c, claim(t, stranger, req, time.Now(), time.Minute)); !strings.HasPrefix(msg, "blocked: job is addressed to named providers") {
		t.Fatalf("stranger's claim: %q", msg)
	}
	if msg := publish(t, c, result(t, stranger, req, time.Now())); !strings.HasPrefix(msg, "blocked: ") {
		t.Fatalf("stranger's result: %q", msg)
	}
	if msg := publish(t, c, claim(t, named, req, time.Now(), time.Minute)); msg != "" {
		t.Fatalf("named provider's claim: %q", msg)
	}
}

func TestLeaseSurvivesRestart(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	publish(t, c, req)
	if msg := publish(t, c, claim(t, a, req, time.Now(), 5*time.Minute)); msg != "" {
		t.Fatal(msg)
	}
	done := jobRequest(t, customer, time.Now(), nostr.Tag{"param", "n", "2"})
	publish(t, c, done)
	publish(t, c, claim(t, b, done, time.Now(), time.Minute))
	publish(t, c, result(t, b, done, time.Now()))

	tr.restart()
	c = tr.connect(t)
	if msg := publish(t, c, claim(t, b, req, time.Now(), time.Minute)); !strings.HasPrefix(msg, "duplicate: leased by "+a.pk) {
		t.Fatalf("claim after restart: %q, want the lease to still be a's", msg)
	}
	if msg := publish(t, c, claim(t, a, done, time.Now(), time.Minute)); !strings.HasPrefix(msg, "duplicate: job already has a result") {
		t.Fatalf("claim on a job done before restart: %q", msg)
	}
	var body struct{ Jobs []JobView }
	getJSON(t, tr.http+"/api/jobs?state=leased", nil, &body)
	if len(body.Jobs) != 1 || body.Jobs[0].ID != req.ID || body.Jobs[0].Holder != a.pk {
		t.Fatalf("/api/jobs?state=leased = %+v", body.Jobs)
	}
	var stats Stats
	getJSON(t, tr.http+"/api/stats", nil, &stats)
	if stats.Jobs.ByState[JobLeased] != 1 || stats.Jobs.ByState[JobDone] != 1 {
		t.Fatalf("/api/stats jobs = %+v", stats.Jobs)
	}
}

// A quoted job's result comes only from a pubkey that holds or has held its lease: the
// customer may have paid the quote, and a stranger's result must not end the job before the
// paid worker claims it. Free, unquoted jobs keep first-result-wins.
func TestLeaseQuotedJobResults(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t)
	cfg.Now = clk.Now
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	customer, w, m := newKey(t), newKey(t), newKey(t)
	quoted := jobRequest(t, customer, clk.Now())
	free := customer.sign(t, nostr.Event{Kind: 5000, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"i", "hello world", "text"}, {"param", "n", "free"}}})
	bid := jobRequest(t, customer, clk.Now(), nostr.Tag{"param", "n", "bid"})
	publish(t, c, quoted)
	publish(t, c, free)
	publish(t, c, bid)
	quote := func(k key, job nostr.Event) nostr.Event {
		return k.sign(t, nostr.Event{Kind: 7000, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"status", "payment-required"}, {"e", job.ID}, {"p", customer.pk}, {"amount", "5000", "lnbc..."}}})
	}
	steps := []struct {
		name      string
		job       nostr.Event
		evt       func() nostr.Event
		want      string // OK reason prefix, "" for OK true
		wantState JobState
	}{
		{"free job: a stranger's result wins", free, func() nostr.Event { return result(t, m, free, clk.Now()) }, "", JobDone},
		{"a bid, no quote yet: a stranger's result is blocked", bid, func() nostr.Event { return result(t, m, bid, clk.Now()) }, "blocked: job carries a bid", JobOpen},
		{"a bid: the worker that claimed it delivers", bid, func() nostr.Event {
			if msg := publish(t, c, claim(t, w, bid, clk.Now(), 30*time.Second)); msg != "" {
				t.Fatalf("claim of the bid job: %q", msg)
			}
			return result(t, w, bid, clk.Now())
		}, "", JobDone},
		{"w quotes", quoted, func() nostr.Event { return quote(w, quoted) }, "", JobQuoted},
		{"m posts a result without a lease", quoted, func() nostr.Event { return result(t, m, quoted, clk.Now()) }, "blocked: job was quoted", JobQuoted},
		{"m quotes too, still no lease", quoted, func() nostr.Event { return quote(m, quoted) }, "", JobQuoted},
		{"m's result is still blocked", quoted, func() nostr.Event { return result(t, m, quoted, clk.Now()) }, "blocked: job was quoted", JobQuoted},
		{"w claims", quoted, func() nostr.Event { return claim(t, w, quoted, clk.Now(), 30*time.Second) }, "", JobLeased},
		{"m's result while w holds the lease", quoted, func() nostr.Event { return result(t, m, quoted, clk.Now()) }, "duplicate: leased by " + w.pk, JobLeased},
		{"w's lease lapses", quoted, func() nostr.Event { clk.Advance(31 * time.Second); return quote(w, quoted) }, "", JobQuoted},
		{"m's result after the lapse", quoted, func() nostr.Event { return result(t, m, quoted, clk.Now()) }, "blocked: job was quoted", JobQuoted},
		{"w, who held the lease, delivers late", quoted, func() nostr.Event { return result(t, w, quoted, clk.Now()) }, "", JobDone},
		{"m's result on the done job", quoted, func() nostr.Event { return result(t, m, quoted, clk.Now()) }, "duplicate: job already has a result from " + w.pk, JobDone},
	}
	for _, s := range steps {
		msg := publish(t, c, s.evt())
		if (s.want == "" && msg != "") || !strings.HasPrefix(msg, s.want) {
			t.Fatalf("%s: OK reason %q, want %q", s.name, msg, s.want)
		}
		j, _ := tr.r.Jobs().Lookup(s.job.ID)
		if got := j.State(nostr.Timestamp(clk.Now().Unix())); got != s.wantState {
			t.Fatalf("%s: job is %s, want %s", s.name, got, s.wantState)
		}
	}
	// the rule holds after a restart: who held a lease is rebuilt from the stored claims
	again := jobRequest(t, customer, clk.Now(), nostr.Tag{"param", "n", "again"})
	publish(t, c, again)
	publish(t, c, quote(w, again))
	publish(t, c, claim(t, w, again, clk.Now(), 10*time.Second))
	clk.Advance(11 * time.Second)
	tr.restart()
	c = tr.connect(t)
	if msg := publish(t, c, result(t, m, again, clk.Now())); !strings.HasPrefix(msg, "blocked: job was quoted") {
		t.Fatalf("stranger's result after a restart: %q, want blocked", msg)
	}
	if msg := publish(t, c, result(t, w, again, clk.Now())); msg != "" {
		t.Fatalf("former holder's result after a restart: %q", msg)
	}
}

// Deleting any of the holder's claims on a job (the first one or the latest renewal) releases
// the lease, also after a restart, and its author no longer counts as having held it.
func TestLeaseReleasedByDeletingAnyClaim(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete int // which claim w deletes: 0 the first, 1 the renewal
	}{{"older claim", 0}, {"newest claim", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			cfg := testConfig(t)
			cfg.Now = clk.Now
			tr := startRelay(t, cfg)
			c := tr.connect(t)
			customer, w, b := newKey(t), newKey(t), newKey(t)
			req := jobRequest(t, customer, clk.Now())
			publish(t, c, req)
			publish(t, c, w.sign(t, nostr.Event{Kind: 7000, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"status", "payment-required"}, {"e", req.ID}, {"p", customer.pk}, {"amount", "5000", "lnbc..."}}}))
			claims := []nostr.Event{claim(t, w, req, clk.Now(), time.Minute)}
			clk.Advance(10 * time.Second)
			claims = append(claims, claim(t, w, req, clk.Now(), time.Minute))
			for i, cl := range claims {
				if msg := publish(t, c, cl); msg != "" {
					t.Fatalf("claim %d: %q", i, msg)
				}
			}
			del := w.sign(t, nostr.Event{Kind: 5, CreatedAt: nostr.Timestamp(clk.Now().Unix()), Tags: nostr.Tags{{"e", claims[tc.delete].ID}, {"k", "7000"}}})
			if msg := publish(t, c, del); msg != "" {
				t.Fatalf("deletion refused: %q", msg)
			}
			check := func(when string) {
				t.Helper()
				j, _ := tr.r.Jobs().Lookup(req.ID)
				if st := j.State(nostr.Timestamp(clk.Now().Unix())); st != JobQuoted {
					t.Fatalf("%s: job is %s (holder %s), want quoted", when, st, j.Holder)
				}
				if got := testrelay.Query(t, tr.connect(t), nostr.Filter{Kinds: []int{7000}, Authors: []string{w.pk}, Tags: nostr.TagMap{"e": {req.ID}}}); len(got) != 1 {
					t.Fatalf("%s: %d of w's feedback events stored, want only the quote", when, len(got))
				}
			}
			check("after the deletion")
			tr.restart()
			c = tr.connect(t)
			check("after a restart")
			if msg := publish(t, c, result(t, w, req, clk.Now())); !strings.HasPrefix(msg, "blocked: job was quoted") {
				t.Fatalf("w's result after withdrawing its lease: %q, want blocked", msg)
			}
			if msg := publish(t, c, claim(t, b, req, clk.Now(), time.Minute)); msg != "" {
				t.Fatalf("b's claim on the released job: %q", msg)
			}
			if msg := publish(t, c, result(t, b, req, clk.Now())); msg != "" {
				t.Fatalf("b's result: %q", msg)
			}
		})
	}
}
