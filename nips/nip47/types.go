package nip47

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Event kinds of NIP-47.
const (
	KindInfo           = 13194
	KindRequest        = 23194
	KindResponse       = 23195
	KindNotification04 = 23196 // notifications encrypted with NIP-04, for old clients
	KindNotification   = 23197 // notifications encrypted with NIP-44 v2
)

// Method names.
const (
	MethodPayInvoice       = "pay_invoice"
	MethodMakeInvoice      = "make_invoice"
	MethodLookupInvoice    = "lookup_invoice"
	MethodGetBalance       = "get_balance"
	MethodGetInfo          = "get_info"
	MethodListTransactions = "list_transactions"

	// Hold invoices (NIP-47, 2026-02): an invoice for a payment hash the caller chose; an
	// incoming payment is held (state "accepted") until the caller settles it with the
	// preimage or cancels it, which returns the funds to the payer at once.
	MethodMakeHoldInvoice   = "make_hold_invoice"
	MethodSettleHoldInvoice = "settle_hold_invoice"
	MethodCancelHoldInvoice = "cancel_hold_invoice"
)

// Notification types.
const (
	NotificationPaymentReceived = "payment_received"
	NotificationPaymentSent     = "payment_sent"
	// NotificationHoldInvoiceAccepted: a payment to a hold invoice arrived and is locked;
	// the transaction carries settle_deadline, the block height by which to settle.
	NotificationHoldInvoiceAccepted = "hold_invoice_accepted"
)

// Encryption schemes, as named in the info event's "encryption" tag and a request's
// "encryption" tag.
const (
	EncryptionNIP44 = "nip44_v2"
	EncryptionNIP04 = "nip04"
)

// Error codes of NIP-47.
const (
	CodeRateLimited           = "RATE_LIMITED"
	CodeNotImplemented        = "NOT_IMPLEMENTED"
	CodeInsufficientBalance   = "INSUFFICIENT_BALANCE"
	CodeQuotaExceeded         = "QUOTA_EXCEEDED"
	CodeRestricted            = "RESTRICTED"
	CodeUnauthorized          = "UNAUTHORIZED"
	CodeInternal              = "INTERNAL"
	CodeOther                 = "OTHER"
	CodePaymentFailed         = "PAYMENT_FAILED"
	CodeNotFound              = "NOT_FOUND"
	CodeUnsupportedEncryption = "UNSUPPORTED_ENCRYPTION"
)

// Error is a NIP-47 error: a code and a message. Wallets return it in responses; clients get it
// back from every method. errors.Is matches by code against the sentinels below.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "nip47: " + e.Code + ": " + e.Message }

// Is matches errors with the same code.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Sentinels, one per code, for errors.Is.
var (
	ErrRateLimited           = &Error{Code: CodeRateLimited}
	ErrNotImplemented        = &Error{Code: CodeNotImplemented}
	ErrInsufficientBalance   = &Error{Code: CodeInsufficientBalance}
	ErrQuotaExceeded         = &Error{Code: CodeQuotaExceeded}
	ErrRestricted            = &Error{Code: CodeRestricted}
	ErrUnauthorized          = &Error{Code: CodeUnauthorized}
	ErrInternal              = &Error{Code: CodeInternal}
	ErrOther                 = &Error{Code: CodeOther}
	ErrPaymentFailed         = &Error{Code: CodePaymentFailed}
	ErrNotFound              = &Error{Code: CodeNotFound}
	ErrUnsupportedEncryption = &Error{Code: CodeUnsupportedEncryption}
)

// Errorf builds an Error with a code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Transaction is an invoice or payment as NIP-47 reports it. Amounts are msats; times unix seconds.
type Transaction struct {
	Type            string `json:"type"`            // "incoming" or "outgoing"
	State           string `json:"state,omitempty"` // "pending", "settled", "expired", "failed"
	Invoice         string `json:"invoice,omitempty"`
	Description     string `json:"description,omitempty"`
	DescriptionHash string `json:"description_hash,omitempty"`
	Preimage        string `json:"preimage,omitempty"`
	PaymentHash     string `json:"payment_hash"`
	Amount          int64  `json:"amount"`
	FeesPaid        int64  `json:"fees_paid"`
	CreatedAt       int64  `json:"created_at"`
	ExpiresAt       int64  `json:"expires_at,omitempty"`
	SettledAt       int64  `json:"settled_at,omitempty"`
	// SettleDeadline is, for an accepted hold invoice, the block height by which it must be
	// settled or cancelled (the held HTLC's expiry less a safety margin).
	SettleDeadline int64           `json:"settle_deadline,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
}

// Transaction types and states.
const (
	TypeIncoming = "incoming"
	TypeOutgoing = "outgoing"
	StatePending = "pending"
	StateSettled = "settled"
	StateExpired = "expired"
	StateFailed  = "failed"
	// StateAccepted is a hold invoice whose payment has arrived and is held: neither side
	// can spend it until the invoice's maker settles or cancels it.
	StateAccepted = "accepted"
)

// Request is the decrypted content of a kind 23194 event.
type Request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// Response is the decrypted content of a kind 23195 event.
type Response struct {
	ResultType string          `json:"result_type"`
	Error      *Error          `json:"error,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
}

// Notification is the decrypted content of a kind 23196/23197 event.
type Notification struct {
	Type        string      `json:"notification_type"`
	Transaction Transaction `json:"notification"`
}

// PayInvoiceParams are pay_invoice's params.
type PayInvoiceParams struct {
	Invoice string `json:"invoice"`
	Amount  int64  `json:"amount,omitempty"` // msats, for invoices without an amount
}

// PayInvoiceResult is pay_invoice's result.
type PayInvoiceResult struct {
	Preimage string `json:"preimage"`
	FeesPaid int64  `json:"fees_paid,omitempty"`
}

// MakeInvoiceParams are make_invoice's params.
type MakeInvoiceParams struct {
	Amount          int64  `json:"amount"` // msats
	Description     string `json:"description,omitempty"`
	DescriptionHash string `json:"description_hash,omitempty"`
	Expiry          int64  `json:"expiry,omitempty"` // seconds
}

// MakeHoldInvoiceParams are make_hold_invoice's params: make_invoice's plus the payment hash
// the caller chose (it alone knows the preimage) and the final hop's CLTV delta.
type MakeHoldInvoiceParams struct {
	Amount             int64  `json:"amount"` // msats
	Description        string `json:"description,omitempty"`
	DescriptionHash    string `json:"description_hash,omitempty"`
	Expiry             int64  `json:"expiry,omitempty"` // seconds
	PaymentHash        string `json:"payment_hash"`     // hex sha256 of the caller's preimage
	MinCLTVExpiryDelta int64  `json:"min_cltv_expiry_delta,omitempty"`
}

// SettleHoldInvoiceParams are settle_hold_invoice's params. Its result is an empty object.
type SettleHoldInvoiceParams struct {
	Preimage string `json:"preimage"` // hex
}

// CancelHoldInvoiceParams are cancel_hold_invoice's params. Its result is an empty object.
type CancelHoldInvoiceParams struct {
	PaymentHash string `json:"payment_hash"` // hex
}

// LookupInvoiceParams are lookup_invoice's params: one of the two.
type LookupInvoiceParams struct {
	PaymentHash string `json:"payment_hash,omitempty"`
	Invoice     string `json:"invoice,omitempty"`
}

// ListTransactionsParams are list_transactions' params.
type ListTransactionsParams struct {
	From   int64  `json:"from,omitempty"`
	Until  int64  `json:"until,omitempty"`
	Limit  int64  `json:"limit,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	Unpaid bool   `json:"unpaid,omitempty"`
	Type   string `json:"type,omitempty"`
}

// GetBalanceResult is get_balance's result.
type GetBalanceResult struct {
	Balance int64 `json:"balance"` // msats
}

// GetInfoResult is get_info's result.
type GetInfoResult struct {
	Alias         string   `json:"alias"`
	Color         string   `json:"color,omitempty"`
	Pubkey        string   `json:"pubkey"`
	Network       string   `json:"network"` // mainnet, testnet, signet, regtest
	BlockHeight   int64    `json:"block_height"`
	BlockHash     string   `json:"block_hash,omitempty"`
	Methods       []string `json:"methods"`
	Notifications []string `json:"notifications,omitempty"`
}

// ListTransactionsResult is list_transactions' result.
type ListTransactionsResult struct {
	Transactions []Transaction `json:"transactions"`
}
