package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// The job table and leases work on an encrypted (private) request from its clear tags alone:
// it shows in /api/jobs with its bid, expiration and named worker; the named worker's
// encrypted processing feedback takes the lease, a stranger's claim is refused, and the named
// worker's encrypted result ends the job.
func TestPrivateJobTableAndLease(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, named, stranger := newKey(t), newKey(t), newKey(t)
	toWorker, err := nip90.NewCipher(customer.sk, named.pk)
	if err != nil {
		t.Fatal(err)
	}
	toCustomer, _ := nip90.NewCipher(named.sk, customer.pk)
	now := time.Now()
	jr := nip90.JobRequest{Kind: 5000, CreatedAt: nostr.Timestamp(now.Unix()), BidMsat: 7000, Expiration: nostr.Timestamp(now.Add(time.Hour).Unix()),
		Inputs: []nip90.Input{{Value: "data:image/png;base64,c2VjcmV0", Type: nip90.InputURL}}, Providers: []string{named.pk}}
	unsigned, err := nip90.EncryptRequest(&jr, toWorker)
	if err != nil {
		t.Fatal(err)
	}
	req := customer.sign(t, unsigned)
	if msg := publish(t, c, req); msg != "" {
		t.Fatalf("encrypted request refused: %s", msg)
	}
	view := func() JobView {
		t.Helper()
		var body struct{ Jobs []JobView }
		getJSON(t, tr.http+"/api/jobs", nil, &body)
		for _, j := range body.Jobs {
			if j.ID == req.ID {
				return j
			}
		}
		t.Fatalf("/api/jobs lacks job %s: %+v", req.ID, body.Jobs)
		return JobView{}
	}
	if v := view(); v.State != JobOpen || v.BidMsat != 7000 || v.Expiration != int64(jr.Expiration) || len(v.Providers) != 1 || v.Providers[0] != named.pk {
		t.Fatalf("job row %+v", v)
	}

	// the worker's feedback and result, encrypted as the worker sends them
	concealed := func(k key, evt nostr.Event) nostr.Event {
		t.Helper()
		if err := nip90.ConcealResponse(&evt, toCustomer, nip90.NIP44); err != nil {
			t.Fatal(err)
		}
		return k.sign(t, evt)
	}
	processing := func(k key) nostr.Event {
		return concealed(k, nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Now(), Tags: nostr.Tags{
			{"status", "processing"}, {"e", req.ID}, {"p", req.PubKey}, lease.Tag(time.Minute)}})
	}
	if msg := publish(t, c, processing(stranger)); !strings.HasPrefix(msg, "blocked: ") {
		t.Fatalf("stranger's claim: %q", msg)
	}
	if msg := publish(t, c, processing(named)); msg != "" {
		t.Fatalf("named worker's claim: %q", msg)
	}
	if v := view(); v.State != JobLeased || v.Holder != named.pk {
		t.Fatalf("after the claim: %+v", v)
	}
	res := nip90.JobResult{Kind: 6000, CreatedAt: nostr.Now(), Request: req.String(), JobID: req.ID, Customer: req.PubKey, Content: "secret text"}
	out := concealed(named, res.Event())
	if msg := publish(t, c, out); msg != "" {
		t.Fatalf("encrypted result: %q", msg)
	}
	if v := view(); v.State != JobDone || v.ResultBy != named.pk || v.ResultID != out.ID {
		t.Fatalf("after the result: %+v", v)
	}
}
