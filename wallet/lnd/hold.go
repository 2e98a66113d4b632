package lnd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
)

// Hold invoices go through lnd's invoicesrpc (REST /v2/invoices/...): the macaroon needs
// invoices:write (admin.macaroon and invoice.macaroon have it).

// settleMarginBlocks is how many blocks before the earliest held HTLC expires a hold invoice
// must be settled: settle_deadline = lowest HTLC expiry_height - settleMarginBlocks. lnd itself
// cancels a held HTLC 12 blocks before its expiry (--invoices.holdexpirydelta, default 12) so
// that its channel is not force-closed; 6 more blocks (about an hour on mainnet) leave time for
// the settle to reach lnd before that.
const settleMarginBlocks = 12 + 6

// minHoldCLTVDelta is the smallest min_cltv_expiry_delta a hold invoice may ask for: the
// HTLC must outlive the settle margin by a few blocks, or its settle deadline would have
// passed on arrival.
const minHoldCLTVDelta = settleMarginBlocks + 6

// maxHoldWatchers bounds the open or accepted hold invoices this process follows with one
// stream each (for hold_invoice_accepted). MakeHoldInvoice refuses more.
const maxHoldWatchers = 1000

// maxPendingPages bounds how many pages of pending invoices a resume reads.
const maxPendingPages = 20

// MakeHoldInvoice adds a hold invoice for p.PaymentHash to lnd (AddHoldInvoice), remembers
// (on disk, when Config.HoldOwnersPath is set) that account made it, and follows it so that
// Subscribe delivers hold_invoice_accepted when a payment arrives.
//
// Errors: OTHER for a bad amount, hash, description hash or CLTV delta, for a payment hash
// lnd already has an invoice for, and when maxHoldWatchers hold invoices are open already.
func (b *Backend) MakeHoldInvoice(ctx context.Context, account string, p nip47.MakeHoldInvoiceParams) (nip47.Transaction, error) {
	hash, err := hex.DecodeString(p.PaymentHash)
	if err != nil || len(hash) != 32 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "payment_hash must be 32 bytes of hex")
	}
	if p.Amount <= 0 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "amount %d msat: a hold invoice needs a positive amount", p.Amount)
	}
	if p.MinCLTVExpiryDelta != 0 && p.MinCLTVExpiryDelta < minHoldCLTVDelta {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "min_cltv_expiry_delta %d is below %d blocks", p.MinCLTVExpiryDelta, minHoldCLTVDelta)
	}
	req := holdInvoiceRequest{
		Hash:       hash,
		ValueMsat:  p.Amount,
		Memo:       p.Description,
		Expiry:     p.Expiry,
		CLTVExpiry: p.MinCLTVExpiryDelta,
	}
	if p.DescriptionHash != "" {
		h, err := hex.DecodeString(p.DescriptionHash)
		if err != nil || len(h) != 32 {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "description_hash must be 32 bytes of hex")
		}
		req.DescriptionHash = h
	}
	if req.Expiry <= 0 {
		req.Expiry = int64(wallet.DefaultInvoiceExpiry / time.Second)
	}
	if req.DescriptionHash == nil && len(req.Memo) > maxDescription {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "description is longer than %d bytes: send description_hash instead", maxDescription)
	}
	hexHash := hex.EncodeToString(hash)
	switch err := b.reserveWatcher(hexHash); {
	case errors.Is(err, errWatched):
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "an invoice with payment hash %s exists already", hexHash)
	case errors.Is(err, errTooManyHeld):
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "too many open hold invoices (%d): settle or cancel some first", maxHoldWatchers)
	case err != nil:
		return nip47.Transaction{}, err
	}
	var added holdInvoiceReply
	if err := b.c.call(ctx, http.MethodPost, "/v2/invoices/hodl", req, &added); err != nil {
		b.releaseWatcher(hexHash)
		if isCode(err, codeAlreadyExists) || invoiceExists(err) {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "an invoice with payment hash %s exists already", hexHash)
		}
		if msg, ok := invoiceRejected(err); ok {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "%s", msg)
		}
		return nip47.Transaction{}, fmt.Errorf("add hold invoice: %w", err)
	}
	if err := b.rememberHold(hexHash, account); err != nil {
		// Nobody could settle it: take it back.
		b.releaseWatcher(hexHash)
		if cerr := b.cancelInvoice(context.WithoutCancel(ctx), hash); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nip47.Transaction{}, fmt.Errorf("hold invoice %s: %w", hexHash, err)
	}
	b.startWatcher(hexHash)

	inv, err := b.lookupInvoice(ctx, hexHash)
	if err != nil {
		return nip47.Transaction{}, fmt.Errorf("look up new hold invoice %s: %w", hexHash, err)
	}
	return inv.incoming(b.now()), nil
}

// invoiceExists reports whether lnd refused an invoice because its hash is taken; lnd says so
// in a plain error.
func invoiceExists(err error) bool {
	var e *apiError
	return errors.As(err, &e) && bytes.Contains([]byte(e.Message), []byte("invoice with payment hash already exists"))
}

// SettleHoldInvoice settles account's accepted hold invoice for sha256(preimage).
//
// Errors: OTHER for a malformed preimage or an invoice that is not accepted (open, cancelled);
// NOT_FOUND when account did not make a hold invoice for that hash (through this backend).
func (b *Backend) SettleHoldInvoice(ctx context.Context, account, preimage string) error {
	pre, err := hex.DecodeString(preimage)
	if err != nil || len(pre) != 32 {
		return nip47.Errorf(nip47.CodeOther, "preimage must be 32 bytes of hex")
	}
	sum := sha256.Sum256(pre)
	hash := hex.EncodeToString(sum[:])
	inv, err := b.ownHold(ctx, account, hash)
	if err != nil {
		return err
	}
	switch inv.State {
	case "SETTLED":
		return nil
	case "ACCEPTED":
	default:
		return nip47.Errorf(nip47.CodeOther, "hold invoice %s is %s, not accepted", hash, stateWord(inv.State))
	}
	err = b.c.call(ctx, http.MethodPost, "/v2/invoices/settle", map[string][]byte{"preimage": pre}, &struct{}{})
	if err == nil {
		return nil
	}
	// Raced with another settle, a cancel or lnd's own expiry: report the state it is in now.
	if again, lerr := b.lookupInvoice(ctx, hash); lerr == nil {
		switch again.State {
		case "SETTLED":
			return nil
		case "CANCELED", "OPEN":
			return nip47.Errorf(nip47.CodeOther, "hold invoice %s is %s, not accepted", hash, stateWord(again.State))
		}
	}
	return fmt.Errorf("settle hold invoice %s: %w", hash, err)
}

// CancelHoldInvoice cancels account's open or accepted hold invoice for paymentHash: a held
// payment goes back to its payer at once.
//
// Errors: OTHER for a malformed hash or a settled invoice; NOT_FOUND when account did not make
// a hold invoice for that hash (through this backend).
func (b *Backend) CancelHoldInvoice(ctx context.Context, account, paymentHash string) error {
	raw, err := hex.DecodeString(paymentHash)
	if err != nil || len(raw) != 32 {
		return nip47.Errorf(nip47.CodeOther, "payment_hash must be 32 bytes of hex")
	}
	hash := hex.EncodeToString(raw) // lower case, as the owners are keyed
	inv, err := b.ownHold(ctx, account, hash)
	if err != nil {
		return err
	}
	switch inv.State {
	case "CANCELED":
		return nil
	case "SETTLED":
		return nip47.Errorf(nip47.CodeOther, "hold invoice %s is settled already", hash)
	}
	err = b.cancelInvoice(ctx, raw)
	if err == nil {
		return nil
	}
	if again, lerr := b.lookupInvoice(ctx, hash); lerr == nil {
		switch again.State {
		case "CANCELED":
			return nil
		case "SETTLED":
			return nip47.Errorf(nip47.CodeOther, "hold invoice %s is settled already", hash)
		}
	}
	return fmt.Errorf("cancel hold invoice %s: %w", hash, err)
}

func (b *Backend) cancelInvoice(ctx context.Context, hash []byte) error {
	return b.c.call(ctx, http.MethodPost, "/v2/invoices/cancel", map[string][]byte{"payment_hash": hash}, &struct{}{})
}

// ownHold returns the hold invoice for hash if account made it.
//
// Errors: NOT_FOUND when it did not (or lnd has no such invoice).
func (b *Backend) ownHold(ctx context.Context, account, hash string) (invoice, error) {
	b.mu.Lock()
	owner, ok := b.holds[hash]
	b.mu.Unlock()
	if !ok || owner != account {
		return invoice{}, nip47.Errorf(nip47.CodeNotFound, "no hold invoice with hash %s", hash)
	}
	inv, err := b.lookupInvoice(ctx, hash)
	if invoiceNotFound(err) {
		return invoice{}, nip47.Errorf(nip47.CodeNotFound, "no hold invoice with hash %s", hash)
	}
	if err != nil {
		return invoice{}, fmt.Errorf("look up hold invoice %s: %w", hash, err)
	}
	return inv, nil
}

func stateWord(s string) string {
	switch s {
	case "OPEN":
		return "still open (not paid)"
	case "CANCELED":
		return "cancelled"
	default:
		return s
	}
}

// holdOwner is one line of the owners file.
type holdOwner struct {
	Hash    string `json:"hash"`
	Account string `json:"account"`
}

// rememberHold records that account made the hold invoice for hash: in memory, and appended
// (and synced) to the owners file, so that a restarted wallet can still settle it.
func (b *Backend) rememberHold(hash, account string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ownersPath != "" {
		line, err := json.Marshal(holdOwner{Hash: hash, Account: account})
		if err != nil {
			return err
		}
		f, err := os.OpenFile(b.ownersPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("hold invoice owners: %w", err)
		}
		_, err = f.Write(append(line, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("hold invoice owners: write %s: %w", b.ownersPath, err)
		}
	}
	b.holds[hash] = account
	if account != "" {
		b.accounts[hash] = account
	}
	return nil
}

// loadHoldOwners reads the owners file (later lines win; a torn last line is skipped).
func loadHoldOwners(path string) (map[string]string, error) {
	owners := make(map[string]string)
	if path == "" {
		return owners, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return owners, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hold invoice owners: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var o holdOwner
		if json.Unmarshal(sc.Bytes(), &o) != nil || len(o.Hash) != 64 {
			continue
		}
		if _, err := hex.DecodeString(o.Hash); err != nil {
			continue
		}
		owners[o.Hash] = o.Account
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hold invoice owners: read %s: %w", path, err)
	}
	return owners, nil
}

// compactHoldOwners rewrites the owners file with only the hold invoices still pending in lnd,
// (those in b.holds), so that it does not grow with every job. The old file is replaced
// atomically.
func (b *Backend) compactHoldOwners() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ownersPath == "" {
		return nil
	}
	var buf bytes.Buffer
	for h, a := range b.holds {
		line, err := json.Marshal(holdOwner{Hash: h, Account: a})
		if err != nil {
			return err
		}
		buf.Write(append(line, '\n'))
	}
	tmp, err := os.CreateTemp(filepath.Dir(b.ownersPath), ".hold-owners-*")
	if err != nil {
		return fmt.Errorf("hold invoice owners: %w", err)
	}
	_, err = tmp.Write(buf.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), b.ownersPath)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hold invoice owners: compact %s: %w", b.ownersPath, err)
	}
	return nil
}

// pendingHolds lists the hold invoices lnd has open or accepted, oldest first, up to
// maxPendingPages pages.
func (b *Backend) pendingHolds(ctx context.Context) ([]invoice, error) {
	var holds []invoice
	offset := int64(0)
	for range maxPendingPages {
		v := url.Values{}
		v.Set("pending_only", "true")
		v.Set("num_max_invoices", strconv.Itoa(paymentsPage))
		if offset > 0 {
			v.Set("index_offset", strconv.FormatInt(offset, 10))
		}
		var r listInvoicesReply
		if err := b.c.call(ctx, http.MethodGet, "/v1/invoices?"+v.Encode(), nil, &r); err != nil {
			return nil, fmt.Errorf("list pending invoices: %w", err)
		}
		for _, in := range r.Invoices {
			if in.hold() && (in.State == "OPEN" || in.State == "ACCEPTED") {
				holds = append(holds, in)
			}
		}
		next := int64(r.LastIndexOffset)
		if len(r.Invoices) < paymentsPage || next <= offset {
			return holds, nil
		}
		offset = next
	}
	return holds, nil
}

// resumeHolds follows the hold invoices this backend knows the owner of that lnd still has
// open or accepted. Subscribe calls it, so that an invoice accepted while the wallet was down
// is notified to the new subscriber (possibly again: a consumer must take a repeat).
func (b *Backend) resumeHolds(ctx context.Context) error {
	holds, err := b.pendingHolds(ctx)
	if err != nil {
		return err
	}
	for _, in := range holds {
		h := hex.EncodeToString(in.RHash)
		b.mu.Lock()
		_, known := b.holds[h]
		b.mu.Unlock()
		if known && b.reserveWatcher(h) == nil {
			b.startWatcher(h)
		}
	}
	return nil
}

// loadHolds reads the owners file and keeps the owners of the hold invoices lnd still has
// open or accepted: the rest are done with, and the file is compacted to these. New calls
// it, before anything can make a hold invoice.
func (b *Backend) loadHolds(ctx context.Context) error {
	owners, err := loadHoldOwners(b.ownersPath)
	if err != nil {
		return err
	}
	if len(owners) == 0 {
		return nil
	}
	holds, err := b.pendingHolds(ctx)
	if err != nil {
		return err
	}
	pending := make(map[string]bool, len(holds))
	for _, in := range holds {
		pending[hex.EncodeToString(in.RHash)] = true
	}
	b.mu.Lock()
	for h, a := range owners {
		if pending[h] {
			b.holds[h] = a
			if a != "" {
				b.accounts[h] = a
			}
		}
	}
	b.mu.Unlock()
	return b.compactHoldOwners()
}

// Why reserveWatcher refuses.
var (
	errWatched     = errors.New("watched already")
	errTooManyHeld = errors.New("too many hold invoices open")
)

// reserveWatcher claims a watcher slot for hash.
//
// Errors: errWatched when hash is watched already, errTooManyHeld when the slots are all
// taken, ErrClosed after Close.
func (b *Backend) reserveWatcher(hash string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if _, ok := b.watching[hash]; ok {
		return errWatched
	}
	if len(b.watching) >= maxHoldWatchers {
		return errTooManyHeld
	}
	b.watching[hash] = struct{}{}
	return nil
}

func (b *Backend) releaseWatcher(hash string) {
	b.mu.Lock()
	delete(b.watching, hash)
	b.mu.Unlock()
}

// startWatcher starts the reserved watcher for hash.
func (b *Backend) startWatcher(hash string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		delete(b.watching, hash)
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer b.releaseWatcher(hash)
		b.watchHold(b.watchCtx, hash)
	}()
}

// watchHold follows one hold invoice with lnd's SubscribeSingleInvoice until it is settled or
// cancelled (lnd cancels open ones at expiry and accepted ones near their HTLC's expiry, so
// this ends), or the backend closes. It notifies hold_invoice_accepted once. lnd's
// SubscribeInvoices stream, which Subscribe follows, reports only added and settled invoices,
// not accepted ones; this stream reports every state change, starting with the current state.
func (b *Backend) watchHold(ctx context.Context, hash string) {
	raw, _ := hex.DecodeString(hash)
	path := "/v2/invoices/subscribe/" + base64.URLEncoding.EncodeToString(raw)
	notified := false
	reconnect(ctx, func() (bool, bool) { return b.followHold(ctx, path, &notified) })
}

// followHold reads one connection of a single-invoice stream. done: the invoice is settled,
// cancelled or gone.
func (b *Backend) followHold(ctx context.Context, path string, notified *bool) (done, gotEvent bool) {
	st, err := b.c.openStream(ctx, http.MethodGet, path, nil)
	if invoiceNotFound(err) {
		return true, false
	}
	if err != nil {
		return false, false
	}
	defer st.close()
	for {
		var in invoice
		if err := st.next(&in); err != nil {
			return invoiceNotFound(err), gotEvent
		}
		gotEvent = true
		switch in.State {
		case "SETTLED", "CANCELED":
			return true, true
		case "ACCEPTED":
			if *notified {
				continue
			}
			*notified = true
			hash := hex.EncodeToString(in.RHash)
			b.mu.Lock()
			account := b.holds[hash]
			b.mu.Unlock()
			b.notify(wallet.BackendEvent{
				Account: account,
				Notification: nip47.Notification{
					Type:        nip47.NotificationHoldInvoiceAccepted,
					Transaction: in.incoming(b.now()),
				},
			})
		}
	}
}
