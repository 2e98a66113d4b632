package worker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// postPrivate posts an encrypted request for inputs to worker, in scheme (NIP-44 through
// nip90.EncryptRequest, or NIP-04 by hand as an older client writes it).
func (c customer) postPrivate(t testing.TB, worker string, scheme nip90.Scheme, inputs []nip90.Input, conn *relayconn.Conn) nostr.Event {
	t.Helper()
	cipher, err := nip90.NewCipher(c.sk, worker)
	if err != nil {
		t.Fatal(err)
	}
	req := nip90.JobRequest{Kind: 5000, CreatedAt: nostr.Now(), Inputs: inputs, Output: "text/plain", Providers: []string{worker}}
	evt, err := nip90.EncryptRequest(&req, cipher)
	if err != nil {
		t.Fatal(err)
	}
	if scheme == nip90.NIP04 {
		plain := (&nip90.JobRequest{Inputs: inputs}).Tags()
		if evt.Content, err = cipher.Encrypt(nip90.NIP04, plainJSON(t, plain)); err != nil {
			t.Fatal(err)
		}
	}
	if err := evt.Sign(c.sk); err != nil {
		t.Fatal(err)
	}
	if ok, err := conn.Publish(t.Context(), evt); err != nil || !ok.Accepted {
		t.Fatalf("post private job: %+v %v", ok, err)
	}
	return evt
}

func plainJSON(t testing.TB, tags nostr.Tags) string {
	t.Helper()
	b, err := json.Marshal(tags)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An encrypted OCR request to one of two workers: the named worker serves it, in the scheme
// the request used; its feedback and result are encrypted to the customer and copy no input in
// the clear; the other worker cannot read the request and does not serve it.
func TestPrivateJob(t *testing.T) {
	relayURL := testrelay.Start(t)
	w := startWorker(t, testConfig(t, relayURL))
	other := startWorker(t, testConfig(t, relayURL))
	conn := testrelay.Dial(t, relayURL)
	cust := newCustomer()
	png, err := testimage.Render(32, sentence)
	if err != nil {
		t.Fatal(err)
	}
	image := "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
	fromWorker, err := nip90.NewCipher(cust.sk, w.PubKey())
	if err != nil {
		t.Fatal(err)
	}

	for _, scheme := range []nip90.Scheme{nip90.NIP44, nip90.NIP04} {
		t.Run(scheme.String(), func(t *testing.T) {
			job := cust.postPrivate(t, w.PubKey(), scheme, []nip90.Input{{Value: image, Type: nip90.InputURL}}, conn)
			res, info := testrelay.JobOutcome(t, conn, job)
			if res == nil {
				t.Fatalf("job failed: %q", info)
			}
			if res.PubKey != w.PubKey() || !nip90.IsEncrypted(res) || nip90.SchemeOf(res.Content) != scheme {
				t.Fatalf("result from %s, encrypted %v, scheme %s", res.PubKey, nip90.IsEncrypted(res), nip90.SchemeOf(res.Content))
			}
			r, err := nip90.ParseJobResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Inputs) != 0 || r.Request != job.String() {
				t.Fatalf("result copies %d inputs; request tag is the posted request: %v", len(r.Inputs), r.Request == job.String())
			}
			if err := nip90.RevealResult(r, fromWorker); err != nil {
				t.Fatal(err)
			}
			if normalize(r.Content) != normalize(sentence) {
				t.Fatalf("decrypted %q, want %q", r.Content, sentence)
			}
			// nothing the relay holds about the job shows the image or the text in the clear
			for _, evt := range testrelay.Query(t, conn, nostr.Filter{Tags: nostr.TagMap{"e": {job.ID}}}) {
				if raw := evt.String(); strings.Contains(raw, "data:image") || strings.Contains(strings.ToLower(raw), "quick brown") {
					t.Errorf("kind %d event in the clear: %s", evt.Kind, raw)
				}
				if evt.PubKey == other.PubKey() {
					t.Errorf("the other worker answered: %s", evt.String())
				}
			}
			// the other worker's key does not open the request
			otherCipher, _ := nip90.NewCipher(other.key.Secret(), cust.pk)
			if _, _, err := nip90.DecryptRequest(&job, otherCipher); !errors.Is(err, nip90.ErrUndecryptable) {
				t.Errorf("the other worker decrypted the request: %v", err)
			}
		})
	}
	if n := other.Stats().Executed; n != 0 {
		t.Errorf("the other worker ran %d jobs", n)
	}

	// a private job that fails: the reason, which quotes the input, comes back encrypted
	job := cust.postPrivate(t, w.PubKey(), nip90.NIP44, []nip90.Input{{Value: "http://127.0.0.1:1/secret-page.png", Type: nip90.InputURL}}, conn)
	res, info := testrelay.JobOutcome(t, conn, job)
	if res != nil || info != "" {
		t.Fatalf("failed job: result %v, clear info %q", res, info)
	}
	fbs := testrelay.Query(t, conn, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}}})
	var reason string
	for _, evt := range fbs {
		if strings.Contains(evt.String(), "secret-page") {
			t.Errorf("feedback in the clear: %s", evt.String())
		}
		fb, err := nip90.ParseJobFeedback(evt)
		if err != nil || fb.Status != nip90.StatusError {
			continue
		}
		if err := nip90.RevealFeedback(fb, fromWorker); err != nil {
			t.Fatal(err)
		}
		reason = fb.Info
	}
	if !strings.Contains(reason, "unreachable") {
		t.Errorf("decrypted error %q, want the fetch error", reason)
	}

	// a request encrypted to this worker that does not decrypt is refused in the clear
	bad := nostr.Event{Kind: 5000, CreatedAt: nostr.Now(), Content: strings.Repeat("A", 200),
		Tags: nostr.Tags{{"p", w.PubKey()}, {"encrypted"}}}
	_ = bad.Sign(cust.sk)
	if ok, err := conn.Publish(t.Context(), bad); err != nil || !ok.Accepted {
		t.Fatal(err)
	}
	if _, info := testrelay.JobOutcome(t, conn, bad); !strings.Contains(info, "does not decrypt") {
		t.Errorf("undecryptable request answered %q", info)
	}
}

// restore (after a restart) reads a stored private request as intake does: decrypted, and
// answered encrypted.
func TestRestorePrivateJob(t *testing.T) {
	relayURL := testrelay.Start(t)
	w := startWorker(t, testConfig(t, relayURL))
	cust := newCustomer()
	cipher, _ := nip90.NewCipher(cust.sk, w.PubKey())
	req := nip90.JobRequest{Kind: 5000, CreatedAt: nostr.Now(), Inputs: []nip90.Input{{Value: "https://example.com/p.png", Type: nip90.InputURL}}, Providers: []string{w.PubKey()}}
	evt, err := nip90.EncryptRequest(&req, cipher)
	if err != nil {
		t.Fatal(err)
	}
	_ = evt.Sign(cust.sk)
	j, err := w.restore(storedJob{ID: evt.ID, Request: &evt, Relays: []string{relayURL}})
	if err != nil {
		t.Fatal(err)
	}
	if j.private == nil || len(j.req.Inputs) != 1 || j.req.Inputs[0].Value != "https://example.com/p.png" {
		t.Fatalf("restored %+v, private %v", j.req, j.private != nil)
	}
	// any event for the job is concealed before signing
	fb := nip90.JobFeedback{JobID: evt.ID, Customer: cust.pk, Status: nip90.StatusError, Info: "p.png is gone"}
	out := fb.Event()
	if err := w.signFor(j, &out); err != nil || strings.Contains(out.String(), "p.png") || !nip90.IsEncrypted(&out) {
		t.Fatalf("feedback for a restored private job: %s (%v)", out.String(), err)
	}
	// a result NIP-44 cannot hold is refused with a reason the customer reads
	big := nip90.JobResult{Kind: 6000, JobID: evt.ID, Customer: cust.pk, Content: strings.Repeat("x", 70_000)}
	huge := big.Event()
	if err := w.signFor(j, &huge); !strings.HasPrefix(nip01.Reason(err), "error: the answer to a private job is 70000 bytes") {
		t.Fatalf("oversized result: %v", err)
	}
}
