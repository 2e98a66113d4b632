package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/nips/stream"
)

func status(ctx context.Context, std stdio, c command, args []string) error {
	fs := newFlagSet(c)
	o := newOptions()
	o.relayFlag(fs)
	o.keyFlag(fs)
	o.dataFlag(fs)
	o.walletFlags(fs) // optional: finishes a payment left in progress (a locked escrow) and opens its sealed result
	o.outputFlags(fs, 20*time.Second, "give up on relays that have not answered after this long")
	positional, err := parse(fs, c, args, std)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return errors.New("status: give one job id (see client status --help)")
	}
	job, err := parseEventID(positional[0])
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if err := o.checkRelays(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	secret, err := readKey(o.keyFile)
	if err != nil {
		return err
	}
	cl, err := client.Open(ctx, client.Config{Relays: o.relays, NWC: o.nwc, Data: o.data, SecretKey: secret}, o.logger(std.errOut))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	st, err := cl.Status(ctx, job)
	if errors.Is(err, client.ErrUnknownJob) {
		return fmt.Errorf("job %s: no relay of %v has it, and it was not paid from %s", job, o.relays, o.data)
	}
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(std.out, statusDocOf(st))
	}
	writeStatus(std.out, st, time.Now())
	return nil
}

// readKey returns the customer's secret when its file exists, and otherwise a throwaway one:
// status signs nothing, and looking a job up should not leave a key behind.
func readKey(path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return nostr.GeneratePrivateKey(), nil
	}
	k, _, err := keyfile.LoadOrCreate(path)
	return k.Secret(), err
}

// statusDoc is status's --json document.
type statusDoc struct {
	Job       string       `json:"job"`
	State     string       `json:"state"`
	Kind      int          `json:"kind,omitempty"`
	Customer  string       `json:"customer,omitempty"`
	CreatedAt int64        `json:"created_at,omitempty"`
	BidMsat   int64        `json:"bid_msat,omitempty"`
	Worker    string       `json:"worker,omitempty"`
	Info      string       `json:"info,omitempty"`
	Quotes    []quoteDoc   `json:"quotes"`
	Payments  []paymentDoc `json:"payments"`
	Result    *string      `json:"result,omitempty"`
	// Sealed: the result is sealed (escrow); Opened: result is the text the payment's preimage
	// opened; OpenError: the escrow settled, but the preimage does not open the result
	Sealed    bool   `json:"sealed,omitempty"`
	Opened    bool   `json:"opened,omitempty"`
	OpenError string `json:"open_error,omitempty"`
	// a stream's parts paid here and opened (index, text, amount_msat), its part count, and how
	// many parts are delivered sealed with their escrow payment still held
	Parts       []client.Part `json:"parts,omitempty"`
	PartsOf     int           `json:"parts_of,omitempty"`
	PartsLocked int           `json:"parts_locked,omitempty"`
}

type quoteDoc struct {
	Worker     string `json:"worker"`
	AmountMsat int64  `json:"amount_msat"`
}

type paymentDoc struct {
	Worker      string `json:"worker"`
	State       string `json:"state"`
	AmountMsat  int64  `json:"amount_msat"`
	FeeMsat     int64  `json:"fee_msat"`
	PaymentHash string `json:"payment_hash"`
	Preimage    string `json:"preimage,omitempty"` // the proof of a settled payment
}

func statusDocOf(st client.JobStatus) statusDoc {
	d := statusDoc{Job: st.Job, State: string(st.State), Worker: st.Worker, Info: st.Info,
		Quotes: []quoteDoc{}, Payments: []paymentDoc{}, Sealed: st.Sealed, Opened: st.Opened, OpenError: st.OpenErr}
	if r := st.Request; r != nil {
		d.Kind, d.Customer, d.CreatedAt, d.BidMsat = r.Kind, r.PubKey, int64(r.CreatedAt), r.BidMsat
	}
	for _, q := range st.Quotes {
		d.Quotes = append(d.Quotes, quoteDoc{q.Worker, q.AmountMsat})
	}
	for _, p := range st.Payments {
		d.Payments = append(d.Payments, paymentDoc{p.Worker, p.State, p.AmountMsat, p.FeeMsat, p.PaymentHash, p.Preimage})
	}
	if st.Result != nil {
		d.Result = &st.Result.Content
	}
	d.Parts, d.PartsOf, d.PartsLocked = st.Parts, st.PartsOf, st.PartsLocked
	return d
}

func writeStatus(w io.Writer, st client.JobStatus, now time.Time) {
	fmt.Fprintf(w, "job       %s\n", st.Job)
	if r := st.Request; r != nil {
		bid := "none (free workers only)"
		if r.BidMsat > 0 {
			bid = msat(r.BidMsat)
		}
		fmt.Fprintf(w, "kind      %d, bid %s\n", r.Kind, bid)
		fmt.Fprintf(w, "posted    %s by %s\n", age(now, r.CreatedAt), npub(r.PubKey))
	} else {
		fmt.Fprintf(w, "request   not on the relays (expired or deleted)\n")
	}
	state := string(st.State)
	switch st.State {
	case client.JobQuoted:
		state = fmt.Sprintf("quoted by %d worker%s", len(st.Quotes), plural(len(st.Quotes)))
	case client.JobProcessing, client.JobDone:
		state += " by " + npub(st.Worker)
	case client.JobLocked:
		state = "locked: " + npub(st.Worker) + " delivered a sealed result; the escrow payment is held until it settles (run status again, with --nwc, to open it)"
	case client.JobError:
		state = fmt.Sprintf("error from %s: %s", npub(st.Worker), st.Info)
	}
	fmt.Fprintf(w, "state     %s\n", state)
	for _, q := range st.Quotes {
		fmt.Fprintf(w, "quote     %s from %s\n", msat(q.AmountMsat), npub(q.Worker))
	}
	for _, p := range st.Payments {
		fmt.Fprintf(w, "payment   %s: %s, fee %s, to %s\n", p.State, msat(p.AmountMsat), msat(p.FeeMsat), npub(p.Worker))
	}
	if st.PartsOf > 0 {
		var paid int64
		for _, p := range st.Parts {
			paid += p.AmountMsat
		}
		line := fmt.Sprintf("%d of %d received and paid (%s sat)", len(st.Parts), st.PartsOf, satsTenths(paid))
		if st.PartsLocked > 0 {
			line += fmt.Sprintf("; %d sealed, payment held (run status again, with --nwc, to open)", st.PartsLocked)
		}
		fmt.Fprintf(w, "parts     %s\n", line)
		if st.Result == nil && len(st.Parts) > 0 { // the stream did not finish: what was paid for
			texts := make([]string, len(st.Parts))
			for i, p := range st.Parts {
				texts[i] = p.Text
			}
			fmt.Fprintln(w, "parts received:")
			writeResult(w, stream.Join(texts))
		}
	}
	switch {
	case st.OpenErr != "":
		fmt.Fprintf(w, "result    sealed, and it cannot be opened: %s\n", st.OpenErr)
	case st.Sealed && !st.Opened:
		fmt.Fprintln(w, "result    sealed (escrow): opened once the payment settles; give --nwc to look the payment up")
	case st.Result != nil:
		fmt.Fprintln(w, "result:")
		writeResult(w, st.Result.Content)
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
