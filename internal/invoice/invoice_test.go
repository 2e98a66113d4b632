package invoice

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/sparecycles/sparecycles/internal/invoice/invoicetest"
)

// mint signs a real BOLT11 invoice.
func mint(t testing.TB, net *chaincfg.Params, msat int64, desc string, hashDesc bool, created time.Time, expiry time.Duration) string {
	return invoicetest.Mint(t, invoicetest.Spec{Net: net, Msat: msat, Description: desc, HashOnly: hashDesc, Created: created, Expiry: expiry})
}

const job = "5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee0"

// exact expects the invoice's description to be d.
func exact(d string) func(Expect) Expect {
	return func(e Expect) Expect { e.Description = d; return e }
}

func TestCheck(t *testing.T) {
	now := time.Now()
	reg := &chaincfg.RegressionNetParams
	good := mint(t, reg, 21000, Description(job), false, now, time.Hour)
	want := Expect{JobID: job, BidMsat: 50000, QuotedMsat: 21000, Network: "regtest", Now: now}
	tests := []struct {
		name    string
		bolt11  string
		expect  func(Expect) Expect
		wantErr error
	}{
		{"good", good, nil, nil},
		{"uppercase", strings.ToUpper(good), nil, nil},
		{"description hash binds", mint(t, reg, 21000, Description(job), true, now, time.Hour), nil, nil},
		{"no bid given: free only", good, func(e Expect) Expect { e.BidMsat = 0; return e }, ErrOverBid},
		{"bid exactly the amount", good, func(e Expect) Expect { e.BidMsat = 21000; return e }, nil},
		{"garbage", "lnbcrt1garbage", nil, ErrMalformed},
		{"empty", "", nil, ErrMalformed},
		{"no amount", mint(t, reg, 0, Description(job), false, now, time.Hour), nil, ErrNoAmount},
		{"over bid", good, func(e Expect) Expect { e.BidMsat = 20999; return e }, ErrOverBid},
		{"not the quote", good, func(e Expect) Expect { e.QuotedMsat = 20000; return e }, ErrAmountMismatch},
		{"mainnet invoice, regtest wallet", mint(t, &chaincfg.MainNetParams, 21000, Description(job), false, now, time.Hour), nil, ErrNetwork},
		{"expired", mint(t, reg, 21000, Description(job), false, now.Add(-2*time.Hour), time.Hour), nil, ErrExpired},
		{"expires too soon", mint(t, reg, 21000, Description(job), false, now, time.Minute), func(e Expect) Expect { e.MinLife = 2 * time.Minute; return e }, ErrExpired},
		{"another job", mint(t, reg, 21000, Description(strings.Repeat("ab", 32)), false, now, time.Hour), nil, ErrNotBound},
		{"another job's hash", mint(t, reg, 21000, Description(strings.Repeat("ab", 32)), true, now, time.Hour), nil, ErrNotBound},
		{"exact description", mint(t, reg, 21000, Description(job)+" part 2/3", false, now, time.Hour), exact(Description(job) + " part 2/3"), nil},
		{"exact description's hash", mint(t, reg, 21000, Description(job)+" part 2/3", true, now, time.Hour), exact(Description(job) + " part 2/3"), nil},
		{"another part", mint(t, reg, 21000, Description(job)+" part 3/3", false, now, time.Hour), exact(Description(job) + " part 2/3"), ErrNotBound},
		{"another part's hash", mint(t, reg, 21000, Description(job)+" part 3/3", true, now, time.Hour), exact(Description(job) + " part 2/3"), ErrNotBound},
		{"the job, not the part", good, exact(Description(job) + " part 2/3"), ErrNotBound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := want
			if tc.expect != nil {
				e = tc.expect(e)
			}
			inv, err := Check(tc.bolt11, e)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (inv.MSatoshi != 21000 || len(inv.PaymentHash) != 64) {
				t.Fatalf("decoded %+v", inv)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	f.Add(mint(f, &chaincfg.RegressionNetParams, 21000, Description(job), false, time.Now(), time.Hour))
	f.Add("lnbc1")
	f.Add("lnbcrt10n1")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := Check(s, Expect{JobID: job, BidMsat: 50000, Network: "regtest"})
		if err != nil {
			return
		}
		if inv.MSatoshi <= 0 || inv.MSatoshi > 50000 || Network(inv.Currency) != "regtest" {
			t.Fatalf("accepted %+v", inv)
		}
	})
}
