package nip47_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

func ExampleParseURI() {
	uri, err := nip47.ParseURI("nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4" +
		"?relay=wss%3A%2F%2Frelay.damus.io&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(uri.WalletPubKey)
	fmt.Println(uri.Relays)
	fmt.Println(uri.Secret) // redacted, as is the whole URI:
	fmt.Println(uri)

	_, err = nip47.ParseURI("nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=https://relay.damus.io&secret=00")
	fmt.Println(errors.Is(err, nip47.ErrBadRelay), err)
	// Output:
	// b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4
	// [wss://relay.damus.io]
	// [redacted]
	// nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=wss%3A%2F%2Frelay.damus.io&secret=[redacted]
	// true nip47: bad relay URL "https://relay.damus.io": scheme is not ws or wss
}

// A client pays an invoice; the Transport wraps the caller's relay connections.
func ExampleClient() {
	var transport nip47.Transport // your relay connection(s), adapted
	uri, err := nip47.ParseURI("nostr+walletconnect://...")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := nip47.NewClient(uri, transport)
	res, err := c.PayInvoice(ctx, "lnbc50n1...", 0)
	switch {
	case errors.Is(err, nip47.ErrPaymentFailed), errors.Is(err, nip47.ErrInsufficientBalance):
		fmt.Println("not paid:", err)
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Println("no answer; the wallet may be down:", err)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println("paid, fees (msat):", res.FeesPaid)
	}
}

// A wallet serves its connections until ctx ends.
func ExampleService() {
	var transport nip47.Transport // your relay connection(s), adapted
	svc := &nip47.Service{
		WalletKey:     nip47.NewSecret(), // load it from a file in real use
		Transport:     transport,
		Methods:       []string{nip47.MethodGetBalance, nip47.MethodPayInvoice},
		Notifications: []string{nip47.NotificationPaymentReceived},
		Lookup: func(ctx context.Context, clientPubKey string) (nip47.Connection, bool, error) {
			return nip47.Connection{ClientPubKey: clientPubKey, Name: "my app"}, true, nil
		},
		Handle: func(ctx context.Context, c nip47.Connection, method string, params json.RawMessage) (any, error) {
			switch method {
			case nip47.MethodGetBalance:
				return nip47.GetBalanceResult{Balance: 21_000}, nil
			}
			return nil, nip47.Errorf(nip47.CodePaymentFailed, "no route")
		},
		OnError: func(err error) { fmt.Println(err) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := svc.Serve(ctx); err != nil {
		fmt.Println(err)
	}
}
