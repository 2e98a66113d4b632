// Package invoice checks a BOLT11 invoice (decoded with ln-decodepay) before anyone pays it:
// the one place the client and the wallet decide whether an invoice is what was agreed.
package invoice

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	decodepay "github.com/nbd-wtf/ln-decodepay"
)

// Refusals; Check wraps them with the details.
var (
	ErrMalformed      = errors.New("invoice: not a valid BOLT11 invoice")
	ErrNoAmount       = errors.New("invoice: no amount")
	ErrOverBid        = errors.New("invoice: amount above the bid")
	ErrAmountMismatch = errors.New("invoice: amount differs from the quoted amount")
	ErrNetwork        = errors.New("invoice: wrong network")
	ErrExpired        = errors.New("invoice: expired")
	ErrNotBound       = errors.New("invoice: description does not bind the job")
)

// Description is the invoice description a worker writes for a job; it binds the invoice to
// the job request id.
func Description(jobID string) string { return "sparecycles job " + jobID }

// Expect is what the payer agreed to.
type Expect struct {
	JobID      string    // the job request id the invoice must name
	BidMsat    int64     // the customer's bid, the most it pays; 0 (no bid given) means free jobs only
	QuotedMsat int64     // the amount tag of the worker's feedback; 0 means none given
	Network    string    // the paying wallet's network: mainnet, testnet, signet, regtest
	Now        time.Time // the clock; zero means time.Now
	MinLife    time.Duration
	// Description, when set, is the exact description the invoice must carry, in clear or as
	// its hash (a stream part's invoice names the job and its part: nips/stream.md); "" checks
	// only that the description binds JobID.
	Description string
}

// Invoice is a decoded invoice.
type Invoice = decodepay.Bolt11

// Network names the network of a BOLT11 currency prefix ("bcrt" → "regtest").
func Network(currency string) string {
	switch strings.ToLower(currency) {
	case "bc":
		return "mainnet"
	case "tb":
		return "testnet"
	case "tbs":
		return "signet"
	case "bcrt":
		return "regtest"
	case "sb":
		return "simnet"
	}
	return currency
}

// Check decodes bolt11 and refuses it unless it has an amount, the amount is within the bid
// (no bid is a cap of 0: nothing is paid without one) and equal to the quoted amount, it is on the wallet's network, it will not expire within
// MinLife, and its description (or description hash) binds the job.
func Check(bolt11 string, e Expect) (Invoice, error) {
	inv, err := decodepay.Decodepay(strings.TrimSpace(bolt11))
	if err != nil {
		return Invoice{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	now := e.Now
	if now.IsZero() {
		now = time.Now()
	}
	switch net := Network(inv.Currency); {
	case inv.MSatoshi <= 0:
		return inv, ErrNoAmount
	case e.BidMsat <= 0:
		return inv, fmt.Errorf("%w: %d msat asked and no bid was given (no bid: free workers only)", ErrOverBid, inv.MSatoshi)
	case inv.MSatoshi > e.BidMsat:
		return inv, fmt.Errorf("%w: %d msat asked, %d msat bid", ErrOverBid, inv.MSatoshi, e.BidMsat)
	case e.QuotedMsat > 0 && inv.MSatoshi != e.QuotedMsat:
		return inv, fmt.Errorf("%w: invoice says %d msat, the quote %d msat", ErrAmountMismatch, inv.MSatoshi, e.QuotedMsat)
	case e.Network != "" && net != e.Network:
		return inv, fmt.Errorf("%w: invoice is for %s, the wallet is on %s", ErrNetwork, net, e.Network)
	case int64(inv.CreatedAt+inv.Expiry) <= now.Add(e.MinLife).Unix():
		return inv, fmt.Errorf("%w at %s", ErrExpired, time.Unix(int64(inv.CreatedAt+inv.Expiry), 0).UTC().Format(time.RFC3339))
	case e.Description == "" && !binds(inv, e.JobID):
		return inv, fmt.Errorf("%w %s: description %q", ErrNotBound, e.JobID, inv.Description)
	case e.Description != "" && !describes(inv, e.Description):
		return inv, fmt.Errorf("%w %s: description %q, want %q", ErrNotBound, e.JobID, inv.Description, e.Description)
	}
	return inv, nil
}

func binds(inv Invoice, jobID string) bool {
	if jobID == "" {
		return false
	}
	if inv.Description != "" {
		return strings.Contains(inv.Description, jobID)
	}
	sum := sha256.Sum256([]byte(Description(jobID)))
	return inv.DescriptionHash == hex.EncodeToString(sum[:])
}

// Decode decodes bolt11 without checking it against anything (ErrMalformed when it does not
// decode): for a verifier that reads an invoice already paid, such as a review's proof.
func Decode(bolt11 string) (Invoice, error) {
	inv, err := decodepay.Decodepay(strings.TrimSpace(bolt11))
	if err != nil {
		return Invoice{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return inv, nil
}

// Describes reports whether bolt11 decodes and carries exactly description, in clear or as
// its hash (a stream part's invoice names its part: nips/stream.md).
func Describes(bolt11, description string) bool {
	inv, err := decodepay.Decodepay(strings.TrimSpace(bolt11))
	return err == nil && describes(inv, description)
}

// describes reports whether inv carries exactly description, in clear or as its hash.
func describes(inv Invoice, description string) bool {
	if inv.Description != "" {
		return inv.Description == description
	}
	sum := sha256.Sum256([]byte(description))
	return inv.DescriptionHash == hex.EncodeToString(sum[:])
}
