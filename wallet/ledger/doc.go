// Package ledger is an embedded Lightning look-alike for demos and tests ONLY: it moves
// numbers between named accounts in a SQLite file and never touches real money. It is one of
// the wallet's two backends (the other, wallet/lnd, is real Lightning); its get_info alias says
// so: "sparecycles ledger (demo, not real money)".
//
// What it does keep real is the invoice format: MakeInvoice returns genuine BOLT11 invoices on
// the regtest network, signed with the ledger's own node key (secp256k1, generated on first
// Open and stored in the database), so clients check them exactly as they would an lnd invoice.
// PayInvoice pays only the ledger's own invoices: in one SQLite transaction it checks the
// payer's balance, debits the payer, credits the payee and settles the invoice. Paying a hash
// the same account already paid returns the same preimage and moves no money. Invoices of
// other nodes, expired and unknown invoices fail with PAYMENT_FAILED.
//
// Hold invoices (MakeHoldInvoice) are native: the caller gives the payment hash and the ledger
// never holds the preimage until SettleHoldInvoice. Paying one debits the payer and marks it
// accepted in one transaction, emits hold_invoice_accepted to the payee, and PayInvoice blocks
// until SettleHoldInvoice (the payee is credited then), CancelHoldInvoice (the payer is refunded
// in the cancelling transaction) or the hold times out: the ledger simulates a chain of one
// block per BlockInterval (10 minutes) since its first Open (Height, get_info's block_height),
// and a payment accepted at height h is refunded when the height reaches h +
// min_cltv_expiry_delta, its settle_deadline. A blocked PayInvoice wakes on changes made in its
// process and polls the database every PollEvery for those made by another one.
//
// State lives in <data>/ledger.sqlite (accounts, invoices, payments, the node key). Two
// processes may open the same folder: `wallet connect --fund` credits an account while
// `wallet serve` runs. Payment events (Subscribe) are seen only by the process that made the
// payment, which is the serving one.
//
// Ledger cannot import package wallet (wallet opens it), so its Subscribe delivers its own
// Event type; package wallet adapts it to wallet.Backend.
package ledger
