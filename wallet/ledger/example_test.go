package ledger_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet/ledger"
)

// A demo ledger moves play money between two accounts with a real regtest invoice.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ledger")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := ledger.Open(ctx, dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	if err := l.Fund(ctx, "client", 50_000); err != nil {
		log.Fatal(err)
	}
	inv, err := l.MakeInvoice(ctx, "worker", nip47.MakeInvoiceParams{Amount: 21_000, Description: "job 1"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := l.PayInvoice(ctx, "client", nip47.PayInvoiceParams{Invoice: inv.Invoice}); err != nil {
		log.Fatal(err)
	}
	client, _ := l.Balance(ctx, "client")
	worker, _ := l.Balance(ctx, "worker")
	fmt.Println(inv.Invoice[:8], client, worker)
	// Output: lnbcrt21 29000 21000
}
