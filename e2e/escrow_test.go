package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/worker"
)

// An escrow job from the command line: `client post --pay escrow` over the ledger wallet's hold
// invoices and a worker offering escrow only. The client pays the escrow quote (the funds are
// locked while the worker runs), the worker publishes the sealed result and settles, and the
// preimage the client's payment returns opens the result. The balances move by exactly the
// invoice amount; `client status` opens the result again from the store's preimage.
func TestEscrowJobThroughCLI(t *testing.T) {
	bin := buildClient(t)
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	w := startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll = workerURI.Encode(), pricedModels(t, 2000, 1000, ""), time.Second
		cfg.Payment, cfg.SettleWindow = []string{escrow.SchemeEscrow}, time.Minute
	}, url)
	before := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	img := servePNG(t, "sealed work")

	cli := newCLI(t, bin, url, clientURI.Encode())
	runCLI := cli.run

	code, doc, stderr := runCLI("post", "--input", img, "--bid", "50sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s", "--log-level", "info")
	if code != 0 || strings.ToLower(strings.TrimSpace(doc["result"].(string))) != "sealed work" || doc["worker"] != w.PubKey() || doc["scheme"] != "escrow" {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}
	var got []string
	for _, line := range strings.Split(stderr, "\n") {
		var l struct{ Stage string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Stage != "" {
			got = append(got, l.Stage)
		}
	}
	if !slices.Equal(got, []string{"waiting for quotes", "paying", "locked", "settled", "done"}) {
		t.Errorf("stages %q", got)
	}
	amount := int64(doc["amount_msat"].(float64))
	if amount <= 2000 || amount > 3000 || doc["fee_msat"] != float64(0) {
		t.Fatalf("paid %d msat (fee %v), want the price: 2000 + 1000 per megapixel", amount, doc["fee_msat"])
	}
	after := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	if after[0]-before[0] != amount || before[1]-after[1] != amount {
		t.Fatalf("balances %v → %v, want both to move by %d", before, after, amount)
	}

	// the store keeps the proof: status opens the sealed result with it
	job := doc["job"].(string)
	code, st, stderr := runCLI("status", job, "--timeout", "20s")
	pays, _ := st["payments"].([]any)
	if code != 0 || st["state"] != "done" || st["sealed"] != true || st["opened"] != true || st["result"] != doc["result"] || len(pays) != 1 {
		t.Fatalf("status: exit %d, %v, stderr %q", code, st, stderr)
	}
	pay := pays[0].(map[string]any)
	pre, err := escrow.ParsePreimage(doc["preimage"].(string))
	if err != nil || pay["state"] != "paid" || pay["preimage"] != doc["preimage"] || pay["payment_hash"] != pre.Hash() {
		t.Fatalf("payment %v, preimage %q (%v)", pay, doc["preimage"], err)
	}
}

// cliHome runs the client binary with one customer's key, store and wallet.
type cliHome struct {
	t      *testing.T
	bin    string
	common []string
}

func newCLI(t *testing.T, bin, url, nwcURI string) cliHome {
	dir := t.TempDir()
	nwc := filepath.Join(dir, "nwc")
	if err := os.WriteFile(nwc, []byte(nwcURI), 0o600); err != nil {
		t.Fatal(err)
	}
	return cliHome{t, bin, []string{"--relay", url, "--key-file", filepath.Join(dir, "client.nsec"), "--data", filepath.Join(dir, "data"), "--nwc-file", nwc, "--json"}}
}

func (c cliHome) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, append(args, c.common...)...)
	cmd.Env = envWithout("SPARECYCLES_CLIENT_")
	return cmd
}

// run runs the client and decodes its one JSON document.
func (c cliHome) run(args ...string) (int, map[string]any, string) {
	c.t.Helper()
	cmd := c.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		c.t.Fatalf("%v: %v", args, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		c.t.Fatalf("%v: stdout %q: %v (stderr %q)", args, stdout.String(), err, stderr.String())
	}
	return code, doc, stderr.String()
}

// The client is killed while its escrow payment is locked: the worker still delivers and
// settles, and `client status` finishes the job from the payment store and the wallet
// (lookup_invoice on the outgoing payment): paid, and the sealed result opened.
func TestEscrowClientKilledWhileLocked(t *testing.T) {
	bin := buildClient(t)
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll = workerURI.Encode(), pricedModels(t, 2000, 0, ""), time.Second
		cfg.Payment, cfg.SettleWindow = []string{escrow.SchemeEscrow}, time.Minute
	}, url)
	before := balance(t, clientURI)
	img := servePNG(t, "after a crash")
	cli := newCLI(t, bin, url, clientURI.Encode())

	cmd := cli.command("post", "--input", img, "--bid", "50sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s", "--log-level", "info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	job := ""
	lines := bufio.NewScanner(stderr)
	for lines.Scan() { // the client exits (EOF) at the latest when its timeout ends
		var l struct{ Job, Stage string }
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Stage == "locked" {
			job = l.Job
			break
		}
	}
	if job == "" {
		t.Fatal("the client never said the payment is locked")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// the worker delivers; its settle follows at once
	results(t, testrelay.Dial(t, url), job)
	var st map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for tick := time.NewTicker(200 * time.Millisecond); ; <-tick.C {
		var code int
		code, st, _ = cli.run("status", job, "--timeout", "20s")
		if code != 0 || st["opened"] == true || time.Now().After(deadline) {
			tick.Stop()
			break
		}
	}
	pays, _ := st["payments"].([]any)
	if st["state"] != "done" || st["opened"] != true || strings.ToLower(strings.TrimSpace(st["result"].(string))) != "after a crash" || len(pays) != 1 {
		t.Fatalf("status %v", st)
	}
	if pay := pays[0].(map[string]any); pay["state"] != "paid" || balance(t, clientURI) != before-2000 {
		t.Fatalf("payment %v; client balance %d → %d, want one payment of 2000 msat", pay, before, balance(t, clientURI))
	}
}
