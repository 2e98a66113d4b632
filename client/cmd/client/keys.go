package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip47"
)

func keygen(ctx context.Context, std stdio, c command, args []string) error {
	fs := newFlagSet(c)
	o := newOptions()
	o.keyFlag(fs)
	positional, err := parse(fs, c, args, std)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("keygen: unexpected argument %q (the file goes in --key-file)", positional[0])
	}
	// LoadOrCreate creates the file exclusively: an existing key is read, never replaced
	k, created, err := keyfile.LoadOrCreate(o.keyFile)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(std.errOut, "created %s (mode 0600)\n", o.keyFile)
	} else {
		fmt.Fprintf(std.errOut, "%s exists; keeping it\n", o.keyFile)
	}
	fmt.Fprintf(std.out, "npub    %s\npubkey  %s\n", k.Npub(), k.PubKey)
	return nil
}

func balance(ctx context.Context, std stdio, c command, args []string) error {
	fs := newFlagSet(c)
	o := newOptions()
	o.walletFlags(fs)
	o.outputFlags(fs, 30*time.Second, "give up on the wallet after this long")
	positional, err := parse(fs, c, args, std)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("balance: unexpected argument %q", positional[0])
	}
	if o.nwc == "" {
		return fmt.Errorf("balance: %w: give --nwc-file FILE or set %s", client.ErrNoWallet, envflag.Name(envPrefix, "nwc"))
	}
	uri, err := nip47.ParseURI(o.nwc)
	if err != nil {
		return fmt.Errorf("balance: %s: %w", o.nwcName(), err)
	}
	pool := relayconn.NewPool(uri.Relays)
	defer pool.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	bal, err := nip47.NewClient(uri, pool).GetBalance(ctx)
	if errors.Is(err, nip47.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("balance: %w: %w", client.ErrWalletDown, err)
	}
	if err != nil {
		return fmt.Errorf("balance: %w", err)
	}
	if o.json {
		return writeJSON(std.out, struct {
			Sat  int64 `json:"balance_sat"` // whole sats, rounded down: balance_msat is exact
			Msat int64 `json:"balance_msat"`
		}{bal / 1000, bal})
	}
	fmt.Fprintln(std.out, sats(bal))
	return nil
}
