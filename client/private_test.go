package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// announce publishes a worker's announcement for kind 5000 with one model at base msat, paid by
// schemes (none: free), made age ago; it returns the worker's pubkey.
func announce(t *testing.T, relay string, base int64, schemes []string, age time.Duration) string {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	pay := "lightning"
	if base == 0 {
		pay = "free"
	}
	h := nip89.HandlerInfo{Identifier: "sparecycles-worker", Kinds: []int{5000}, CreatedAt: nostr.Timestamp(time.Now().Add(-age).Unix()), Payment: schemes,
		Metadata: nip89.Metadata{Worker: &nip89.Worker{Version: 1, Payment: pay, Models: []nip89.Model{
			{Name: "ocr", Task: "ocr", Kind: 5000, SHA256: map[string]string{"model": "00"}, Price: nip89.Price{BaseMsat: base}}}}}}
	evt, err := h.Event()
	if err != nil {
		t.Fatal(err)
	}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	if ok, err := testrelay.Dial(t, relay).Publish(t.Context(), evt); err != nil || !ok.Accepted {
		t.Fatalf("announce: %v %s", err, ok.Reason)
	}
	return pk
}

// PrivateWorker picks among live workers for the kind: within the bid (no bid: free only),
// escrow first unless paying by prepay, then the cheapest.
func TestPrivateWorker(t *testing.T) {
	relay := testrelay.Start(t)
	free := announce(t, relay, 0, nil, time.Minute)
	escrowed := announce(t, relay, 2000, []string{"escrow", "prepay"}, time.Minute)
	announce(t, relay, 500, []string{"prepay"}, time.Minute)
	announce(t, relay, 100, []string{"escrow"}, time.Hour) // cheaper, but not live
	tests := []struct {
		name string
		kind int
		bid  int64
		pay  PayBy
		want string
		err  error
	}{
		{"no bid: free only", 5000, 0, PayByAny, free, nil},
		{"escrow first", 5000, 5000, PayByAny, escrowed, nil},
		{"prepay: the cheapest", 5000, 5000, PayByPrepay, free, nil},
		{"escrow only", 5000, 5000, PayByEscrow, escrowed, nil},
		{"escrow over the bid", 5000, 1500, PayByEscrow, "", ErrNoPrivateWorker},
		{"kind nobody serves", 5001, 5000, PayByAny, "", ErrNoPrivateWorker},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(context.Background(), Config{Relays: []string{relay}, Data: t.TempDir(), SecretKey: nostr.GeneratePrivateKey(), Pay: tc.pay}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.PrivateWorker(t.Context(), tc.kind, tc.bid)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("picked %s (%v), want %s (%v)", got, err, tc.want, tc.err)
			}
		})
	}
}

// A private request's id is known before it is posted: the same request encrypts to the same
// event, whose inputs only the worker reads.
func TestPrivateRequestEvent(t *testing.T) {
	sk, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	workerPK, _ := nostr.GetPublicKey(worker)
	req := nip90.JobRequest{Kind: 5000, CreatedAt: nostr.Now(), Encrypted: true, Providers: []string{workerPK},
		Inputs: []nip90.Input{{Value: "https://example.com/a.png", Type: nip90.InputURL}}}
	a, err := PrivateRequestEvent(req, PayByEscrow, sk)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := PrivateRequestEvent(req, PayByEscrow, sk)
	if a.GetID() != b.GetID() || a.Tags.Find("payment") == nil || a.Tags.Find("i") != nil {
		t.Fatalf("events %s and %s", a.String(), b.String())
	}
	a.PubKey, _ = nostr.GetPublicKey(sk)
	c, _ := nip90.NewCipher(worker, a.PubKey)
	got, _, err := nip90.DecryptRequest(&a, c)
	if err != nil || got.Inputs[0].Value != "https://example.com/a.png" {
		t.Fatalf("decrypted %+v, %v", got, err)
	}
	req.Providers = append(req.Providers, a.PubKey)
	if _, err := PrivateRequestEvent(req, PayByAny, sk); err == nil {
		t.Fatal("a private request to two workers")
	}
}
