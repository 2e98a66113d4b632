package worker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/tensor"
)

// advertise puts a NIP-11 document in front of the relay at backend and passes everything
// else (the websocket) through to it: a real relay that advertises what a test needs.
func advertise(t testing.TB, backend, doc string) string {
	t.Helper()
	target, err := url.Parse("http" + strings.TrimPrefix(backend, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" && r.Header.Get("Accept") == "application/nostr+json" {
			w.Header().Set("Content-Type", "application/nostr+json")
			io.WriteString(w, doc)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// A result too large for a relay is never lost without a word: the customer gets error
// feedback that says which limit it broke, from the relay's NIP-11 document or from its OK,
// and a lease the worker held is released by that feedback.
func TestResultTooLarge(t *testing.T) {
	const limit = 16384
	// a relay that coordinates leases and takes events of at most 16 KiB, as ours advertises it
	limited := advertise(t, testrelay.Start(t), `{"name":"limited","supported_nips":[1,11,90],
		"job_leases":{"version":1,"max_seconds":600,"skew_seconds":60},"max_event_bytes":16384}`)
	// a vanilla relay that advertises nothing; its LMDB store refuses content over 65,535 bytes
	plain := testrelay.Start(t)
	w := startWorker(t, testConfig(t, limited, plain))
	cl, cp := testrelay.Dial(t, limited), testrelay.Dial(t, plain)

	// inputs behind a URL keep the requests small: only the results are large. The detection
	// model maps 1×3×H×W to 1×1×H×W, about 2 bytes of JSON per element for this input.
	site := serveFiles(t, map[string][2]string{
		"/medium.json": {"application/json", tensorDoc(t, detInput(128, 128))}, // ~33 KB result
		"/large.json":  {"application/json", tensorDoc(t, detInput(256, 256))}, // ~138 KB result
	})
	post := func(t *testing.T, doc string, relays []string, conns ...*relayconn.Conn) nostr.Event {
		t.Helper()
		tags := nostr.Tags{{"i", site + doc, "url"}, {"param", "model", "ppocrv4-det"}, {"p", w.PubKey()}}
		if len(relays) > 0 {
			tags = append(tags, append(nostr.Tag{"relays"}, relays...))
		}
		// a customer per case: the same request posted twice in a second is the same event
		return newCustomer().post(t, tensor.KindRequest, tags, conns...)
	}

	t.Run("over the advertised limit", func(t *testing.T) {
		job := post(t, "/large.json", nil, cl)
		res, info := testrelay.JobOutcome(t, cl, job)
		if res != nil {
			t.Fatalf("a %d-byte result was published to a relay that takes %d", len(res.Content), limit)
		}
		want := regexp.MustCompile(`^result is [0-9]{3},[0-9]{3} bytes, more than the 16,384 bytes relay ` + regexp.QuoteMeta(limited) + ` accepts$`)
		if !want.MatchString(info) {
			t.Fatalf("error feedback %q, want it to name the limit like %s", info, want)
		}
		noResult(t, cl, job)
		leaseReleased(t, cl, job, w.PubKey())
	})

	t.Run("refused by a relay that advertises nothing", func(t *testing.T) {
		job := post(t, "/large.json", nil, cp)
		res, info := testrelay.JobOutcome(t, cp, job)
		if res != nil {
			t.Fatalf("relay stored a %d-byte result", len(res.Content))
		}
		if want := "relay " + plain + " refused the result: error: content is too large"; !strings.HasPrefix(info, want) {
			t.Fatalf("error feedback %q, want it to start %q", info, want)
		}
		noResult(t, cp, job)
	})

	t.Run("delivered where it fits", func(t *testing.T) {
		// home is the limited relay (first that leases): the result is too large for it but
		// fits the plain one, so the job is delivered and the home relay hears where it went
		job := post(t, "/medium.json", []string{limited, plain}, cl, cp)
		res, info := testrelay.JobOutcome(t, cp, job)
		if res == nil {
			t.Fatalf("no result on the relay it fits: %s", info)
		}
		if len(res.Content) > 65535 || len(res.String()) <= limit {
			t.Fatalf("result of %d bytes (content %d) does not test what this case is for", len(res.String()), len(res.Content))
		}
		res, info = testrelay.JobOutcome(t, cl, job)
		if res != nil {
			t.Fatal("result published to the relay it is too large for")
		}
		if !strings.HasPrefix(info, "result is ") || !strings.HasSuffix(info, "bytes relay "+limited+" accepts; the result is on "+plain) {
			t.Fatalf("error feedback on the limited relay %q, want the limit and where the result is", info)
		}
		leaseReleased(t, cl, job, w.PubKey())
	})
}

// noResult checks that c holds no result for job. Results are published, and acknowledged,
// before error feedback goes out, so once the feedback is here a result would be too.
func noResult(t *testing.T, c *relayconn.Conn, job nostr.Event) {
	t.Helper()
	if evs := testrelay.Query(t, c, nostr.Filter{Kinds: []int{nip90.ResultKind(job.Kind)}, Tags: nostr.TagMap{"e": {job.ID}}}); len(evs) > 0 {
		t.Fatalf("%d results stored for job %s", len(evs), job.ID)
	}
}

// leaseReleased checks the worker's side of nips/lease.md on c: it claimed the job with a
// lease and then, as the holder, published error feedback, which releases the lease.
func leaseReleased(t *testing.T, c *relayconn.Conn, job nostr.Event, worker string) {
	t.Helper()
	evs := testrelay.Query(t, c, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Authors: []string{worker}, Tags: nostr.TagMap{"e": {job.ID}}})
	var claimed, released bool
	for _, evt := range evs {
		fb, err := nip90.ParseJobFeedback(evt)
		if err != nil {
			t.Fatal(err)
		}
		_, isClaim, err := lease.Parse(evt.Tags)
		switch {
		case fb.Status == nip90.StatusProcessing && isClaim && err == nil:
			claimed = true
		case fb.Status == nip90.StatusError:
			released = true
		}
	}
	if !claimed || !released {
		t.Fatalf("worker's feedback on %s: claimed %v, released %v; want a lease claim and error feedback", c.URL, claimed, released)
	}
}
