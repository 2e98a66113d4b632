// Package lnd is a wallet.Backend over lnd's REST API (lnd v0.19; the REST proxy of its
// gRPC services, with routerrpc for payments).
//
// The connection trusts exactly the certificate in Config.TLSCertPath, byte for byte, and no
// system roots; the macaroon goes in the Grpc-Metadata-macaroon header of every request and
// is never logged or printed. Proxies from the environment are not used.
//
// What the calls map to:
//
//	Info              GET  /v1/getinfo
//	MakeInvoice       POST /v1/invoices, then GET /v1/invoice/{hash}
//	PayInvoice        GET  /v1/payreq/{invoice}, POST /v2/router/send (a stream), and
//	                  GET /v2/router/track/{hash} when lnd already has a payment for the hash
//	LookupInvoice     GET  /v1/invoice/{hash}, else a scan of GET /v1/payments
//	Balance           GET  /v1/balance/channels (local_balance)
//	ListTransactions  GET  /v1/invoices and /v1/payments, newest first, merged
//	Subscribe         GET  /v1/invoices/subscribe (a stream), plus PayInvoice's own results,
//	                  plus GET /v2/invoices/subscribe/{hash} (a stream) per open hold invoice
//	MakeHoldInvoice   POST /v2/invoices/hodl, then GET /v1/invoice/{hash}
//	SettleHoldInvoice GET  /v1/invoice/{hash}, POST /v2/invoices/settle
//	CancelHoldInvoice GET  /v1/invoice/{hash}, POST /v2/invoices/cancel
//
// Hold invoices: lnd's SubscribeInvoices stream reports only added and settled invoices, so
// each open hold invoice (at most maxHoldWatchers) is followed with SubscribeSingleInvoice
// for hold_invoice_accepted; its settle_deadline is the lowest expiry_height of the accepted
// HTLCs less settleMarginBlocks (18: lnd's own hold expiry delta of 12, plus 6). Which
// account made a hold invoice is kept in Config.HoldOwnersPath, so that only that account
// may settle or cancel it (others get NOT_FOUND), also after a restart. LookupInvoice reports
// an accepted hold invoice as "accepted", a cancelled one as "failed" ("expired" once past
// its expiry), and the payer's held payment as "pending"; the payer's PayInvoice waits while
// the HTLC is held.
//
// Accounts: lnd has one balance and one history, so Balance and ListTransactions ignore the
// account. MakeInvoice remembers, in memory, which account made each invoice, so that its
// payment_received notification names that account; after a restart, and for invoices made
// outside this process, notifications carry account "". (The wallet service records which
// connection made each invoice in its own store and fills the account in from there.)
//
// Never paying twice: lnd keys payments by payment hash and refuses a second payment while
// one is in flight or has succeeded. PayInvoice turns that refusal into the outcome of the
// existing payment, so a retried pay_invoice (after a timeout, a crash, or concurrently)
// returns the same preimage and moves no more money.
//
// Errors a NIP-47 client should see are *nip47.Error values: INSUFFICIENT_BALANCE, PAYMENT_FAILED,
// NOT_FOUND, and OTHER for requests lnd rejects as malformed. Everything else (lnd unreachable,
// macaroon rejected, unexpected replies) is a plain error that wraps what went wrong; the
// sentinels ErrCertMismatch and ErrUnauthorized single out the two configuration mistakes.
package lnd
