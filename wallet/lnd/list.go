package lnd

import (
	"context"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// ListTransactions lists the node's invoices and payments, newest first by creation time,
// filtered by p (from and until are inclusive creation times; without unpaid, only settled
// ones), then offset and limited (limit 0: all). It reads lnd page by page and stops once it
// has offset+limit transactions. lnd has one history for all accounts.
//
// Errors: OTHER for an unknown type.
func (b *Backend) ListTransactions(ctx context.Context, account string, p nip47.ListTransactionsParams) ([]nip47.Transaction, error) {
	q := listQuery{incomplete: p.Unpaid, from: p.From, until: p.Until}
	var sources []*source
	switch p.Type {
	case "", nip47.TypeIncoming, nip47.TypeOutgoing:
	default:
		return nil, nip47.Errorf(nip47.CodeOther, "unknown transaction type %q", p.Type)
	}
	now := b.now()
	if p.Type != nip47.TypeOutgoing {
		sources = append(sources, &source{fetch: func(ctx context.Context, offset int64) ([]nip47.Transaction, int64, error) {
			q := q
			q.offset = offset
			page, next, err := b.listInvoices(ctx, q)
			txs := make([]nip47.Transaction, len(page))
			for i, in := range page {
				txs[i] = in.incoming(now)
			}
			return txs, next, err
		}})
	}
	if p.Type != nip47.TypeIncoming {
		sources = append(sources, &source{fetch: func(ctx context.Context, offset int64) ([]nip47.Transaction, int64, error) {
			q := q
			q.offset = offset
			page, next, err := b.listPayments(ctx, q)
			txs := make([]nip47.Transaction, len(page))
			for i, pay := range page {
				txs[i] = pay.outgoing(nil)
			}
			return txs, next, err
		}})
	}

	var out []nip47.Transaction
	skip := p.Offset
	for p.Limit <= 0 || int64(len(out)) < p.Limit {
		// Take the newest head among the sources.
		var pick *source
		for _, s := range sources {
			tx, err := s.peek(ctx)
			if err != nil {
				return nil, err
			}
			if tx != nil && (pick == nil || tx.CreatedAt > pick.buf[0].CreatedAt) {
				pick = s
			}
		}
		if pick == nil {
			break
		}
		tx := pick.pop()
		if !p.Unpaid && tx.State != nip47.StateSettled {
			continue
		}
		if (p.From > 0 && tx.CreatedAt < p.From) || (p.Until > 0 && tx.CreatedAt > p.Until) {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		out = append(out, tx)
	}

	// Payments carry no description; decode the invoices of the ones we return.
	for i := range out {
		if out[i].Type == nip47.TypeOutgoing {
			if pr := b.decodeQuietly(ctx, out[i].Invoice); pr != nil {
				out[i].Description, out[i].DescriptionHash = pr.Description, pr.DescriptionHash
				if pr.Expiry > 0 {
					out[i].ExpiresAt = int64(pr.Timestamp + pr.Expiry)
				}
			}
		}
	}
	return out, nil
}

// source pages through one of lnd's lists, newest first.
type source struct {
	fetch  func(ctx context.Context, offset int64) (txs []nip47.Transaction, next int64, err error)
	buf    []nip47.Transaction
	offset int64 // where the next page starts; 0 before the first
	done   bool
}

// peek returns the source's next transaction without taking it, or nil at the end.
func (s *source) peek(ctx context.Context) (*nip47.Transaction, error) {
	for len(s.buf) == 0 && !s.done {
		txs, next, err := s.fetch(ctx, s.offset)
		if err != nil {
			return nil, err
		}
		// Offsets only go down; an empty page, index 1 or a stuck offset is the end.
		s.done = len(txs) == 0 || next <= 1 || (s.offset != 0 && next >= s.offset)
		s.buf, s.offset = txs, next
	}
	if len(s.buf) == 0 {
		return nil, nil
	}
	return &s.buf[0], nil
}

func (s *source) pop() nip47.Transaction {
	tx := s.buf[0]
	s.buf = s.buf[1:]
	return tx
}
