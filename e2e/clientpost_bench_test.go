package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkClientPost times `client post` as a user runs it, end to end: the client binary
// (client/cmd/client, built once per run) is executed for every job with its default quote
// window and flags only, on a local market of our relay, a ledger wallet service and one OCR
// worker priced at 1 sat, and paid through the ledger wallet. Each post comes right after a
// bare inference of the same image in this process (the worker's model, loaded as the worker
// loads it), so that the machine getting faster or slower during the run falls on both. It
// reports the posts' p50, fastest and slowest wall time, the bare inference's median and the
// p50 of each post minus the inference before it. One post before the timed ones creates the
// client's key and state folder and warms the worker up.
func BenchmarkClientPost(b *testing.B) {
	line := "Pack my box with five dozen liquor jugs and sixty pens"
	bin := buildClient(b)
	bare := newBareOCR(b, line)
	_, url := startRelay(b)
	data := startLedgerWallet(b, url)
	workerURI := connect(b, data, url, "worker", 0, 0)
	clientURI := connect(b, data, url, "client", 1_000_000, 0)
	startPaidWorker(b, url, workerURI, pricedModels(b, 1000, 0, ""))
	img := servePNG(b, line)
	dir := b.TempDir()
	nwcFile := filepath.Join(dir, "nwc")
	if err := os.WriteFile(nwcFile, []byte(clientURI.Encode()), 0o600); err != nil {
		b.Fatal(err)
	}
	post := func(b *testing.B, n int) {
		cmd := exec.Command(bin, "post", "--relay", url, "--input", img, "--bid", "5sat",
			"--output", "text/plain", "--param", fmt.Sprintf("n=%d", n),
			"--key-file", filepath.Join(dir, "client.nsec"), "--data", filepath.Join(dir, "state"),
			"--nwc-file", nwcFile, "--timeout", "1m")
		cmd.Env = envWithout("SPARECYCLES_") // only the flags configure it
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			b.Fatalf("client post: %v\n%s", err, errOut.Bytes())
		}
		if strings.TrimSpace(out.String()) == "" {
			b.Fatalf("client post printed no result\n%s", errOut.Bytes())
		}
	}
	b.Run("ledger", func(b *testing.B) {
		post(b, -1)
		var posts, over, inference []time.Duration
		n := 0
		for b.Loop() {
			inf := bare()
			t0 := time.Now()
			post(b, n)
			d := time.Since(t0)
			posts, over, inference = append(posts, d), append(over, d-inf), append(inference, inf)
			n++
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(median(posts)), "p50-ms")
		b.ReportMetric(ms(slices.Min(posts)), "min-ms")
		b.ReportMetric(ms(slices.Max(posts)), "max-ms")
		b.ReportMetric(ms(median(inference)), "inference-ms")
		b.ReportMetric(ms(median(over)), "p50-over-ms")
	})
}

// buildClient builds client/cmd/client into a temporary folder and returns its path. It is
// built without -race, as a user's binary is.
func buildClient(b testing.TB) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "client")
	cmd := exec.Command("go", "build", "-o", path, "./client/cmd/client")
	cmd.Dir = ".." // the module root, seen from e2e/
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./client/cmd/client: %v\n%s", err, out)
	}
	return path
}

// envWithout is this process's environment without the variables whose names start with prefix.
func envWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}
