package wallet

import (
	"context"
	"fmt"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet/ledger"
)

// Connect creates an NWC connection in cfg.Data and returns its URI, which holds the new
// client secret: the wallet keeps only the client's public key, the name and the budget.
// With cfg.FundSats it credits the connection's ledger account. It works whether or not
// `wallet serve` runs on the same folder.
//
// Errors include ErrNameTaken and ErrFundNeedsLedger.
func Connect(ctx context.Context, cfg ConnectConfig) (nip47.URI, error) {
	if err := cfg.Validate(); err != nil {
		return nip47.URI{}, err
	}
	st, err := openStore(ctx, cfg.Data)
	if err != nil {
		return nip47.URI{}, err
	}
	defer st.Close()
	key, err := st.walletKey(ctx)
	if err != nil {
		return nip47.URI{}, err
	}
	secret := nip47.NewSecret()
	client := secret.PubKey()
	if err := st.addConnection(ctx, client, cfg.Name, cfg.BudgetSats*1000); err != nil {
		return nip47.URI{}, err
	}
	if cfg.FundSats > 0 {
		if err := fund(ctx, cfg.Data, cfg.Name, cfg.FundSats*1000); err != nil {
			// a connection without the money asked for is not what the caller wanted
			if rerr := st.removeConnection(context.WithoutCancel(ctx), client); rerr != nil {
				return nip47.URI{}, fmt.Errorf("%w (and %w)", err, rerr)
			}
			return nip47.URI{}, err
		}
	}
	return nip47.URI{WalletPubKey: key.PubKey(), Relays: cfg.Relays, Secret: secret}, nil
}

func fund(ctx context.Context, data, account string, msat int64) error {
	l, err := ledger.Open(ctx, data)
	if err != nil {
		return err
	}
	defer l.Close()
	return l.Fund(ctx, account, msat)
}
