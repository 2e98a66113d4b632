package nip90

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	nostr "github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/lease"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Fixed keys for the golden events. They sign nothing outside this package's tests.
const (
	customerSK = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"
	providerSK = "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2"
)

// TestGolden signs a request, feedback about it and its result, and compares each with its
// file in testdata/. Signatures may differ from run to run, so the sig is checked for
// validity rather than compared. Later events are built from the stored earlier ones, so
// the files agree with each other.
func TestGolden(t *testing.T) {
	customer, provider := mustPubKey(t, customerSK), mustPubKey(t, providerSK)

	req := &JobRequest{
		Kind:      5050,
		CreatedAt: 1700000000,
		Inputs:    []Input{{Value: "What is the capital of France?", Type: InputText}},
		Output:    "text/plain",
		Params:    []Param{{Name: "model", Values: []string{"LLaMA-2"}}, {Name: "max_tokens", Values: []string{"512"}}},
		BidMsat:   50000,
		Relays:    []string{"wss://relay.example.com"},
		Providers: []string{provider},
		Topics:    []string{"ai"},
	}
	reqEvt := golden(t, "request.golden.json", req.Event(), customerSK)
	req.ID, req.PubKey = reqEvt.ID, customer
	checkGoldenParse(t, &reqEvt, req, ParseJobRequest)

	fb := &JobFeedback{
		CreatedAt: 1700000005,
		JobID:     reqEvt.ID,
		JobRelay:  "wss://relay.example.com",
		Customer:  customer,
		Status:    StatusPaymentRequired,
		Info:      "pay to start",
		Amount:    &Amount{Msat: 42000, Bolt11: "lnbc420n1pexample"},
		// an extra tag the worker adds; not a lease tag, which belongs on processing feedback
		// only (nips/lease.md, checked for every golden by TestGoldenObeysLeaseSpec)
		Extra: nostr.Tags{{"provider", "sparecycles-worker/golden"}},
	}
	fbEvt := golden(t, "feedback.golden.json", fb.Event(), providerSK)
	fb.ID, fb.PubKey = fbEvt.ID, provider
	checkGoldenParse(t, &fbEvt, fb, ParseJobFeedback)

	res := &JobResult{
		Kind:      ResultKind(req.Kind),
		CreatedAt: 1700000030,
		Request:   reqEvt.String(),
		JobID:     reqEvt.ID,
		JobRelay:  "wss://relay.example.com",
		Customer:  customer,
		Inputs:    req.Inputs,
		Amount:    &Amount{Msat: 42000},
		Content:   "Paris.",
	}
	resEvt := golden(t, "result.golden.json", res.Event(), providerSK)
	res.ID, res.PubKey = resEvt.ID, provider
	checkGoldenParse(t, &resEvt, res, ParseJobResult)

	embedded, err := res.RequestEvent()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := embedded.CheckSignature(); !ok {
		t.Errorf("request embedded in the result does not verify: %v", err)
	}
}

// TestGoldenObeysLeaseSpec checks every golden event against the lease extension's rules for
// tags (nips/lease.md): a lease tag is well formed and sits on processing feedback only, so no
// example teaches an implementation what a relay refuses.
func TestGoldenObeysLeaseSpec(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var evt nostr.Event
		if err := json.Unmarshal(data, &evt); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		_, claims, err := lease.Parse(evt.Tags)
		if err != nil {
			t.Errorf("%s: %v", file, err)
		}
		status := ""
		if tag := evt.Tags.Find("status"); len(tag) >= 2 {
			status = tag[1]
		}
		if claims && (evt.Kind != KindFeedback || Status(status) != StatusProcessing) {
			t.Errorf("%s: a lease tag on kind %d with status %q; the spec allows it on processing feedback only", file, evt.Kind, status)
		}
	}
}

// golden signs evt with sk and compares it with testdata/file, or rewrites the file under
// -update. It returns the stored event.
func golden(t *testing.T, file string, evt nostr.Event, sk string) nostr.Event {
	t.Helper()
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	if ok, err := evt.CheckSignature(); !ok {
		t.Fatalf("%s: fresh signature does not verify: %v", file, err)
	}
	path := filepath.Join("testdata", file)
	if *update {
		var buf bytes.Buffer
		if err := json.Indent(&buf, []byte(evt.String()), "", "\t"); err != nil {
			t.Fatal(err)
		}
		buf.WriteByte('\n')
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return evt
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var want nostr.Event
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if !want.CheckID() {
		t.Errorf("%s: stored id does not match the event", file)
	}
	if ok, err := want.CheckSignature(); !ok {
		t.Errorf("%s: stored signature does not verify: %v", file, err)
	}
	got := evt
	got.Sig = want.Sig
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s differs (run with -update to rewrite it)\ngot  %v\nwant %v", file, got, want)
	}
	return want
}

func checkGoldenParse[T any](t *testing.T, evt *nostr.Event, want T, parse func(*nostr.Event) (T, error)) {
	t.Helper()
	got, err := parse(evt)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed golden event\ngot  %+v\nwant %+v", got, want)
	}
}

func mustPubKey(t *testing.T, sk string) string {
	t.Helper()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}
