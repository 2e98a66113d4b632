// Package invoicetest mints real, signed BOLT11 invoices for tests, from a throwaway node key.
package invoicetest

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"
)

// Spec describes the invoice to mint. Zero values: regtest, now, one hour, a plain description.
type Spec struct {
	Net         *chaincfg.Params
	Msat        int64 // 0: no amount
	Description string
	HashOnly    bool // put the description's sha256 in the invoice instead of the text
	Created     time.Time
	Expiry      time.Duration
	// Preimage, when set, makes the payment hash its sha256 (a test that pays nothing can
	// still hold the payment's proof); otherwise the hash is random.
	Preimage []byte
}

// Mint signs the invoice.
func Mint(t testing.TB, s Spec) string {
	t.Helper()
	if s.Net == nil {
		s.Net = &chaincfg.RegressionNetParams
	}
	if s.Created.IsZero() {
		s.Created = time.Now()
	}
	if s.Expiry == 0 {
		s.Expiry = time.Hour
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	var hash [32]byte
	rand.Read(hash[:])
	if s.Preimage != nil {
		hash = sha256.Sum256(s.Preimage)
	}
	opts := []func(*zpay32.Invoice){zpay32.Expiry(s.Expiry)}
	if s.Msat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(s.Msat)))
	}
	if s.HashOnly {
		opts = append(opts, zpay32.DescriptionHash(sha256.Sum256([]byte(s.Description))))
	} else {
		opts = append(opts, zpay32.Description(s.Description))
	}
	inv, err := zpay32.NewInvoice(s.Net, hash, s.Created, opts...)
	if err != nil {
		t.Fatal(err)
	}
	bolt11, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(key, msg, true), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return bolt11
}
