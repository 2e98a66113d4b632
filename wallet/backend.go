// Package wallet is a Nostr Wallet Connect (NIP-47) wallet service: NWC connections, each with
// its own key and budget, served over any relay for a pluggable Backend: lnd (real Lightning,
// through lnd's REST API) or ledger (an embedded ledger for demos and tests only).
package wallet

import (
	"context"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// Backend is where the money is. It is the one interface in the wallet: lnd and the ledger
// implement it. account names the NWC connection on whose behalf a call is made: the ledger
// keeps a balance per account; lnd has one balance (the node's) and ignores it except to tag
// invoices so that notifications reach the right connection.
//
// Errors a client should see are *nip47.Error values (INSUFFICIENT_BALANCE, PAYMENT_FAILED,
// NOT_FOUND, ...); anything else is reported to the client as INTERNAL and logged.
type Backend interface {
	// Info describes the node: alias, pubkey, network ("regtest", "mainnet", ...), height.
	Info(ctx context.Context) (nip47.GetInfoResult, error)
	// MakeInvoice creates a BOLT11 invoice for amountMsat with the description (or its hash).
	MakeInvoice(ctx context.Context, account string, p nip47.MakeInvoiceParams) (nip47.Transaction, error)
	// PayInvoice pays a BOLT11 invoice and returns when it has settled or failed.
	PayInvoice(ctx context.Context, account string, p nip47.PayInvoiceParams) (nip47.PayInvoiceResult, error)
	// LookupInvoice finds an invoice or payment by payment hash (hex) or invoice.
	LookupInvoice(ctx context.Context, account string, p nip47.LookupInvoiceParams) (nip47.Transaction, error)
	// Balance is what account may spend, in msats.
	Balance(ctx context.Context, account string) (int64, error)
	// ListTransactions lists account's invoices and payments, newest first.
	ListTransactions(ctx context.Context, account string, p nip47.ListTransactionsParams) ([]nip47.Transaction, error)
	// Subscribe delivers settled incoming payments and completed outgoing ones until ctx
	// ends. Each event names its account.
	Subscribe(ctx context.Context) (<-chan BackendEvent, error)
	// Close releases the backend.
	Close() error
}

// BackendEvent is one settled payment, for NIP-47 notifications.
type BackendEvent struct {
	Account      string
	Notification nip47.Notification
}

// DefaultInvoiceExpiry is used when make_invoice gives no expiry.
const DefaultInvoiceExpiry = time.Hour
