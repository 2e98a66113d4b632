package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/keyfile"
)

// review publishes a paid review of the worker a job was paid to (nips/review.md).
func review(ctx context.Context, std stdio, c command, args []string) error {
	fs := newFlagSet(c)
	o := newOptions()
	o.relayFlag(fs)
	o.keyFlag(fs)
	o.dataFlag(fs)
	o.outputFlags(fs, 20*time.Second, "give up on relays that have not answered after this long")
	var rating int
	var text string
	fs.IntVar(&rating, "rating", 0, "the rating, 1 (bad) to 5 (excellent); required")
	fs.StringVar(&text, "text", "", "the review text, at most 2000 characters")
	positional, err := parse(fs, c, args, std)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return errors.New("review: give one job id (see client review --help)")
	}
	if rating < 1 || rating > 5 {
		return fmt.Errorf("review: --rating %d: give a rating from 1 to 5", rating)
	}
	job, err := parseEventID(positional[0])
	if err != nil {
		return fmt.Errorf("review: %w", err)
	}
	if err := o.checkRelays(); err != nil {
		return fmt.Errorf("review: %w", err)
	}
	// the review must be signed by the key that posted (and paid for) the job: never a new one
	if _, err := os.Stat(o.keyFile); err != nil {
		return fmt.Errorf("review: key file %s: %w (sign with the key that posted the job)", o.keyFile, err)
	}
	k, _, err := keyfile.LoadOrCreate(o.keyFile)
	if err != nil {
		return err
	}
	cl, err := client.Open(ctx, client.Config{Relays: o.relays, Data: o.data, SecretKey: k.Secret()}, o.logger(std.errOut))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	out, err := cl.Review(ctx, job, rating, text)
	if o.json && out.Event.ID != "" {
		if werr := writeJSON(std.out, out); werr != nil {
			return werr
		}
		return err
	}
	for _, a := range out.Answers {
		if a.Accepted {
			fmt.Fprintf(std.out, "accepted  %s\n", a.Relay)
		} else {
			fmt.Fprintf(std.out, "refused   %s: %s\n", a.Relay, a.Reason)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(std.out, "review    %s: %d/5 for %s, job %s\n", out.Event.ID, rating, npub(out.Review.Worker), job)
	return nil
}
