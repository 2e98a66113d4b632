package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	decodepay "github.com/nbd-wtf/ln-decodepay"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/internal/regtest"
	"github.com/sparecycles/sparecycles/internal/sqlitedb"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/worker"
)

// regtestEscrowPrice is what the escrow worker asks for an OCR job over regtest lnd, in msat.
const regtestEscrowPrice = 21_000

// regtestEscrow is one regtest network shared by the escrow subtests: the relay, alice's lnd
// behind the customer's NWC wallet service, bob's behind the worker's, and the priced models.
type regtestEscrow struct {
	url                    string
	customerURI, workerURI nip47.URI
	models                 string
	workerBin              string // worker/cmd/worker, for the tests that SIGKILL it
}

// Escrow over regtest lnd: the worker quotes with a hold invoice on bob's node, the customer
// pays it from alice's, and the money moves only when the worker settles. The subtests share
// one network and run in order; each measures the balances it expects from where the last
// one left them.
func TestRegtestEscrow(t *testing.T) {
	net := regtest.Start(t)
	_, url := startRelay(t)
	e := regtestEscrow{url: url, models: pricedModels(t, regtestEscrowPrice, 0, "")}
	e.customerURI = lndConnect(t, startLNDWallet(t, url, net.Alice), url, "customer")
	e.workerURI = lndConnect(t, startLNDWallet(t, url, net.Bob), url, "worker")
	e.workerBin = buildWorker(t)
	t.Run("Job", e.testJob)
	t.Run("Refund", e.testRefund)
	t.Run("WorkerKilled", e.testWorkerKilled)
	t.Run("WorkerKilledPastWindow", e.testWorkerKilledPastWindow)
	t.Run("ClientKilled", e.testClientKilled)
	t.Run("Stream", e.testStream)
}

// startWorker runs an in-process worker offering escrow only, paid into bob's wallet.
func (e regtestEscrow) startWorker(t *testing.T) *worker.Worker {
	return startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll = e.workerURI.Encode(), e.models, time.Second
		cfg.Payment, cfg.SettleWindow = []string{escrow.SchemeEscrow}, 2*time.Minute
	}, e.url)
}

// balances are the customer's and the worker's balances, in msat.
func (e regtestEscrow) balances(t *testing.T) [2]int64 {
	return [2]int64{balance(t, e.customerURI), balance(t, e.workerURI)}
}

// escrowRun is a job posted by client.Do in the background: the stages it went through and
// its answer.
type escrowRun struct {
	mu     sync.Mutex
	stages []client.Stage
	done   chan doResult
}

func startEscrowJob(t *testing.T, c *client.Client, img string) *escrowRun {
	t.Helper()
	r := &escrowRun{done: make(chan doResult, 1)}
	go func() {
		out, err := c.Do(context.Background(), ocrJob(img, 10*regtestEscrowPrice), func(s client.Stage) {
			r.mu.Lock()
			r.stages = append(r.stages, s)
			r.mu.Unlock()
		})
		r.done <- doResult{out, err}
	}()
	return r
}

func (r *escrowRun) stagesSoFar() []client.Stage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.stages)
}

// wait waits for Do's answer, for at most two minutes (Do's own timeout is 90 s).
func (r *escrowRun) wait(t *testing.T) doResult {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(2 * time.Minute):
		t.Fatal("client.Do never answered")
		return doResult{}
	}
}

// awaitHeld waits until the worker asks for the paid job's input (held is closed), failing if
// the job ended first.
func (r *escrowRun) awaitHeld(t *testing.T, held <-chan struct{}) {
	t.Helper()
	select {
	case <-held:
	case res := <-r.done:
		t.Fatalf("the job ended before the worker ran it: %+v, %v", res.out, res.err)
	case <-time.After(90 * time.Second):
		t.Fatal("the worker never came back for the paid job's input")
	}
}

// checkLocked checks the escrow holds the customer's funds: alice's balance drops by at least
// the price (and her commitment's fee for the HTLC) while bob's has not moved.
func (e regtestEscrow) checkLocked(t *testing.T, before [2]int64) {
	t.Helper()
	awaitBalanceAtMost(t, e.customerURI, "customer", before[0]-regtestEscrowPrice)
	if got := balance(t, e.workerURI); got != before[1] {
		t.Fatalf("the worker's balance moved from %d to %d msat while the payment is held", before[1], got)
	}
}

// checkSettled checks a settled escrow job's outcome: the scheme, the text, the preimage that
// hashes to the invoice's payment hash and opens the sealed result on the relay, and the
// balances moved once, by exactly the price (no fee on alice's direct channel to bob).
func (e regtestEscrow) checkSettled(t *testing.T, c *client.Client, before [2]int64, r doResult, text string) {
	t.Helper()
	out := r.out
	if r.err != nil || out.Scheme != escrow.SchemeEscrow || strings.ToLower(strings.TrimSpace(out.Result)) != text {
		t.Fatalf("outcome %+v, %v", out, r.err)
	}
	if out.AmountMsat != regtestEscrowPrice || out.FeeMsat != 0 {
		t.Fatalf("paid %d msat + %d msat fee, want %d and no fee on a direct channel", out.AmountMsat, out.FeeMsat, regtestEscrowPrice)
	}
	pays, err := c.Payments(context.Background(), out.Job)
	if err != nil || len(pays) != 1 || pays[0].State != client.PayPaid {
		t.Fatalf("client payments %+v, %v", pays, err)
	}
	inv, err := decodepay.Decodepay(pays[0].Bolt11)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := hex.DecodeString(out.Preimage)
	if h := sha256.Sum256(sum); len(sum) != 32 || hex.EncodeToString(h[:]) != inv.PaymentHash || pays[0].PaymentHash != inv.PaymentHash {
		t.Fatalf("preimage %q does not hash to the invoice's payment hash %s", out.Preimage, inv.PaymentHash)
	}
	evs := testrelay.Query(t, testrelay.Dial(t, e.url), nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": {out.Job}}})
	if len(evs) != 1 {
		t.Fatalf("%d results for the job, want 1", len(evs))
	}
	hash, sealed, err := escrow.ParseResult(evs[0].Tags)
	if err != nil || !sealed || hash != inv.PaymentHash || strings.Contains(strings.ToLower(evs[0].Content), text) {
		t.Fatalf("the result on the relay is not sealed for %s: %v %v %v %q", inv.PaymentHash, hash, sealed, err, evs[0].Content)
	}
	awaitBalance(t, e.customerURI, "customer", before[0]-out.AmountMsat-out.FeeMsat)
	awaitBalance(t, e.workerURI, "worker", before[1]+out.AmountMsat)
}

// Success: while the job runs the worker's balance has not moved and the customer's funds are
// locked; after the settle the customer holds the preimage of the invoice's hash, reads the
// text, and the balances moved by exactly the price.
func (e regtestEscrow) testJob(t *testing.T) {
	e.startWorker(t)
	c := newClientPaying(t, e.url, e.customerURI, client.PayByEscrow)
	before := e.balances(t)
	img, held, release := heldInput(t, "escrow over lightning")

	run := startEscrowJob(t, c, img)
	run.awaitHeld(t, held)
	e.checkLocked(t, before)
	release()
	r := run.wait(t)
	e.checkSettled(t, c, before, r, "escrow over lightning")
	want := []client.Stage{client.StagePosted, client.StagePaying, client.StageLocked, client.StageSettled, client.StageDone}
	if got := run.stagesSoFar(); !slices.Equal(got, want) {
		t.Errorf("stages %q, want %q", got, want)
	}
}

// failingInput serves a PNG of text to the worker's first fetch (the quote); the second (the
// paid run) waits for release (held is closed when it arrives) and is answered 404.
func failingInput(t *testing.T, text string) (url string, held <-chan struct{}, release func()) {
	t.Helper()
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	h, rel := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if n := fetches.Add(1); n >= 2 {
			if n == 2 {
				close(h)
			}
			select {
			case <-rel:
			case <-r.Context().Done():
				return
			}
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	return srv.URL + "/page.png", h, release
}

// The job fails after the payment is held: the worker cancels the hold invoice, the client
// says refunded with the worker's reason, and alice's balance is back to the msat, bob's
// untouched.
func (e regtestEscrow) testRefund(t *testing.T) {
	e.startWorker(t)
	c := newClientPaying(t, e.url, e.customerURI, client.PayByEscrow)
	before := e.balances(t)
	img, held, release := failingInput(t, "never read")

	run := startEscrowJob(t, c, img)
	run.awaitHeld(t, held)
	e.checkLocked(t, before)
	release()
	r := run.wait(t)
	if !errors.Is(r.err, client.ErrJobFailed) || r.out.Scheme != escrow.SchemeEscrow || r.out.Status != "error" ||
		!strings.Contains(r.out.Result, "404") || !strings.Contains(r.out.Result, "refunded") {
		t.Fatalf("outcome %+v, %v; want the job failed, refunded, with the worker's reason", r.out, r.err)
	}
	if got := run.stagesSoFar(); len(got) == 0 || got[len(got)-1] != client.StageRefunded {
		t.Errorf("stages %q, want them to end refunded", got)
	}
	awaitBalance(t, e.customerURI, "customer", before[0])
	if got := balance(t, e.workerURI); got != before[1] {
		t.Fatalf("the worker's balance moved from %d to %d msat for a refunded job", before[1], got)
	}
	if pays, err := c.Payments(context.Background(), r.out.Job); err != nil || len(pays) != 1 || pays[0].State == client.PayPaid || pays[0].Preimage != "" {
		t.Fatalf("client payments %+v, %v; want the one payment not paid", pays, err)
	}
}

// buildWorker builds worker/cmd/worker into a temporary folder (without -race, as a user's
// binary is) and returns its path.
func buildWorker(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker")
	cmd := exec.Command("go", "build", "-o", path, "./worker/cmd/worker")
	cmd.Dir = ".." // the module root, seen from e2e/
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./worker/cmd/worker: %v\n%s", err, out)
	}
	return path
}

// workerHome is what a worker process keeps between runs: its key, its store and its flags.
type workerHome struct {
	bin    string
	pubkey string
	data   string
	args   []string
}

func (e regtestEscrow) newWorkerHome(t *testing.T, settleWindow time.Duration) workerHome {
	t.Helper()
	dir := t.TempDir()
	key, _, err := keyfile.LoadOrCreate(filepath.Join(dir, "worker.nsec"))
	if err != nil {
		t.Fatal(err)
	}
	nwc := filepath.Join(dir, "worker.nwc")
	if err := os.WriteFile(nwc, []byte(e.workerURI.Encode()), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	return workerHome{bin: e.workerBin, pubkey: key.PubKey, data: data, args: []string{
		"--relay", e.url, "--models", e.models, "--key-file", filepath.Join(dir, "worker.nsec"), "--data", data,
		"--nwc-file", nwc, "--payment", "escrow", "--settle-window", settleWindow.String(), "--payment-poll", "1s",
		"--allow-private-urls", "--device", "cpu", "--log-level", "info",
	}}
}

// workerProc is one run of the worker binary; its log goes to the test log, and the
// messages it logged are counted.
type workerProc struct {
	cmd  *exec.Cmd
	log  *procLog
	done chan struct{}
}

// procLog is a worker's stderr: each JSON line is logged to the test and its message counted.
type procLog struct {
	t     *testing.T
	name  string
	mu    sync.Mutex
	buf   []byte
	count map[string]int
}

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := l.buf[:i]
		var m struct{ Message string }
		if json.Unmarshal(line, &m) == nil {
			l.count[m.Message]++
		}
		l.t.Logf("%s: %s", l.name, line)
		l.buf = l.buf[i+1:]
	}
}

func (l *procLog) messages(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[msg]
}

// start runs the worker binary on h, stopped (SIGKILL) at cleanup at the latest, and returns
// once it serves: connected, and done resuming its stored jobs.
func (h workerHome) start(t *testing.T, name string) *workerProc {
	t.Helper()
	cmd := exec.Command(h.bin, h.args...)
	cmd.Env = envWithout("SPARECYCLES_WORKER_")
	l := &procLog{t: t, name: name, count: map[string]int{}}
	cmd.Stderr, cmd.Stdout = l, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &workerProc{cmd: cmd, log: l, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	deadline := time.Now().Add(time.Minute)
	for l.messages("worker serving") == 0 { // logged once the stored jobs are resumed
		select {
		case <-p.done:
			t.Fatalf("%s exited before serving: %v", name, cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never started serving", name)
		}
	}
	return p
}

// kill sends SIGKILL, so no shutdown path runs, and waits for the process to end.
func (p *workerProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// awaitLogged waits until the process has logged msg n times, for at most a minute.
func (p *workerProc) awaitLogged(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for p.log.messages(msg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s logged %q %d times in a minute, want %d", p.log.name, msg, p.log.messages(msg), n)
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v", p.log.name, p.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// storedWorkerState reads a job's state from a worker's store (the worker may be running).
func storedWorkerState(t *testing.T, data, job string) string {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), filepath.Join(data, "worker.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var state string
	if err := db.QueryRow(`SELECT state FROM jobs WHERE id = ?`, job).Scan(&state); err != nil {
		t.Fatalf("job %s in the worker's store: %v", job, err)
	}
	return state
}

// The worker process is SIGKILLed after it accepted the held payment and before it ran the
// job; started again on the same store it runs the job and settles exactly once: bob's
// balance moves by exactly the price, once, and the client reads the result.
func (e regtestEscrow) testWorkerKilled(t *testing.T) {
	home := e.newWorkerHome(t, 2*time.Minute)
	first := home.start(t, "worker")
	c := newClientPaying(t, e.url, e.customerURI, client.PayByEscrow)
	before := e.balances(t)
	// the second fetch (the paid run) never answers; the worker is killed while it waits, and
	// the next start's fetch is served
	img, held, _ := heldInput(t, "killed and settled")

	run := startEscrowJob(t, c, img)
	run.awaitHeld(t, held)
	first.awaitLogged(t, "payment held", 1)
	first.kill()
	e.checkLocked(t, before)

	second := home.start(t, "worker again")
	r := run.wait(t)
	e.checkSettled(t, c, before, r, "killed and settled")
	second.awaitLogged(t, "settled", 1)
	if n := first.log.messages("settled") + second.log.messages("settled"); n != 1 {
		t.Fatalf("the workers settled %d times, want once", n)
	}
	if st := storedWorkerState(t, home.data, r.out.Job); st != worker.StateSettled {
		t.Fatalf("the worker's store says %s, want settled", st)
	}
	// a third start on the same store resumes nothing: it has nothing left to settle
	third := home.start(t, "worker a third time")
	third.kill()
	if got := e.balances(t); got[1] != before[1]+regtestEscrowPrice || third.log.messages("settled") != 0 {
		t.Fatalf("after another restart the worker's balance is %d, want %d; settled %d more times", got[1], before[1]+regtestEscrowPrice, third.log.messages("settled"))
	}
}

// The worker process is SIGKILLed after it accepted the held payment, and comes back after
// its settle window closed: it cancels the hold invoice at start, the client says refunded,
// and the balances are as before.
func (e regtestEscrow) testWorkerKilledPastWindow(t *testing.T) {
	home := e.newWorkerHome(t, 2*time.Minute)
	first := home.start(t, "worker")
	c := newClientPaying(t, e.url, e.customerURI, client.PayByEscrow)
	before := e.balances(t)
	img, held, _ := heldInput(t, "too late")

	run := startEscrowJob(t, c, img)
	run.awaitHeld(t, held)
	first.awaitLogged(t, "payment held", 1)
	first.kill()
	e.checkLocked(t, before)
	// the window closed while the worker was down: rather than wait for the clock, move the
	// payment's arrival in the worker's store back by an hour
	db, err := sqlitedb.Open(context.Background(), filepath.Join(home.data, "worker.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE escrow SET accepted_at = ? WHERE accepted_at > 0`, time.Now().Add(-time.Hour).Unix())
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("move the payment's arrival back: %d rows, %v", n, err)
	}
	db.Close()

	second := home.start(t, "worker again")
	r := run.wait(t)
	if !errors.Is(r.err, client.ErrJobFailed) || r.out.Status != "error" || !strings.Contains(r.out.Result, "settle window closed") {
		t.Fatalf("outcome %+v, %v; want refunded because the settle window closed", r.out, r.err)
	}
	if got := run.stagesSoFar(); len(got) == 0 || got[len(got)-1] != client.StageRefunded {
		t.Errorf("stages %q, want them to end refunded", got)
	}
	awaitBalance(t, e.customerURI, "customer", before[0])
	if got := balance(t, e.workerURI); got != before[1] || second.log.messages("settled") != 0 {
		t.Fatalf("the worker's balance moved from %d to %d msat for a refunded job", before[1], got)
	}
	if st := storedWorkerState(t, home.data, r.out.Job); st != worker.StateRefunded {
		t.Fatalf("the worker's store says %s, want refunded", st)
	}
}

// awaitBalanceAtMost polls the wallet behind uri until its balance is at most want, for at
// most a minute: a held HTLC leaves the payer's balance.
func awaitBalanceAtMost(t testing.TB, uri nip47.URI, who string, want int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := balance(t, uri)
		if got <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s balance is %d msat a minute after the payment, want at most %d", who, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The client process is SIGKILLed while its escrow payment is locked: the worker still
// delivers and settles, and `client status` finishes the job from its store and alice's
// wallet (lnd's record of the outgoing payment): paid once, the sealed result opened.
func (e regtestEscrow) testClientKilled(t *testing.T) {
	e.startWorker(t)
	before := e.balances(t)
	img, held, release := heldInput(t, "customer came back")
	cli := newCLI(t, buildClient(t), e.url, e.customerURI.Encode())

	cmd := cli.command("post", "--input", img, "--bid", "210sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s", "--log-level", "info")
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	job := ""
	lines := bufio.NewScanner(logs)
	for lines.Scan() { // the client exits (EOF) at the latest when its timeout ends
		var l struct{ Job, Stage string }
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Stage == string(client.StagePaying) {
			job = l.Job
			break
		}
	}
	if job == "" {
		t.Fatal("the client never said it is paying")
	}
	select {
	case <-held:
	case <-time.After(90 * time.Second):
		t.Fatal("the worker never came back for the paid job's input")
	}
	e.checkLocked(t, before)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// lnd still has the payment in flight: status leaves it paying
	code, st, stderr := cli.run("status", job, "--timeout", "20s")
	if pays, _ := st["payments"].([]any); code != 0 || st["state"] == "done" || len(pays) != 1 || pays[0].(map[string]any)["state"] != client.PayPaying {
		t.Fatalf("status while the payment is locked: exit %d, %v, stderr %q", code, st, stderr)
	}

	release()
	results(t, testrelay.Dial(t, e.url), job)
	deadline := time.Now().Add(time.Minute)
	for {
		code, st, stderr = cli.run("status", job, "--timeout", "20s")
		if code != 0 {
			t.Fatalf("status: exit %d, %v, stderr %q", code, st, stderr)
		}
		if st["opened"] == true || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	pays, _ := st["payments"].([]any)
	if st["state"] != "done" || st["opened"] != true || strings.ToLower(strings.TrimSpace(st["result"].(string))) != "customer came back" || len(pays) != 1 {
		t.Fatalf("status %v", st)
	}
	pay := pays[0].(map[string]any)
	pre, err := escrow.ParsePreimage(fmt.Sprint(pay["preimage"]))
	if err != nil || pay["state"] != "paid" || pay["payment_hash"] != pre.Hash() {
		t.Fatalf("payment %v (%v)", pay, err)
	}
	awaitBalance(t, e.customerURI, "customer", before[0]-regtestEscrowPrice)
	awaitBalance(t, e.workerURI, "worker", before[1]+regtestEscrowPrice)
}
