package lnd

import (
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// lnd's JSON, as its REST proxy writes it (proto field names, 64-bit integers as strings,
// bytes as standard base64, enums by name). Only the fields we read are listed.

type getInfoReply struct {
	Alias       string `json:"alias"`
	Color       string `json:"color"`
	PubKey      string `json:"identity_pubkey"`
	BlockHeight num    `json:"block_height"`
	BlockHash   string `json:"block_hash"`
	Synced      bool   `json:"synced_to_chain"`
	Chains      []struct {
		Network string `json:"network"`
	} `json:"chains"`
}

// network names lnd's network the way NIP-47 does.
func (r getInfoReply) network() string {
	if len(r.Chains) == 0 {
		return ""
	}
	switch n := r.Chains[0].Network; n {
	case "testnet", "testnet3", "testnet4":
		return "testnet"
	default:
		return n // mainnet, signet, regtest, simnet
	}
}

type invoice struct {
	Memo            string `json:"memo"`
	RPreimage       []byte `json:"r_preimage"`
	RHash           []byte `json:"r_hash"`
	ValueMsat       num    `json:"value_msat"`
	CreationDate    num    `json:"creation_date"`
	SettleDate      num    `json:"settle_date"`
	PaymentRequest  string `json:"payment_request"`
	DescriptionHash []byte `json:"description_hash"`
	Expiry          num    `json:"expiry"`
	AddIndex        num    `json:"add_index"`
	SettleIndex     num    `json:"settle_index"`
	AmtPaidMsat     num    `json:"amt_paid_msat"`
	State           string `json:"state"` // OPEN, SETTLED, CANCELED, ACCEPTED
	CLTVExpiry      num    `json:"cltv_expiry"`
	HTLCs           []struct {
		State        string `json:"state"` // ACCEPTED, SETTLED, CANCELED
		ExpiryHeight num    `json:"expiry_height"`
		AmtMsat      num    `json:"amt_msat"`
	} `json:"htlcs"`
}

// hold reports whether in is a hold invoice: lnd knows no preimage for it until it is
// settled. (Keysend and AMP invoices, which are not hold invoices, are never made here.)
func (in invoice) hold() bool {
	return len(in.RPreimage) == 0 && in.State != "SETTLED"
}

// settleDeadline is the block height by which an accepted hold invoice must be settled or
// cancelled: the earliest expiry of its accepted HTLCs less settleMarginBlocks. 0 when no HTLC
// is accepted.
func (in invoice) settleDeadline() int64 {
	var lowest int64
	for _, h := range in.HTLCs {
		if h.State == "ACCEPTED" && h.ExpiryHeight > 0 && (lowest == 0 || int64(h.ExpiryHeight) < lowest) {
			lowest = int64(h.ExpiryHeight)
		}
	}
	if lowest == 0 {
		return 0
	}
	return max(lowest-settleMarginBlocks, 1)
}

// holdInvoiceRequest is invoicesrpc.AddHoldInvoiceRequest, for POST /v2/invoices/hodl.
type holdInvoiceRequest struct {
	Hash            []byte `json:"hash"`
	ValueMsat       int64  `json:"value_msat,string"`
	Memo            string `json:"memo,omitempty"`
	DescriptionHash []byte `json:"description_hash,omitempty"`
	Expiry          int64  `json:"expiry,string"`
	CLTVExpiry      int64  `json:"cltv_expiry,omitempty,string"`
}

// holdInvoiceReply is invoicesrpc.AddHoldInvoiceResp.
type holdInvoiceReply struct {
	PaymentRequest string `json:"payment_request"`
	AddIndex       num    `json:"add_index"`
	PaymentAddr    []byte `json:"payment_addr"`
}

type addInvoiceReply struct {
	RHash          []byte `json:"r_hash"`
	PaymentRequest string `json:"payment_request"`
	AddIndex       num    `json:"add_index"`
}

type listInvoicesReply struct {
	Invoices         []invoice `json:"invoices"`
	LastIndexOffset  num       `json:"last_index_offset"`
	FirstIndexOffset num       `json:"first_index_offset"`
}

type payment struct {
	PaymentHash     string `json:"payment_hash"`
	PaymentPreimage string `json:"payment_preimage"`
	ValueMsat       num    `json:"value_msat"`
	FeeMsat         num    `json:"fee_msat"`
	PaymentRequest  string `json:"payment_request"`
	Status          string `json:"status"` // INITIATED, IN_FLIGHT, SUCCEEDED, FAILED
	CreationTimeNs  num    `json:"creation_time_ns"`
	PaymentIndex    num    `json:"payment_index"`
	FailureReason   string `json:"failure_reason"`
	HTLCs           []struct {
		Status        string `json:"status"` // IN_FLIGHT, SUCCEEDED, FAILED
		ResolveTimeNs num    `json:"resolve_time_ns"`
	} `json:"htlcs"`
}

// inFlight reports whether an HTLC of the payment is out and unresolved: the payment is no
// longer looking for a route, and may be held by the recipient (a hold invoice).
func (p payment) inFlight() bool {
	for _, h := range p.HTLCs {
		if h.Status == "IN_FLIGHT" {
			return true
		}
	}
	return false
}

type listPaymentsReply struct {
	Payments         []payment `json:"payments"`
	FirstIndexOffset num       `json:"first_index_offset"`
	LastIndexOffset  num       `json:"last_index_offset"`
}

type payReq struct {
	Destination     string `json:"destination"`
	PaymentHash     string `json:"payment_hash"`
	NumMsat         num    `json:"num_msat"`
	Timestamp       num    `json:"timestamp"`
	Expiry          num    `json:"expiry"`
	Description     string `json:"description"`
	DescriptionHash string `json:"description_hash"` // hex here, unlike Invoice's bytes
}

type channelBalanceReply struct {
	LocalBalance struct {
		Msat num `json:"msat"`
	} `json:"local_balance"`
}

// sendRequest is routerrpc.SendPaymentRequest, for POST /v2/router/send.
type sendRequest struct {
	PaymentRequest string `json:"payment_request"`
	AmtMsat        int64  `json:"amt_msat,omitempty,string"`
	TimeoutSeconds int32  `json:"timeout_seconds"`
	FeeLimitMsat   int64  `json:"fee_limit_msat,string"`
}

// incoming turns one of our invoices into a NIP-47 transaction as of now. The preimage is
// shown only once the invoice is settled, when the payer has it too.
func (in invoice) incoming(now time.Time) nip47.Transaction {
	tx := nip47.Transaction{
		Type:        nip47.TypeIncoming,
		Invoice:     in.PaymentRequest,
		Description: in.Memo,
		PaymentHash: hex.EncodeToString(in.RHash),
		Amount:      int64(in.ValueMsat),
		CreatedAt:   int64(in.CreationDate),
	}
	if len(in.DescriptionHash) > 0 {
		tx.DescriptionHash = hex.EncodeToString(in.DescriptionHash)
	}
	if in.Expiry > 0 {
		tx.ExpiresAt = int64(in.CreationDate + in.Expiry)
	}
	expired := tx.ExpiresAt != 0 && now.Unix() >= tx.ExpiresAt
	switch in.State {
	case "SETTLED":
		tx.State = nip47.StateSettled
		tx.SettledAt = int64(in.SettleDate)
		tx.Preimage = hex.EncodeToString(in.RPreimage)
		if in.AmtPaidMsat > 0 {
			tx.Amount = int64(in.AmtPaidMsat) // zero-amount invoices, and overpayments
		}
	case "CANCELED":
		// lnd cancels invoices when they expire; anything else canceled them by hand. A hold
		// invoice cancelled before its expiry (cancel_hold_invoice, or lnd giving up a held
		// HTLC near its CLTV expiry) is "failed"; one cancelled after it, "expired".
		tx.State = nip47.StateFailed
		if expired {
			tx.State = nip47.StateExpired
		}
	case "ACCEPTED":
		// A hold invoice with the payment locked in: it waits for settle or cancel.
		tx.State = nip47.StateAccepted
		tx.SettleDeadline = in.settleDeadline()
	default: // OPEN
		tx.State = nip47.StatePending
		if expired {
			tx.State = nip47.StateExpired
		}
	}
	return tx
}

// outgoing turns a payment into a NIP-47 transaction. Description and expiry come from the
// decoded invoice when the caller has it (pr may be nil).
func (p payment) outgoing(pr *payReq) nip47.Transaction {
	tx := nip47.Transaction{
		Type:        nip47.TypeOutgoing,
		Invoice:     p.PaymentRequest,
		PaymentHash: p.PaymentHash,
		Amount:      int64(p.ValueMsat),
		FeesPaid:    int64(p.FeeMsat),
		CreatedAt:   int64(p.CreationTimeNs) / int64(time.Second),
	}
	switch p.Status {
	case "SUCCEEDED":
		tx.State = nip47.StateSettled
		if strings.Trim(p.PaymentPreimage, "0") != "" {
			tx.Preimage = p.PaymentPreimage
		}
		for _, h := range p.HTLCs {
			if h.Status == "SUCCEEDED" {
				tx.SettledAt = max(tx.SettledAt, int64(h.ResolveTimeNs)/int64(time.Second))
			}
		}
	case "FAILED":
		tx.State = nip47.StateFailed
	default:
		tx.State = nip47.StatePending
	}
	if pr != nil {
		tx.Description = pr.Description
		tx.DescriptionHash = pr.DescriptionHash
		if pr.Expiry > 0 {
			tx.ExpiresAt = int64(pr.Timestamp + pr.Expiry)
		}
	}
	return tx
}

// paymentError is the NIP-47 error for a payment lnd reports FAILED.
func paymentError(reason string) *nip47.Error {
	switch reason {
	case "FAILURE_REASON_INSUFFICIENT_BALANCE":
		return nip47.Errorf(nip47.CodeInsufficientBalance, "insufficient balance in channels")
	case "FAILURE_REASON_NO_ROUTE":
		return nip47.Errorf(nip47.CodePaymentFailed, "no route to the destination")
	case "FAILURE_REASON_TIMEOUT":
		return nip47.Errorf(nip47.CodePaymentFailed, "timed out looking for a route")
	case "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS":
		return nip47.Errorf(nip47.CodePaymentFailed, "the recipient rejected the payment (unknown invoice or wrong amount)")
	case "FAILURE_REASON_CANCELED":
		return nip47.Errorf(nip47.CodePaymentFailed, "payment canceled")
	case "FAILURE_REASON_ERROR", "", "FAILURE_REASON_NONE":
		return nip47.Errorf(nip47.CodePaymentFailed, "payment failed")
	default:
		return nip47.Errorf(nip47.CodePaymentFailed, "payment failed: %s", strings.ToLower(strings.TrimPrefix(reason, "FAILURE_REASON_")))
	}
}

// sendError maps an error lnd gives when it refuses to start a payment (before any HTLC is
// sent) to the NIP-47 error a client should see. Transport failures and macaroon rejections
// stay plain errors: they are ours, not the client's. So does lnd's "context canceled" (or
// deadline exceeded), which ends a payment stream whose request we cancelled (a shutdown, our
// deadline): lnd carries on with the payment, whose outcome is still unknown.
func sendError(err error) error {
	var e *apiError
	if !errors.As(err, &e) || errors.Is(err, ErrUnauthorized) {
		return err
	}
	msg := strings.ToLower(e.Message)
	if e.Code == codeCanceled || e.Code == codeDeadlineExceeded ||
		strings.Contains(msg, "context canceled") || strings.Contains(msg, "context deadline exceeded") {
		return err
	}
	if strings.Contains(msg, "insufficient") && (strings.Contains(msg, "balance") || strings.Contains(msg, "funds")) {
		return nip47.Errorf(nip47.CodeInsufficientBalance, "%s", e.Message)
	}
	return nip47.Errorf(nip47.CodePaymentFailed, "%s", e.Message)
}

// feeLimitMsat is the most we pay in routing fees: 1% of the amount, but at least 10 sat,
// since a small payment over a few hops pays each hop's base fee (commonly 1 sat).
func feeLimitMsat(amountMsat int64) int64 {
	return max(10_000, amountMsat/100)
}
