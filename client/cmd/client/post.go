package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // image.DecodeConfig reads the formats the OCR workers take
	_ "image/png"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/tensor"
)

// maxInline is the longest input sent in a tag (a data: URL or a tensor document): relays
// index single-letter tag values of at most 64 KiB, and the rest of the event needs room.
const maxInline = 60 << 10

// jobSpec is what the post flags say about the job.
type jobSpec struct {
	kind    int
	inputs  []string // URLs, files, or "-" for stdin
	tensors string   // a tensor input document's file, or "-"
	bid     int64
	params  []nip90.Param
	to      []string
	output  string
	first   bool // --first-quote
	pay     client.PayBy
	private privateSpec
	// maxSpend caps a stream's parts (--max-spend, msat); 0: only the bid
	maxSpend int64
}

func post(ctx context.Context, std stdio, c command, args []string) error {
	fs := newFlagSet(c)
	o := newOptions()
	o.relayFlag(fs)
	o.keyFlag(fs)
	o.dataFlag(fs)
	o.walletFlags(fs)
	o.outputFlags(fs, 5*time.Minute, "give up waiting for the result after this long")
	spec := jobSpec{pay: client.PayByAny}
	window := 3 * time.Second
	fs.IntVar(&spec.kind, "kind", 0, "job kind, 5000-5999 (default 5000; 5800 with --tensors)")
	fs.Func("input", "input: an http(s) or data: URL, or a local file (sent as a data: URL, up to ~60 KiB), - for stdin; repeatable", func(s string) error {
		spec.inputs = append(spec.inputs, s)
		return nil
	})
	fs.StringVar(&spec.tensors, "tensors", "", "kind 5800: a tensor input document (JSON, see nips/tensor.md), - for stdin")
	fs.Func("bid", "the most you pay: 500sat, 500000msat or a number of sats (none: free workers only: every priced quote is refused)", func(s string) (err error) {
		spec.bid, err = parseBid(s)
		return err
	})
	fs.Func("max-spend", "a stream (2+ --input, one part each, paid as each arrives): stop before the part that would take the total past this, in --bid's units; the request is then deleted and the parts received printed (exit 0, status stopped). The bid still caps the whole stream", func(s string) (err error) {
		spec.maxSpend, err = parseBid(s)
		return err
	})
	fs.Func("param", "job parameter name=value, e.g. model=<sha256 or name>; repeatable", func(s string) error {
		name, value, ok := strings.Cut(s, "=")
		if name = strings.TrimSpace(name); !ok || name == "" || value == "" {
			return fmt.Errorf("%q is not name=value", s)
		}
		spec.params = append(spec.params, nip90.Param{Name: name, Values: []string{value}})
		return nil
	})
	fs.Func("to", "a worker to ask (npub or hex pubkey), added as a \"p\" tag: only a worker named may be paid, and one named alone runs a post-pay job without being asked twice; repeatable", func(s string) error {
		pk, err := parsePubKey(s)
		spec.to = append(spec.to, pk)
		return err
	})
	fs.StringVar(&spec.output, "output", "", "MIME type of the result to ask for, e.g. text/plain")
	fs.DurationVar(&window, "quote-window", window, "the longest to collect quotes and post-pay offers before choosing the cheapest; it ends early once every live worker (announced within 15 minutes) or every --to worker has answered")
	fs.Func("pay", "how to pay: escrow (a hold invoice: the funds are locked until the worker hands over the key to its sealed result, refunded if it fails), prepay (plain NIP-90: pay, then the worker runs), or any: prefer escrow quotes, accept plain quotes and post-pay offers (default any)", func(s string) (err error) {
		spec.pay, err = client.ParsePayBy(s)
		return err
	})
	spec.private.flags(fs)
	fs.BoolVar(&spec.first, "first-quote", false, "take the first acceptable quote or offer at once instead of waiting for the others")
	positional, err := parse(fs, c, args, std)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("post: unexpected argument %q (inputs go in --input)", positional[0])
	}
	if !o.json {
		out, err := runJob(ctx, std, o, &spec, window)
		if err != nil {
			return err
		}
		return writeResult(std.out, out.Result)
	}
	start := time.Now()
	out, err := runJob(ctx, std, o, &spec, window)
	doc := outcomeDoc{Job: out.Job, Worker: out.Worker, AmountMsat: out.AmountMsat, FeeMsat: out.FeeMsat,
		Status: out.Status, Result: out.Result, ElapsedMs: time.Since(start).Milliseconds(), IgnoredResults: out.IgnoredResults,
		Scheme: out.Scheme, Preimage: out.Preimage, Parts: out.Parts}
	if err != nil {
		doc.Status, doc.Error = "error", err.Error()
	}
	if werr := writeJSON(std.out, doc); werr != nil && err == nil {
		err = werr
	}
	return err
}

// runJob checks the job, posts it and follows it to its end.
func runJob(ctx context.Context, std stdio, o *options, spec *jobSpec, window time.Duration) (client.Outcome, error) {
	if err := o.checkRelays(); err != nil {
		return client.Outcome{}, fmt.Errorf("post: %w", err)
	}
	if o.timeout <= 0 || window <= 0 {
		return client.Outcome{}, errors.New("post: --timeout and --quote-window must be positive")
	}
	// everything that can be refused is, before a key, a store or a relay is touched
	req, err := spec.request(std.in)
	if err != nil {
		return client.Outcome{}, fmt.Errorf("post: %w", err)
	}
	req.Relays = o.relays
	if err := spec.private.check(spec); err != nil {
		return client.Outcome{}, fmt.Errorf("post: %w", err)
	}
	key, _, err := keyfile.LoadOrCreate(o.keyFile)
	if err != nil {
		return client.Outcome{}, err
	}
	log := o.logger(std.errOut)
	cl, err := client.Open(ctx, client.Config{
		Relays: o.relays, NWC: o.nwc, Data: o.data, SecretKey: key.Secret(), QuoteWindow: window, FirstQuote: spec.first, Pay: spec.pay, MaxSpendMsat: spec.maxSpend,
		Timeout: o.timeout + time.Second, // our own deadline below ends the job first, so we can tell why it ended
	}, log)
	if err != nil {
		return client.Outcome{}, err
	}
	defer cl.Close()

	// the id is known before posting (it does not depend on the signature), so it can be
	// shown at once: after a crash, `client status <id>` picks the job up
	if err := spec.private.apply(ctx, cl, &req); err != nil {
		return client.Outcome{}, err
	}
	req.CreatedAt = nostr.Now()
	evt := client.RequestEvent(req, spec.pay)
	if req.Encrypted {
		if evt, err = client.PrivateRequestEvent(req, spec.pay, key.Secret()); err != nil {
			return client.Outcome{}, privateTooLarge(err)
		}
	}
	evt.PubKey = key.PubKey
	job := evt.GetID()
	log.Info().Str("job", job).Int("kind", req.Kind).Int64("msat", req.BidMsat).Msg("posting job")

	jobCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// off a terminal, each stage is an info log line (--log-level info)
	stage := func(s client.Stage) { log.Info().Str("job", job).Str("stage", string(s)).Msg("stage") }
	terminal := !o.json && isTerminal(std.errOut)
	if terminal {
		fmt.Fprintf(std.errOut, "job %s\n", job)
		var stop func()
		stage, stop = showProgress(std.errOut, time.Now())
		defer stop()
	}
	out, err := follow(jobCtx, cl, req, stage, std.errOut, terminal)
	if err != nil && ctx.Err() != nil && client.IsStream(req) && out.Job != "" {
		// a stream interrupted deletes its request (the worker stops, cancelling what it holds)
		return out, fmt.Errorf("job %s: interrupted after %d of %d parts: the request is deleted, so the worker stops; a part locked and not delivered is refunded", out.Job, len(out.Parts), len(req.Inputs))
	}
	return out, explain(ctx, jobCtx, err, out.Job, o.timeout)
}

// explain tells a deadline from an interrupt: the client package reports a job nobody
// answered before its deadline as ErrNoOffer; here that is a timeout.
func explain(ctx, jobCtx context.Context, err error, job string, timeout time.Duration) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && job != "":
		return fmt.Errorf("job %s: interrupted; it may still run: see client status %s", job, job)
	case errors.Is(err, client.ErrNoOffer) && errors.Is(jobCtx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("job %s: no worker answered within %v: %w", job, timeout, client.ErrTimeout)
	case errors.Is(err, client.ErrTimeout):
		return fmt.Errorf("%w (see client status %s later)", err, job)
	}
	return err
}

// outcomeDoc is post's --json document.
type outcomeDoc struct {
	Job        string `json:"job"`
	Worker     string `json:"worker"`
	AmountMsat int64  `json:"amount_msat"`
	FeeMsat    int64  `json:"fee_msat"`
	Status     string `json:"status"`
	Result     string `json:"result"`
	ElapsedMs  int64  `json:"elapsed_ms"`
	// IgnoredResults counts results from workers not chosen: never shown, never paid
	IgnoredResults int `json:"ignored_results"`
	// Scheme is how the worker was paid: escrow, prepay, after or free
	Scheme string `json:"scheme,omitempty"`
	// Preimage is the payment's proof; for escrow, the key that opened the result
	Preimage string `json:"preimage,omitempty"`
	// Parts are a stream's parts received (index, text, amount_msat); amount_msat is their total
	Parts []client.Part `json:"parts,omitempty"`
	Error string        `json:"error,omitempty"`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeResult prints a result's content, ending with a newline.
func writeResult(w io.Writer, content string) error {
	if content != "" && !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	_, err := io.WriteString(w, content)
	return err
}

// request builds and checks the job request.
func (s *jobSpec) request(stdin io.Reader) (nip90.JobRequest, error) {
	req := nip90.JobRequest{Kind: s.kind, Params: s.params, BidMsat: s.bid, Providers: s.to, Output: s.output}
	if req.Kind == 0 {
		req.Kind = 5000
		if s.tensors != "" {
			req.Kind = tensor.KindRequest
		}
	}
	if !nip90.IsRequestKind(req.Kind) {
		return req, fmt.Errorf("--kind %d is not a job kind (5000-5999)", req.Kind)
	}
	for _, in := range s.inputs {
		i, err := inputFrom(in, stdin)
		if err != nil {
			return req, err
		}
		if req.Kind == kindOCR {
			if err := checkImage(in, i); err != nil {
				return req, err
			}
		}
		req.Inputs = append(req.Inputs, i)
	}
	if s.tensors != "" {
		if req.Kind != tensor.KindRequest {
			return req, fmt.Errorf("--tensors is for kind %d, not %d", tensor.KindRequest, req.Kind)
		}
		i, err := tensorInput(s.tensors, stdin)
		if err != nil {
			return req, err
		}
		req.Inputs = append(req.Inputs, i)
	}
	if len(req.Inputs) == 0 {
		return req, errors.New("give an --input (or --tensors for kind 5800)")
	}
	if _, ok := req.Param(tensor.ParamModel); req.Kind == tensor.KindRequest && !ok {
		return req, fmt.Errorf("kind %d needs --param %s=<sha256 or name> (client workers lists the models)", tensor.KindRequest, tensor.ParamModel)
	}
	// the request is checked as a worker will read it: the same parser, on the same tags
	evt := req.Event()
	if _, err := nip90.ParseJobRequest(&evt); err != nil {
		return req, err
	}
	return req, nil
}

// inputFrom turns --input into an "i" tag: URLs as they are, a local file as a data: URL.
func inputFrom(arg string, stdin io.Reader) (nip90.Input, error) {
	switch {
	case strings.HasPrefix(arg, "data:"):
		if len(arg) > maxInline {
			return nip90.Input{}, tooLarge("the data: URL", len(arg))
		}
		return nip90.Input{Value: arg, Type: nip90.InputURL}, nil
	case strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://"):
		if u, err := url.Parse(arg); err != nil || u.Host == "" {
			return nip90.Input{}, fmt.Errorf("input %q is not a valid URL", arg)
		}
		return nip90.Input{Value: arg, Type: nip90.InputURL}, nil
	}
	b, err := readLimited(arg, stdin, rawLimit(arg))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && strings.Contains(arg, "://") {
			return nip90.Input{}, fmt.Errorf("input %q is neither an http(s) or data: URL nor a file", arg)
		}
		return nip90.Input{}, err
	}
	u := dataURL(arg, b)
	if len(u) > maxInline {
		return nip90.Input{}, tooLarge(arg, len(b))
	}
	return nip90.Input{Value: u, Type: nip90.InputURL}, nil
}

// kindOCR is the text-extraction kind the OCR workers serve: they read PNG and JPEG images.
const kindOCR = 5000

// checkImage refuses, before anything is posted, an inline input (a local file, stdin or a
// data: URL) that is not a PNG or JPEG image whose header decodes; a URL is the worker's to
// fetch and check.
func checkImage(arg string, in nip90.Input) error {
	meta, payload, ok := strings.Cut(strings.TrimPrefix(in.Value, "data:"), ",")
	if !strings.HasPrefix(in.Value, "data:") || !ok || !strings.HasSuffix(meta, ";base64") {
		return nil
	}
	if arg == "-" {
		arg = "stdin"
	}
	b, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return fmt.Errorf("invalid: input %s is not valid base64", short(arg))
	}
	mt, _, _ := mime.ParseMediaType(http.DetectContentType(b))
	if mt != "image/png" && mt != "image/jpeg" {
		return fmt.Errorf("invalid: input %s is %s, not a PNG or JPEG image (kind %d reads images)", short(arg), mt, kindOCR)
	}
	if _, _, err := image.DecodeConfig(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("invalid: input %s is not a readable %s image: %v", short(arg), strings.TrimPrefix(mt, "image/"), err)
	}
	return nil
}

// short keeps a long argument (a data: URL) readable in a message.
func short(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// tensorInput reads a tensor input document, checks it as a worker will and sends it as text.
func tensorInput(arg string, stdin io.Reader) (nip90.Input, error) {
	b, err := readLimited(arg, stdin, 16<<20)
	if err != nil {
		return nip90.Input{}, err
	}
	if _, err := tensor.ParseInputs(b, tensor.Limits{}); err != nil {
		return nip90.Input{}, fmt.Errorf("--tensors %s: %w", arg, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nip90.Input{}, fmt.Errorf("--tensors %s: %w", arg, err)
	}
	if compact.Len() > maxInline {
		return nip90.Input{}, fmt.Errorf("--tensors %s: %d bytes of JSON is too large to send in the request (relays keep tag values up to 64 KiB): host the file and pass its https:// URL with --input", arg, compact.Len())
	}
	return nip90.Input{Value: compact.String(), Type: nip90.InputText}, nil
}

func tooLarge(what string, n int) error {
	return fmt.Errorf("input %s: %d bytes is too large to send inline (a data: URL over %d KiB; relays keep tag values up to 64 KiB): host the file and pass its https:// URL", what, n, maxInline>>10)
}

// rawLimit is the most bytes worth reading for a data: URL of at most maxInline.
func rawLimit(name string) int64 { return int64(maxInline-len(dataURLPrefix(name, nil)))*3/4 + 3 }

// readLimited reads a file (or stdin for "-"), failing on more than limit bytes without
// reading them all.
func readLimited(name string, stdin io.Reader, limit int64) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Size() > limit {
			return nil, tooLarge(name, int(fi.Size()))
		}
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(name, len(b))
	}
	return b, nil
}

// dataURL encodes b as an RFC 2397 data: URL, its type from the file's extension or, failing
// that, from the bytes.
func dataURL(name string, b []byte) string {
	return dataURLPrefix(name, b) + base64.StdEncoding.EncodeToString(b)
}

func dataURLPrefix(name string, b []byte) string {
	mt := mime.TypeByExtension(strings.ToLower(filepath.Ext(name)))
	if mt == "" && b != nil {
		mt = http.DetectContentType(b)
	}
	if mt == "" {
		mt = "application/octet-stream"
	}
	if base, _, err := mime.ParseMediaType(mt); err == nil {
		mt = base // parameters (a text file's charset) would put spaces in the URL
	}
	return "data:" + mt + ";base64,"
}

// isTerminal reports whether w is a terminal, where progress is drawn.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// showProgress redraws "stage  12s" in place on w every second. set changes the stage; stop
// clears the line and waits for the drawing goroutine.
func showProgress(w io.Writer, start time.Time) (set func(client.Stage), stop func()) {
	var mu sync.Mutex
	current := client.Stage("posting")
	draw := func() {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "\r\033[K%s  %ds", current, int(time.Since(start).Seconds()))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				draw()
			}
		}
	})
	draw()
	set = func(s client.Stage) {
		mu.Lock()
		current = s
		mu.Unlock()
		draw()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			fmt.Fprint(w, "\r\033[K")
		})
	}
	return set, stop
}
