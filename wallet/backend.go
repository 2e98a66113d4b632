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
	// MakeHoldInvoice creates a hold invoice for p.PaymentHash payable to account. A payment
	// to it is held: LookupInvoice reports state "accepted", Subscribe delivers a
	// hold_invoice_accepted notification (with settle_deadline), and the payer's PayInvoice
	// does not return until SettleHoldInvoice or CancelHoldInvoice (or the hold times out,
	// which cancels). A payment_hash already used by any invoice is refused (OTHER).
	MakeHoldInvoice(ctx context.Context, account string, p nip47.MakeHoldInvoiceParams) (nip47.Transaction, error)
	// SettleHoldInvoice settles account's accepted hold invoice whose payment hash is
	// sha256(preimage): the held funds become account's and the payer's PayInvoice returns
	// the preimage. Settling twice is not an error. NOT_FOUND when account has no such hold
	// invoice; OTHER when it is not accepted (still open, cancelled or expired).
	SettleHoldInvoice(ctx context.Context, account, preimage string) error
	// CancelHoldInvoice cancels account's open or accepted hold invoice: a held payment returns
	// to its payer at once (the payer's PayInvoice fails with PAYMENT_FAILED) and the invoice
	// can no longer be paid. Cancelling twice is not an error; NOT_FOUND when account has no
	// such hold invoice; OTHER when it is already settled.
	CancelHoldInvoice(ctx context.Context, account, paymentHash string) error
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
