package wallet

import (
	"context"
	"sync"

	"github.com/sparecycles/sparecycles/wallet/ledger"
)

// openBackend opens the backend cfg names.
func openBackend(ctx context.Context, cfg Config) (Backend, error) {
	if cfg.Backend == BackendLND { // Validate made sure OpenLND is set
		return cfg.OpenLND(ctx, cfg)
	}
	l, err := ledger.Open(ctx, cfg.Data)
	if err != nil {
		return nil, err
	}
	return &ledgerBackend{Ledger: l, stop: make(chan struct{})}, nil
}

// ledgerBackend is the ledger as a Backend, hold invoices included (the ledger's own). The
// ledger has its own event type because it cannot import this package, which opens it.
type ledgerBackend struct {
	*ledger.Ledger
	stop      chan struct{} // closed by Close: forwarders stop waiting for a reader
	closeOnce sync.Once
	wg        sync.WaitGroup // forwarders
}

var _ Backend = (*ledgerBackend)(nil)

// Subscribe relays the ledger's events until ctx ends or the backend closes.
func (b *ledgerBackend) Subscribe(ctx context.Context) (<-chan BackendEvent, error) {
	in, err := b.Ledger.Subscribe(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan BackendEvent, cap(in))
	b.wg.Go(func() { // in closes when ctx ends or the ledger closes
		defer close(out)
		for ev := range in {
			select {
			case out <- BackendEvent(ev):
			case <-ctx.Done():
			case <-b.stop:
			}
		}
	})
	return out, nil
}

// Close closes the ledger and waits for the forwarders.
func (b *ledgerBackend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.stop)
		err = b.Ledger.Close()
		b.wg.Wait()
	})
	return err
}
