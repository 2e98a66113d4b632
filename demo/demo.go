// Package demo runs the whole market on one machine with the real binaries: it fetches the
// ONNX Runtime library and the OCR models, builds relay, wallet, worker and client, starts a
// relay (LMDB in a temporary folder), a wallet service with funded connections for a worker and
// a customer, and a worker with the OCR model; renders a sample page, posts it with
// `client post`, and reports the quote, the payment, the extracted text and both balances
// before and after. Then it posts three one-line pages as a stream (the client's progress line
// for each part, each part's price and text, the balances moving by the parts' sum) and one page
// as a private job (the request as the relay holds it: encrypted, no input in the clear; the
// text the client decrypted), and stops everything it started. `make demo` runs it over the
// ledger wallet; `make demo-lightning` over two lnd nodes on regtest.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/private"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
)

// Page is the sample page the demo reads.
var Page = []string{
	"Spare cycles sell compute to strangers.",
	"Jobs are Nostr events; payment is Lightning.",
}

// StreamPages are the pages of the demo's stream, one line of text each: one part per page.
var StreamPages = []string{
	"The first page of a stream.",
	"Each page is paid as it arrives.",
	"The third page ends the stream.",
}

// PrivatePage is the page of the demo's private job.
var PrivatePage = "Only the chosen worker can read this page."

// LND names one lnd node for the Lightning demo.
type LND struct{ REST, Macaroon, TLSCert string }

// Options configure a run.
type Options struct {
	Repo    string    // repository root (scripts/, models/, the Go packages)
	Workdir string    // where binaries, data and logs go; "" makes a temporary folder
	Out     io.Writer // the story, for a person
	// Customer and Worker set the Lightning demo: each side's wallet service runs on its own
	// lnd node. Both nil: one ledger wallet with funded connections.
	Customer, Worker *LND
	// Keep leaves relay, wallet and worker running after the scripted jobs, for the market page
	// (its address and the customer's NWC URI are printed), until ctx ends (Ctrl-C).
	Keep bool
}

// Report is what the demo found.
type Report struct {
	Job           string
	Worker        string
	Scheme        string   // how the worker was paid: "escrow" when both wallets hold invoices
	Preimage      string   // the payment's preimage: the proof of payment, and the result's key
	Stages        []string // the client's stages in order ("waiting for quotes", ..., "locked", "settled", "done")
	AmountMsat    int64
	FeeMsat       int64
	Text          string
	Before, After Balances
	Stream        StreamReport  // then a stream of StreamPages
	Private       PrivateReport // then a private job on PrivatePage
	Review        ReviewReport  // then a paid review of the first job's worker
}

// ReviewReport is what the demo's paid review found: the review event, and the worker's
// reviews and rating as `client workers` then shows them (from the relay's /api/workers).
type ReviewReport struct {
	Event   string
	Reviews int
	Rating  float64
}

// StreamReport is what the demo's stream found.
type StreamReport struct {
	Job    string
	Scheme string
	// Progress is what the client wrote on stderr, line by line ("part 1/3 · 1.0 sat so far", ...)
	Progress      []string
	Parts         []Part
	AmountMsat    int64 // the parts' total, as the client reports it
	FeeMsat       int64 // routing fees, all parts
	Before, After Balances
}

// Part is one part of a stream, as `client post --json` reports it.
type Part struct {
	Index      int    `json:"index"`
	Text       string `json:"text"`
	AmountMsat int64  `json:"amount_msat"`
}

// PrivateReport is what the demo's private job found.
type PrivateReport struct {
	Job    string
	Worker string
	Scheme string
	// Tags and Content are the request event as the relay holds it
	Tags          nostr.Tags
	Content       string
	AmountMsat    int64
	FeeMsat       int64
	Text          string // the result, decrypted by the client
	Before, After Balances
}

// Balances are the two wallets' balances, in msats.
type Balances struct{ Customer, Worker int64 }

// Run runs the demo.
func Run(ctx context.Context, o Options) (rep Report, err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Workdir == "" {
		dir, mkErr := os.MkdirTemp("", "sparecycles-demo-")
		if mkErr != nil {
			return rep, mkErr
		}
		defer func() {
			if err == nil { // the named result: on failure the logs stay for reading
				os.RemoveAll(dir)
			}
		}()
		o.Workdir = dir
	}
	d := &run{o: o, bin: filepath.Join(o.Workdir, "bin")}
	defer d.stopAll()
	defer func() {
		if err != nil {
			fmt.Fprintf(o.Out, "\ndemo failed: %v\nlogs: %s\n", err, filepath.Join(o.Workdir, "logs"))
		}
	}()
	return d.run(ctx)
}

type run struct {
	o     Options
	bin   string
	mu    sync.Mutex
	procs []*proc
}

func (d *run) say(format string, args ...any) { fmt.Fprintf(d.o.Out, format+"\n", args...) }

func (d *run) run(ctx context.Context) (Report, error) {
	var rep Report
	d.say("==> fetching ONNX Runtime and the OCR models (cached)")
	lib, err := d.script(ctx, "fetch-onnxruntime")
	if err != nil {
		return rep, err
	}
	if _, err := d.script(ctx, "fetch-models"); err != nil {
		return rep, err
	}
	d.say("==> building relay, wallet, worker, client")
	if err := d.build(ctx, "relay", "wallet", "worker", "client"); err != nil {
		return rep, err
	}
	port, err := freePort()
	if err != nil {
		return rep, err
	}
	relayURL := fmt.Sprintf("ws://127.0.0.1:%d", port)
	data := func(name string) string { return filepath.Join(d.o.Workdir, name) }

	pageURL := fmt.Sprintf("http://127.0.0.1:%d/", port)
	d.say("==> relay on %s (LMDB in %s)", relayURL, data("relay"))
	if _, err := d.start(ctx, "relay", "relay serving", nil, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", data("relay")); err != nil {
		return rep, err
	}
	d.say("    market page: %s (open it in a browser to watch the jobs below)", pageURL)

	var customerURI, workerURI string
	if d.o.Customer == nil {
		d.say("==> ledger wallet (demo money) with a funded customer and a worker")
		if workerURI, err = d.output(ctx, "wallet", "connect", "--data", data("wallet"), "--relay", relayURL, "--name", "worker"); err != nil {
			return rep, err
		}
		if customerURI, err = d.output(ctx, "wallet", "connect", "--data", data("wallet"), "--relay", relayURL, "--name", "customer", "--fund", "100", "--budget", "50"); err != nil {
			return rep, err
		}
		if _, err := d.start(ctx, "wallet", `"message":"serving"`, nil, "serve", "--relay", relayURL, "--data", data("wallet"), "--backend", "ledger"); err != nil {
			return rep, err
		}
	} else {
		d.say("==> two NWC wallet services, each on its own regtest lnd node")
		for _, side := range []struct {
			name string
			lnd  *LND
			uri  *string
		}{{"customer", d.o.Customer, &customerURI}, {"worker", d.o.Worker, &workerURI}} {
			dir := data("wallet-" + side.name)
			if *side.uri, err = d.output(ctx, "wallet", "connect", "--data", dir, "--relay", relayURL, "--name", side.name, "--backend", "lnd"); err != nil {
				return rep, err
			}
			if _, err := d.start(ctx, "wallet-"+side.name, `"message":"serving"`, nil, "serve", "--relay", relayURL, "--data", dir, "--backend", "lnd",
				"--lnd-rest", side.lnd.REST, "--lnd-macaroon", side.lnd.Macaroon, "--lnd-tlscert", side.lnd.TLSCert); err != nil {
				return rep, err
			}
		}
	}
	for name, uri := range map[string]string{"customer.nwc": customerURI, "worker.nwc": workerURI} {
		if err := private.WriteFile(data(name), []byte(uri+"\n")); err != nil {
			return rep, err
		}
	}

	d.say("==> worker with the OCR model (ONNX Runtime: %s)", lib)
	if _, err := d.start(ctx, "worker", `"message":"relay connected"`, []string{"SPARECYCLES_ONNXRUNTIME_LIB=" + lib},
		"--relay", relayURL, "--models", filepath.Join(d.o.Repo, "models"), "--key-file", data("worker.nsec"),
		"--data", data("worker-data"), "--nwc-file", data("worker.nwc"), "--payment-poll", "1s", "--device", "auto"); err != nil {
		return rep, err
	}

	page := data("page.png")
	size, err := renderPage(page, Page...)
	if err != nil {
		return rep, err
	}
	d.say("==> rendered a sample page: %s (%d bytes)", page, size)
	if rep.Before, err = d.balances(ctx); err != nil {
		return rep, err
	}
	d.say("    balances before: customer %s, worker %s", sats(rep.Before.Customer), sats(rep.Before.Worker))

	// the customer's client: the demo's relay, wallet connection, key and store
	clientArgs := func(args ...string) []string {
		return append(args, "--relay", relayURL, "--nwc-file", data("customer.nwc"), "--key-file", data("customer.nsec"), "--data", data("client-data"))
	}
	d.say("==> client post --kind 5000 --input %s --bid 20sat", filepath.Base(page))
	out, err := d.outputStages(ctx, func(stage string) {
		rep.Stages = append(rep.Stages, stage)
		d.say("    stage    %s%s", stage, stageNote[stage])
	}, "client", clientArgs("post", "--kind", "5000", "--input", page, "--bid", "20sat", "--json", "--log-level", "info")...)
	if err != nil {
		return rep, err
	}
	res, err := decodePost(out)
	if err != nil {
		return rep, err
	}
	rep.Job, rep.Worker, rep.AmountMsat, rep.FeeMsat, rep.Text = res.Job, res.Worker, res.AmountMsat, res.FeeMsat, res.Result
	rep.Scheme, rep.Preimage = res.Scheme, res.Preimage
	d.say("    job      %s", res.Job)
	d.say("    quote    %s from worker %s…, paid by %s", sats(res.AmountMsat), short(res.Worker), res.Scheme)
	d.say("    payment  %s + %s routing fee; preimage %s… (the proof, and the key that opened the result)", sats(res.AmountMsat), sats(res.FeeMsat), short(res.Preimage))
	d.say("    text:\n%s", indent(res.Result))
	if rep.After, err = d.settledBalances(ctx, rep.Before, rep.AmountMsat, rep.FeeMsat); err != nil {
		return rep, err
	}
	d.say("    balances after:  customer %s, worker %s", sats(rep.After.Customer), sats(rep.After.Worker))
	if rep.Stream, err = d.stream(ctx, clientArgs, rep.After); err != nil {
		return rep, err
	}
	if rep.Private, err = d.private(ctx, relayURL, clientArgs, rep.Stream.After); err != nil {
		return rep, err
	}
	if rep.Review, err = d.review(ctx, relayURL, rep.Job, rep.Worker); err != nil {
		return rep, err
	}
	if d.o.Keep {
		d.keep(ctx, pageURL, customerURI)
	}
	d.say("==> stopping everything")
	return rep, nil
}

// keep waits for ctx to end (Ctrl-C) with relay, wallet and worker running, after saying where
// the market page is and which wallet connection to paste into it.
func (d *run) keep(ctx context.Context, pageURL, customerURI string) {
	d.say("==> the market is still up (KEEP=1): post your own job from the page")
	d.say("    market page: %s", pageURL)
	d.say("    paste this customer NWC URI into the page's \"Nostr Wallet Connect URI\" field")
	d.say("    (a throwaway connection to this demo's ledger of made-up sats; it dies with the demo):")
	d.say("    %s", customerURI)
	d.say("    Ctrl-C stops relay, wallet and worker")
	<-ctx.Done()
	d.say("")
}

// stream posts StreamPages as one stream (one --input per page, paid part by part by escrow)
// and prints the client's stderr as it comes: a progress line per part.
func (d *run) stream(ctx context.Context, clientArgs func(...string) []string, before Balances) (StreamReport, error) {
	sr := StreamReport{Before: before}
	args := []string{"post"}
	var shown []string
	for i, line := range StreamPages {
		name := fmt.Sprintf("p%d.png", i+1)
		if _, err := renderPage(filepath.Join(d.o.Workdir, name), line); err != nil {
			return sr, err
		}
		args = append(args, "--input", filepath.Join(d.o.Workdir, name))
		shown = append(shown, "--input "+name)
	}
	d.say("==> a stream: %d one-line pages (%s), one part each, paid as each arrives",
		len(StreamPages), strings.ReplaceAll(strings.Join(shown, ", "), "--input ", ""))
	d.say("==> client post %s --bid 20sat", strings.Join(shown, " "))
	out, err := d.outputLines(ctx, func(line []byte) {
		sr.Progress = append(sr.Progress, string(line))
		d.say("    stderr   %s", line)
	}, "client", clientArgs(append(args, "--bid", "20sat", "--json")...)...)
	if err != nil {
		return sr, err
	}
	res, err := decodePost(out)
	if err != nil {
		return sr, err
	}
	sr.Job, sr.Scheme, sr.Parts, sr.AmountMsat, sr.FeeMsat = res.Job, res.Scheme, res.Parts, res.AmountMsat, res.FeeMsat
	d.say("    job      %s, worker %s…, each part paid by %s", res.Job, short(res.Worker), res.Scheme)
	for _, p := range res.Parts {
		d.say("    part %d   %s | %s", p.Index, sats(p.AmountMsat), strings.Join(strings.Fields(p.Text), " "))
	}
	d.say("    payment  %s for %d parts + %s routing fee", sats(res.AmountMsat), len(res.Parts), sats(res.FeeMsat))
	if sr.After, err = d.settledBalances(ctx, before, res.AmountMsat, res.FeeMsat); err != nil {
		return sr, err
	}
	d.say("    balances after:  customer %s, worker %s", sats(sr.After.Customer), sats(sr.After.Worker))
	return sr, nil
}

// postResult is the part of `client post --json`'s document the demo reads.
type postResult struct {
	Job        string `json:"job"`
	Worker     string `json:"worker"`
	Scheme     string `json:"scheme"`
	Preimage   string `json:"preimage"`
	AmountMsat int64  `json:"amount_msat"`
	FeeMsat    int64  `json:"fee_msat"`
	Status     string `json:"status"`
	Result     string `json:"result"`
	Parts      []Part `json:"parts"`
}

func decodePost(out string) (postResult, error) {
	var res postResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return res, fmt.Errorf("client output %q: %w", out, err)
	}
	return res, nil
}

// private posts PrivatePage as a private job (--private: the inputs encrypted to the worker
// the client picks), then reads the request back from the relay to show what it holds.
func (d *run) private(ctx context.Context, relayURL string, clientArgs func(...string) []string, before Balances) (PrivateReport, error) {
	pr := PrivateReport{Before: before}
	page := filepath.Join(d.o.Workdir, "private.png")
	if _, err := renderPage(page, PrivatePage); err != nil {
		return pr, err
	}
	d.say("==> a private job: the page is encrypted to one worker, which encrypts its answers back")
	d.say("==> client post --private --input %s --bid 20sat", filepath.Base(page))
	out, err := d.output(ctx, "client", clientArgs("post", "--private", "--input", page, "--bid", "20sat", "--json")...)
	if err != nil {
		return pr, err
	}
	res, err := decodePost(out)
	if err != nil {
		return pr, err
	}
	pr.Job, pr.Worker, pr.Scheme, pr.AmountMsat, pr.FeeMsat, pr.Text = res.Job, res.Worker, res.Scheme, res.AmountMsat, res.FeeMsat, res.Result
	evt, err := fetchEvent(ctx, relayURL, res.Job)
	if err != nil {
		return pr, err
	}
	pr.Tags, pr.Content = evt.Tags, evt.Content
	d.say("    job      %s, encrypted to worker %s…", res.Job, short(res.Worker))
	d.say("    on the relay, kind %d with tags %s", evt.Kind, showTags(evt.Tags))
	if !pr.Encrypted() || strings.Contains(evt.String(), "data:image") {
		return pr, fmt.Errorf("the private request %s is on the relay in the clear: %.300s", res.Job, evt.String())
	}
	d.say("             no \"i\" tag: the image is in the content, NIP-44 ciphertext (%d chars): %s…", len(evt.Content), short(evt.Content))
	d.say("    quote    %s, paid by %s", sats(res.AmountMsat), res.Scheme)
	d.say("    text (decrypted by the client):\n%s", indent(res.Result))
	if pr.After, err = d.settledBalances(ctx, before, res.AmountMsat, res.FeeMsat); err != nil {
		return pr, err
	}
	d.say("    balances after:  customer %s, worker %s", sats(pr.After.Customer), sats(pr.After.Worker))
	return pr, nil
}

// review publishes a paid review of job's worker with the customer's key (its proof: the
// job's bolt11 and preimage, which the relay checks) and reads the worker's rating back from
// `client workers`.
func (d *run) review(ctx context.Context, relayURL, job, worker string) (ReviewReport, error) {
	var rr ReviewReport
	data := func(name string) string { return filepath.Join(d.o.Workdir, name) }
	const text = "read every word right"
	d.say("==> client review %s… --rating 5 --text %q", short(job), text)
	out, err := d.output(ctx, "client", "review", job, "--rating", "5", "--text", text, "--json",
		"--relay", relayURL, "--key-file", data("customer.nsec"), "--data", data("client-data"))
	if err != nil {
		return rr, err
	}
	var rev struct {
		Event struct {
			ID string `json:"id"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(out), &rev); err != nil || rev.Event.ID == "" {
		return rr, fmt.Errorf("client review printed %q: %v", out, err)
	}
	rr.Event = rev.Event.ID
	d.say("    review   %s: a NIP-32 label with the job's bolt11 and preimage; the relay checked the proof", rev.Event.ID)
	out, err = d.output(ctx, "client", "workers", "--json", "--relay", relayURL)
	if err != nil {
		return rr, err
	}
	var docs []struct {
		PubKey  string  `json:"pubkey"`
		Reviews int     `json:"reviews"`
		Rating  float64 `json:"rating"`
	}
	if err := json.Unmarshal([]byte(out), &docs); err != nil {
		return rr, fmt.Errorf("client workers printed %.300q: %v", out, err)
	}
	for _, doc := range docs {
		if doc.PubKey == worker {
			rr.Reviews, rr.Rating = doc.Reviews, doc.Rating
		}
	}
	d.say("    client workers: worker %s… ★%.1f (%d paid review%s)", short(worker), rr.Rating, rr.Reviews, map[bool]string{true: "", false: "s"}[rr.Reviews == 1])
	return rr, nil
}

// Encrypted reports whether the request as the relay holds it is encrypted: an
// ["encrypted"] tag and no "i" or "param" tag in the clear.
func (pr PrivateReport) Encrypted() bool {
	marked := slices.ContainsFunc(pr.Tags, func(t nostr.Tag) bool { return len(t) == 1 && t[0] == "encrypted" })
	return marked && pr.Tags.Find("i") == nil && pr.Tags.Find("param") == nil && pr.Content != ""
}

// fetchEvent reads one event by id from the relay, as any Nostr client would.
func fetchEvent(ctx context.Context, url, id string) (*nostr.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := relayconn.Dial(ctx, url) // go-nostr's Relay races between its connect and Close (go test -race)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	defer r.Close()
	evts, err := r.Query(ctx, nostr.Filter{IDs: []string{id}})
	if err != nil {
		return nil, fmt.Errorf("query %s for %s: %w", url, id, err)
	}
	if len(evts) == 0 {
		return nil, fmt.Errorf("relay %s does not hold the request %s", url, id)
	}
	return evts[0], nil
}

// showTags prints tags as JSON arrays, long values (pubkeys) shortened.
func showTags(tags nostr.Tags) string {
	var b strings.Builder
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(' ')
		}
		vals := make([]string, len(t))
		for j, v := range t {
			if len(v) == 64 {
				v = short(v) + "…"
			}
			vals[j] = strconv.Quote(v)
		}
		b.WriteString("[" + strings.Join(vals, ",") + "]")
	}
	return b.String()
}

// renderPage renders lines of text as a PNG page at path and returns its size in bytes.
func renderPage(path string, lines ...string) (int, error) {
	png, err := testimage.Render(28, lines...)
	if err != nil {
		return 0, fmt.Errorf("render %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return 0, err
	}
	return len(png), nil
}

// settledBalances reads both balances until they show a payment of amount (plus fee) from
// before: lnd moves a channel's balance a moment after the payment settled. After 30 s it
// returns what it reads.
func (d *run) settledBalances(ctx context.Context, before Balances, amount, fee int64) (Balances, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := d.balances(ctx)
		if err != nil {
			return b, err
		}
		settled := before.Customer-b.Customer == amount+fee && b.Worker-before.Worker == amount
		if settled || time.Now().After(deadline) {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// balances asks both wallets through the client binary.
func (d *run) balances(ctx context.Context) (Balances, error) {
	var b Balances
	for _, side := range []struct {
		file string
		into *int64
	}{{"customer.nwc", &b.Customer}, {"worker.nwc", &b.Worker}} {
		out, err := d.output(ctx, "client", "balance", "--json", "--nwc-file", filepath.Join(d.o.Workdir, side.file))
		if err != nil {
			return b, err
		}
		var v struct {
			Msat int64 `json:"balance_msat"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return b, fmt.Errorf("client balance output %q: %w", out, err)
		}
		*side.into = v.Msat
	}
	return b, nil
}

// build builds the named commands into d.bin with one go build, saying every few seconds how
// far it got (go build -v names each package it compiles) so that a cold build is not silent.
func (d *run) build(ctx context.Context, names ...string) error {
	if err := os.MkdirAll(d.bin, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-v", "-o", d.bin + string(filepath.Separator)}
	for _, name := range names {
		args = append(args, "./"+name+"/cmd/"+name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = d.o.Repo
	var out lineCounter
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t0 := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("build %s: %w\n%s", strings.Join(names, ", "), err, out.String())
			}
			return nil
		case <-tick.C:
			d.say("    still building: %d packages compiled (%ds)", out.Lines(), int(time.Since(t0).Seconds()))
		}
	}
}

// lineCounter keeps a command's output and counts its lines.
type lineCounter struct {
	mu    sync.Mutex
	buf   strings.Builder
	lines int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines += strings.Count(string(p), "\n")
	return c.buf.Write(p)
}

func (c *lineCounter) Lines() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines
}

func (c *lineCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// script runs scripts/NAME and returns its last stdout line; its progress goes to Out.
func (d *run) script(ctx context.Context, name string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(d.o.Repo, "scripts", name))
	cmd.Dir = d.o.Repo
	cmd.Stderr = d.o.Out
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/%s: %w", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// output runs a binary to completion and returns its trimmed stdout.
func (d *run) output(ctx context.Context, name string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(d.bin, name), args...)
	cmd.Env = binaryEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("%s %s: %v\n%s%s", name, args[0], err, out, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// stageNote explains the escrow stages as the demo prints them.
var stageNote = map[string]string{
	"locked":   "   (the payment is held: the worker cannot spend it, the customer cannot take it back)",
	"settled":  "  (the sealed result was stored, then the worker settled: the preimage opened the result)",
	"refunded": " (the worker cancelled the hold invoice: the funds are back)",
}

// outputStages runs a binary logging JSON lines on stderr (the client with --log-level info,
// off a terminal) to completion, calls stage for each "stage" it logs as it goes, and returns
// its trimmed stdout.
func (d *run) outputStages(ctx context.Context, stage func(string), name string, args ...string) (string, error) {
	return d.outputLines(ctx, func(line []byte) {
		var l struct {
			Stage string `json:"stage"`
		}
		if json.Unmarshal(line, &l) == nil && l.Stage != "" {
			stage(l.Stage)
		}
	}, name, args...)
}

// outputLines runs a binary to completion, calls each for every line it writes on stderr as
// it goes, and returns its trimmed stdout.
func (d *run) outputLines(ctx context.Context, each func(line []byte), name string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(d.bin, name), args...)
	cmd.Env = binaryEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s %s: %w", name, args[0], err)
	}
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		stderr.Write(sc.Bytes())
		stderr.WriteByte('\n')
		each(sc.Bytes())
	}
	if err := cmd.Wait(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("%s %s: %v\n%s%s", name, args[0], err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// binaryEnv is this process's environment without the binaries' own variables
// (SPARECYCLES_WORKER_NWC, ...) and the shared names they once read, so that a wallet or
// setting exported in the user's shell cannot change what the demo runs. The ONNX Runtime
// library and the cache stay.
func binaryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SPARECYCLES_") && name != "SPARECYCLES_ONNXRUNTIME_LIB" && name != "SPARECYCLES_CACHE" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// start launches a long-running binary and waits until its log shows ready.
func (d *run) start(ctx context.Context, name, ready string, env []string, args ...string) (*proc, error) {
	logs := filepath.Join(d.o.Workdir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(logs, name+".log"))
	if err != nil {
		return nil, err
	}
	bin, _, _ := strings.Cut(name, "-") // "wallet-customer" runs the wallet binary
	cmd := exec.Command(filepath.Join(d.bin, bin), args...)
	cmd.Env = append(binaryEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	seen := make(chan struct{})
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if strings.Contains(line, ready) {
				once.Do(func() { close(seen) })
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	select {
	case <-seen:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready (see %s)", name, logFile.Name())
	case <-wait.Done():
		return nil, fmt.Errorf("%s not ready: %w (see %s)", name, wait.Err(), logFile.Name())
	}
}

// stopAll sends SIGTERM to everything started, newest first, and waits for each.
func (d *run) stopAll() {
	d.mu.Lock()
	procs := d.procs
	d.procs = nil
	d.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func sats(msat int64) string {
	if msat%1000 == 0 {
		return strconv.FormatInt(msat/1000, 10) + " sat"
	}
	return strconv.FormatFloat(float64(msat)/1000, 'f', 3, 64) + " sat"
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "      | " + l
	}
	return strings.Join(lines, "\n")
}
