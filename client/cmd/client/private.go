package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// privateSpec is what post's --private and --worker say.
type privateSpec struct {
	on     bool
	worker string // hex pubkey from --worker; "" to pick one
}

func (p *privateSpec) flags(fs *flag.FlagSet) {
	fs.BoolVar(&p.on, "private", false, "encrypt the inputs and params to one worker (NIP-90 encrypted request, NIP-44 v2): "+
		"relays see only the kind, bid, relays and worker; feedback and result come back encrypted to you. "+
		"The worker is --worker, else a live one for the kind from its announcement (escrow first, then the cheapest within the bid). "+
		"A local file or data: input is private end to end (all inputs together up to 64 KiB); "+
		"a URL input stays a URL the worker fetches: hidden from relays, but its host sees the worker fetch it")
	fs.Func("worker", "with --private: the worker to encrypt to (npub or hex pubkey)", func(s string) (err error) {
		p.worker, err = parsePubKey(s)
		return err
	})
}

// check refuses flag combinations before anything is touched.
func (p *privateSpec) check(spec *jobSpec) error {
	switch {
	case p.worker != "" && !p.on:
		return errors.New("--worker names the worker of a --private job; to ask a worker in the clear, use --to")
	case p.on && len(spec.to) > 0:
		return errors.New("--private is encrypted to one worker: name it with --worker, not --to")
	}
	return nil
}

// pickTimeout bounds the wait for the relays' announcements when --private picks a worker.
const pickTimeout = 20 * time.Second

// apply makes req private: encrypted to --worker, or to the worker the client picks.
func (p *privateSpec) apply(ctx context.Context, cl *client.Client, req *nip90.JobRequest) error {
	if !p.on {
		return nil
	}
	worker := p.worker
	if worker == "" {
		qctx, cancel := context.WithTimeout(ctx, pickTimeout)
		defer cancel()
		var err error
		if worker, err = cl.PrivateWorker(qctx, req.Kind, req.BidMsat); err != nil {
			return fmt.Errorf("post --private: %w (name one with --worker)", err)
		}
	}
	req.Providers, req.Encrypted = []string{worker}, true
	return nil
}

// privateTooLarge explains a private request that cannot be encrypted: most often inputs
// over NIP-44's 64 KiB.
func privateTooLarge(err error) error {
	if errors.Is(err, nip90.ErrBadPrivateTags) {
		return fmt.Errorf("post: %w: host the file and pass its URL instead (the worker fetches it; the URL stays encrypted)", err)
	}
	return fmt.Errorf("post: %w", err)
}
