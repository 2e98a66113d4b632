package wallet

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/logging"
)

// Backend names, for Config.Backend and ConnectConfig.Backend.
const (
	BackendLedger = "ledger" // wallet/ledger: play money, for demos and tests only
	BackendLND    = "lnd"    // wallet/lnd: a real lnd node over its REST API
)

// Config is everything `wallet serve` needs.
type Config struct {
	Relays      []string // ws:// or wss:// URLs the service listens on
	Data        string   // folder of wallet.sqlite (and ledger.sqlite for the ledger)
	Backend     string   // BackendLedger or BackendLND
	LNDRest     string   // lnd's REST URL, e.g. https://127.0.0.1:8080
	LNDMacaroon string   // path of a macaroon file (admin, or one that may pay and make invoices)
	LNDTLSCert  string   // path of lnd's tls.cert
	LogLevel    logging.Level

	// OpenLND opens the lnd backend for --backend lnd. wallet/lnd imports this package (for
	// Backend and BackendEvent), so this package cannot call lnd.New: the command sets it.
	// nil refuses --backend lnd.
	OpenLND func(ctx context.Context, cfg Config) (Backend, error)
	// OnReady, optional, is called once the service answers requests (tests wait for it).
	OnReady func()

	inFlightEvery time.Duration // tests: settleInFlightEvery's period; 0 = inFlightEvery
}

// DefaultConfig returns the defaults: the demo ledger in ./wallet-data.
func DefaultConfig() Config {
	return Config{
		Data:     "./wallet-data",
		Backend:  BackendLedger,
		LNDRest:  "https://127.0.0.1:8080",
		LogLevel: logging.Level{Level: zerolog.InfoLevel},
	}
}

// RegisterFlags binds the settings to fs with DefaultConfig's defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	*c = DefaultConfig()
	relaysFlag(fs, &c.Relays, "relay URL to serve NWC on; repeat the flag or separate with commas")
	fs.StringVar(&c.Data, "data", c.Data, "folder of the wallet's SQLite state (and the ledger's)")
	fs.StringVar(&c.Backend, "backend", c.Backend, "where the money is: ledger (demo, not real money) or lnd")
	fs.StringVar(&c.LNDRest, "lnd-rest", c.LNDRest, "lnd REST URL (with --backend lnd)")
	fs.StringVar(&c.LNDMacaroon, "lnd-macaroon", c.LNDMacaroon, "lnd macaroon file (with --backend lnd)")
	fs.StringVar(&c.LNDTLSCert, "lnd-tlscert", c.LNDTLSCert, "lnd TLS certificate file (with --backend lnd)")
	fs.Var(&c.LogLevel, "log-level", "log level: debug, info, warn, error")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if err := validRelays(c.Relays); err != nil {
		return fmt.Errorf("wallet config: %w", err)
	}
	switch {
	case c.Data == "":
		return errors.New("wallet config: --data is empty")
	case c.Backend != BackendLedger && c.Backend != BackendLND:
		return fmt.Errorf("wallet config: --backend %q is neither %s nor %s", c.Backend, BackendLedger, BackendLND)
	case c.Backend == BackendLND && (c.LNDRest == "" || c.LNDMacaroon == ""):
		return errors.New("wallet config: --backend lnd needs --lnd-rest and --lnd-macaroon")
	case c.Backend == BackendLND && c.OpenLND == nil:
		return errors.New("wallet config: --backend lnd needs Config.OpenLND (cmd/wallet sets it to open wallet/lnd)")
	}
	return nil
}

// ConnectConfig describes a new NWC connection, for `wallet connect`.
type ConnectConfig struct {
	Data       string   // the serving wallet's --data
	Relays     []string // written into the URI: the relays the wallet serves on
	Name       string   // unique; also the connection's account in the backend
	BudgetSats int64    // most the connection may pay in total; 0 = no limit
	FundSats   int64    // ledger only: credit the new account with this much play money
	Backend    string   // the serving wallet's --backend; "" = ledger
}

// maxSats is every bitcoin there will ever be, in sats: budgets and funding above it are typos.
const maxSats = 21_000_000 * 100_000_000

// RegisterFlags binds the settings to fs.
func (c *ConnectConfig) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultConfig()
	*c = ConnectConfig{Data: d.Data, Backend: d.Backend}
	relaysFlag(fs, &c.Relays, "relay URL the wallet serves on, written into the URI; repeat the flag or separate with commas")
	fs.StringVar(&c.Data, "data", c.Data, "the serving wallet's --data folder")
	fs.StringVar(&c.Name, "name", c.Name, "unique connection name (its account in the backend)")
	fs.Int64Var(&c.BudgetSats, "budget", c.BudgetSats, "most the connection may pay in total, in sats (0: no limit)")
	fs.Int64Var(&c.FundSats, "fund", c.FundSats, "ledger only: credit the connection's account with this many sats of play money")
	fs.StringVar(&c.Backend, "backend", c.Backend, "the serving wallet's --backend: ledger or lnd")
}

// Validate reports the first setting that cannot work. Funding anything but the ledger is
// ErrFundNeedsLedger.
func (c *ConnectConfig) Validate() error {
	if err := validRelays(c.Relays); err != nil {
		return fmt.Errorf("wallet connect: %w", err)
	}
	switch {
	case c.Data == "":
		return errors.New("wallet connect: --data is empty")
	case strings.TrimSpace(c.Name) == "" || len(c.Name) > 64:
		return errors.New("wallet connect: --name must be 1 to 64 characters")
	case c.BudgetSats < 0 || c.BudgetSats > maxSats:
		return fmt.Errorf("wallet connect: --budget must be within 0..%d sats", int64(maxSats))
	case c.FundSats < 0 || c.FundSats > maxSats:
		return fmt.Errorf("wallet connect: --fund must be within 0..%d sats", int64(maxSats))
	case c.Backend != "" && c.Backend != BackendLedger && c.Backend != BackendLND:
		return fmt.Errorf("wallet connect: --backend %q is neither %s nor %s", c.Backend, BackendLedger, BackendLND)
	case c.FundSats > 0 && c.Backend == BackendLND:
		return ErrFundNeedsLedger
	}
	return nil
}

func relaysFlag(fs *flag.FlagSet, relays *[]string, usage string) {
	fs.Func("relay", usage, func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				*relays = append(*relays, u)
			}
		}
		return nil
	})
}

func validRelays(relays []string) error {
	if len(relays) == 0 {
		return errors.New("give at least one --relay")
	}
	for _, r := range relays {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("relay %q is not a ws:// or wss:// URL", r)
		}
	}
	return nil
}
