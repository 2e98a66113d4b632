package lnd_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet/lnd"
)

// Connect to a node and pay an invoice; a repeated call with the same invoice returns the same
// preimage and pays nothing more.
func Example() {
	ctx := context.Background()
	b, err := lnd.New(ctx, lnd.Config{
		RESTURL:      "https://127.0.0.1:8080",
		MacaroonPath: "/home/me/.lnd/data/chain/bitcoin/mainnet/admin.macaroon",
		TLSCertPath:  "/home/me/.lnd/tls.cert",
	})
	if err != nil {
		log.Fatal(err) // wraps lnd.ErrCertMismatch or lnd.ErrUnauthorized for bad credentials
	}
	defer b.Close()

	res, err := b.PayInvoice(ctx, "connection-1", nip47.PayInvoiceParams{Invoice: "lnbc..."})
	var nerr *nip47.Error
	switch {
	case errors.As(err, &nerr):
		fmt.Println("the client sees:", nerr.Code, nerr.Message)
	case err != nil:
		log.Print(err) // ours: the client sees INTERNAL
	default:
		fmt.Println("paid, preimage", res.Preimage)
	}
}
