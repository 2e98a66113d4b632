package nip47

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// ErrNotInfo is returned (wrapped) by ParseInfo for an event that is not a kind 13194.
var ErrNotInfo = errors.New("nip47: not an info event")

// Info is what a wallet's kind 13194 event advertises.
type Info struct {
	Methods       []string // the content's capabilities, e.g. "pay_invoice get_balance notifications"
	Encryptions   []string // never empty: an event without an "encryption" tag means nip04 only
	Notifications []string // notification types, e.g. "payment_received"
}

// ParseInfo reads a wallet's info event. It checks the kind only; the caller checks the
// author and signature. The content holds the space-separated capabilities; the tags
// ["encryption", "nip44_v2 nip04"] and ["notifications", "payment_received payment_sent"]
// the rest. An absent or empty "encryption" tag means nip04 only, as the spec says.
// Errors wrap ErrNotInfo.
func ParseInfo(evt *nostr.Event) (Info, error) {
	if evt == nil {
		return Info{}, fmt.Errorf("%w: no event", ErrNotInfo)
	}
	if evt.Kind != KindInfo {
		return Info{}, fmt.Errorf("%w: kind %d", ErrNotInfo, evt.Kind)
	}
	info := Info{Methods: fields(evt.Content)}
	if t := evt.Tags.Find("encryption"); t != nil {
		info.Encryptions = fields(t[1])
	}
	if len(info.Encryptions) == 0 {
		info.Encryptions = []string{EncryptionNIP04}
	}
	if t := evt.Tags.Find("notifications"); t != nil {
		info.Notifications = fields(t[1])
	}
	return info, nil
}

// Event returns the unsigned info event advertising i (without created_at).
func (i Info) Event() nostr.Event {
	evt := nostr.Event{Kind: KindInfo, Content: strings.Join(i.Methods, " "), Tags: nostr.Tags{}}
	if len(i.Encryptions) > 0 {
		evt.Tags = append(evt.Tags, nostr.Tag{"encryption", strings.Join(i.Encryptions, " ")})
	}
	if len(i.Notifications) > 0 {
		evt.Tags = append(evt.Tags, nostr.Tag{"notifications", strings.Join(i.Notifications, " ")})
	}
	return evt
}

// Supports reports whether the wallet lists capability m (a method or "notifications").
func (i Info) Supports(m string) bool { return slices.Contains(i.Methods, m) }

// HoldInvoiceMethods are the methods a wallet must list to take part in escrow: it makes hold
// invoices, settles and cancels them. (A hold invoice's payer needs only pay_invoice.)
var HoldInvoiceMethods = []string{MethodMakeHoldInvoice, MethodSettleHoldInvoice, MethodCancelHoldInvoice}

// SupportsHoldInvoices reports whether the wallet lists every one of HoldInvoiceMethods: a
// worker whose wallet does not can quote only ordinary invoices. Whether it also sends
// hold_invoice_accepted is in Notifications; without it, poll lookup_invoice for state
// "accepted".
func (i Info) SupportsHoldInvoices() bool {
	for _, m := range HoldInvoiceMethods {
		if !i.Supports(m) {
			return false
		}
	}
	return true
}

// encryption is the scheme a client should use with this wallet: NIP-44 v2 when offered,
// else NIP-04, else "" (none we speak).
func (i Info) encryption() string {
	for _, e := range []string{EncryptionNIP44, EncryptionNIP04} {
		if slices.Contains(i.Encryptions, e) {
			return e
		}
	}
	return ""
}

// fields splits a space-separated list; none reads as nil.
func fields(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	return f
}
