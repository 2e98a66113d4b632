package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/relay"
)

// fetchWorkers reads the relay's /api/workers.
func fetchWorkers(t *testing.T, wsURL string) relay.WorkersResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http"+strings.TrimPrefix(wsURL, "ws")+"/api/workers", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/workers: %v", err)
	}
	defer resp.Body.Close()
	var out relay.WorkersResponse
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/workers: %s", resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<22)).Decode(&out); err != nil {
		t.Fatalf("GET /api/workers: %v", err)
	}
	return out
}

// awaitWorkerRow polls /api/workers (bounded by within) until cond holds for pubkey's row (a
// zero row when it is not listed) and returns the row and how long that took.
func awaitWorkerRow(t *testing.T, wsURL, pubkey string, within time.Duration, what string, cond func(relay.WorkerView) bool) (relay.WorkerView, time.Duration) {
	t.Helper()
	t0 := time.Now()
	for {
		var row relay.WorkerView
		for _, v := range fetchWorkers(t, wsURL).Workers {
			if v.PubKey == pubkey {
				row = v
			}
		}
		if cond(row) {
			return row, time.Since(t0)
		}
		if time.Since(t0) > within {
			t.Fatalf("%s: not within %s; last row %+v", what, within, row)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// A worker process answers the relay's AUTH and subscribes, so /api/workers lists it connected,
// with its announcement and heartbeats; SIGKILLed, it drops out of "connected" as soon as the
// relay sees the socket close, and out of "alive" once its last beat is older than the
// relay's (shortened) threshold.
func TestWorkerKilledLeavesConnected(t *testing.T) {
	const aliveAfter = 3 * time.Second
	_, url := startRelayWith(t, func(c *relay.Config) { c.AliveAfter = aliveAfter })
	dir := t.TempDir()
	key, _, err := keyfile.LoadOrCreate(filepath.Join(dir, "worker.nsec"))
	if err != nil {
		t.Fatal(err)
	}
	home := workerHome{bin: buildWorker(t), pubkey: key.PubKey, data: filepath.Join(dir, "data"), args: []string{
		"--relay", url, "--models", modelsDir(), "--key-file", filepath.Join(dir, "worker.nsec"), "--data", filepath.Join(dir, "data"),
		"--device", "cpu", "--heartbeat", "1s", "--name", "killed worker", "--log-level", "info",
	}}
	proc := home.start(t, "worker")

	row, took := awaitWorkerRow(t, url, key.PubKey, time.Minute, "connected, announced and alive", func(v relay.WorkerView) bool {
		return v.Connected && v.Alive && v.Name != "" && v.Heartbeat != nil
	})
	t.Logf("listed connected and alive %s after the worker started serving", took.Round(time.Millisecond))
	if row.Name != "killed worker" || len(row.Kinds) == 0 || row.Heartbeat.Provider != "CPUExecutionProvider" || row.ConnectedSince == 0 ||
		(row.Heartbeat.Status != "ready" && row.Heartbeat.Status != "busy") {
		t.Fatalf("row %+v", row)
	}

	killed := time.Now()
	proc.kill()
	_, took = awaitWorkerRow(t, url, key.PubKey, 30*time.Second, "not connected after SIGKILL", func(v relay.WorkerView) bool { return !v.Connected })
	t.Logf("SIGKILL → connected=false: %s after the process exited (%s after the signal)", took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	row, took = awaitWorkerRow(t, url, key.PubKey, time.Minute, "not alive once its beat aged", func(v relay.WorkerView) bool { return !v.Alive })
	if row.Heartbeat == nil || row.Heartbeat.Status == "offline" || row.Heartbeat.AgeSeconds < int64(aliveAfter/time.Second) {
		t.Fatalf("row %+v: want the last beat (not an offline one, since SIGKILL runs no shutdown) older than %s", row, aliveAfter)
	}
	t.Logf("SIGKILL → alive=false: %s after connected=false (alive_after %s, last beat %d s old)", took.Round(time.Millisecond), aliveAfter, row.Heartbeat.AgeSeconds)
}

// The client reads who is live from the relay's /api/workers: a running worker is vouched for
// (connected) and alive; stopped cleanly, it is neither, and its last beat says offline.
func TestClientPresencesFromRelay(t *testing.T) {
	_, url := startRelay(t)
	w, stop := runWorker(t, nil, url)
	await := func(what string, cond func(client.Presence) bool) client.Presence {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ps, vouched := client.Presences(ctx, []string{url}, testLog(t))
			cancel()
			if p := ps[w.PubKey()]; vouched && cond(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s; presence %+v (vouched %v)", what, ps[w.PubKey()], vouched)
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}
	// connected comes first; alive and ready once the relay holds the worker's first beat
	p := await("live and beating", func(p client.Presence) bool { return p.Live() && p.Alive && p.Status != "" })
	if !p.Vouched || !p.Connected || !p.Alive || p.Status != "ready" || !p.Serves(5000) {
		t.Fatalf("presence %+v", p)
	}
	stop()
	p = await("offline after a clean stop", func(p client.Presence) bool { return p.Status == "offline" })
	if p.Live() || p.Connected || p.Alive {
		t.Fatalf("presence after a clean stop %+v", p)
	}
}

// client.Do ends its quote window once every worker the relay vouches live for the kind has
// quoted: with a quote window far longer than the job's timeout, the job is done only because
// the window ended early. A worker that announced itself but has stopped (a fresh NIP-89
// announcement, an offline beat, no connection) is not waited for, and of the two live
// workers' quotes the cheaper wins.
func TestQuoteWindowEndsWhenLiveWorkersQuoted(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	cheap := startPaidWorker(t, url, connect(t, data, url, "cheap worker", 0, 0), pricedModels(t, 2000, 1000, ""))
	dear := startPaidWorker(t, url, connect(t, data, url, "dear worker", 0, 0), pricedModels(t, 4000, 1000, ""))
	gone, stop := runWorker(t, nil, url)
	stop() // announced minutes ago at most, but no longer serving

	// the job is posted once the relay vouches for the two live workers
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ps, vouched := client.Presences(ctx, []string{url}, testLog(t))
		cancel()
		if vouched && ps[cheap.PubKey()].Live() && ps[dear.PubKey()].Live() && !ps[gone.PubKey()].Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presences not as expected within 30 s: %+v", ps)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}

	c, err := client.Open(context.Background(), client.Config{
		Relays: []string{url}, NWC: connect(t, data, url, "customer", 1000, 500).Encode(), Data: t.TempDir(), SecretKey: nostr.GeneratePrivateKey(),
		QuoteWindow: time.Hour, Timeout: 2 * time.Minute,
	}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := c.Do(context.Background(), ocrJob(servePNG(t, "every live worker quoted"), 50_000), nil)
	if err != nil {
		t.Fatalf("job (the quote window should have ended when both live workers had quoted): %v", err)
	}
	if out.Worker != cheap.PubKey() || !strings.Contains(strings.ToLower(out.Result), "every live worker") {
		t.Fatalf("outcome %+v: want the cheaper live worker %s", out, cheap.PubKey())
	}
}
