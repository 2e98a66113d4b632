package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sparecycles/sparecycles/internal/testimage"
)

// A worker process killed with SIGKILL after its invoice is paid finishes the job when it is
// started again: the customer gets exactly one result and pays once.
func TestWorkerSIGKILLAfterPayment(t *testing.T) {
	ctx := context.Background()
	repo := repoRoot(t)
	d := &run{o: Options{Repo: repo, Workdir: t.TempDir(), Out: testWriter{t}}}
	d.bin = filepath.Join(d.o.Workdir, "bin")
	t.Cleanup(d.stopAll)
	lib, err := d.script(ctx, "fetch-onnxruntime")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relay", "wallet", "worker", "client"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(d.bin, name), "./"+name+"/cmd/"+name)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	data := func(n string) string { return filepath.Join(d.o.Workdir, n) }
	port, _ := freePort()
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)
	must := func(_ *proc, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.start(ctx, "relay", "relay serving", nil, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", data("relay")))
	workerURI, err := d.output(ctx, "wallet", "connect", "--data", data("wallet"), "--relay", url, "--name", "worker")
	if err != nil {
		t.Fatal(err)
	}
	customerURI, err := d.output(ctx, "wallet", "connect", "--data", data("wallet"), "--relay", url, "--name", "customer", "--fund", "100")
	if err != nil {
		t.Fatal(err)
	}
	must(d.start(ctx, "wallet", `"message":"serving"`, nil, "serve", "--relay", url, "--data", data("wallet")))
	os.WriteFile(data("worker.nwc"), []byte(workerURI), 0o600)
	os.WriteFile(data("customer.nwc"), []byte(customerURI), 0o600)

	// the input: the worker fetches it to price the job, then again once paid; the second
	// fetch never answers, and the worker is killed while it waits
	png, _ := testimage.Render(28, "killed and back")
	var fetches atomic.Int32
	paidFetch := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 2 {
			close(paidFetch)
			<-r.Context().Done()
			return
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	defer srv.Close()

	workerArgs := []string{"--relay", url, "--models", filepath.Join(repo, "models"), "--key-file", data("worker.nsec"),
		"--data", data("worker-data"), "--nwc-file", data("worker.nwc"), "--payment-poll", "1s", "--allow-private-urls"}
	env := []string{"SPARECYCLES_ONNXRUNTIME_LIB=" + lib}
	first, err := d.start(ctx, "worker", `"message":"relay connected"`, env, workerArgs...)
	if err != nil {
		t.Fatal(err)
	}
	post := exec.Command(filepath.Join(d.bin, "client"), "post", "--kind", "5000", "--input", srv.URL+"/page.png", "--bid", "10sat", "--json",
		"--relay", url, "--nwc-file", data("customer.nwc"), "--key-file", data("customer.nsec"), "--data", data("client-data"), "--timeout", "2m")
	var stdout strings.Builder
	post.Stdout = &stdout
	post.Stderr = testWriter{t}
	if err := post.Start(); err != nil {
		t.Fatal(err)
	}
	<-paidFetch
	if err := first.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown path runs
		t.Fatal(err)
	}
	<-first.done
	must(d.start(ctx, "worker-again", `"message":"relay connected"`, env, workerArgs...))
	if err := post.Wait(); err != nil {
		t.Fatalf("client post: %v\n%s", err, stdout.String())
	}
	var out struct {
		Job        string `json:"job"`
		AmountMsat int64  `json:"amount_msat"`
		Result     string `json:"result"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil || strings.ToLower(strings.TrimSpace(out.Result)) != "killed and back" {
		t.Fatalf("client output %q (%v)", stdout.String(), err)
	}
	bal, err := d.output(ctx, "client", "balance", "--json", "--nwc-file", data("customer.nwc"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Msat int64 `json:"balance_msat"`
	}
	json.Unmarshal([]byte(bal), &b)
	if b.Msat != 100_000-out.AmountMsat || out.AmountMsat <= 0 {
		t.Fatalf("customer balance %d msat after paying %d once", b.Msat, out.AmountMsat)
	}
	status, err := d.output(ctx, "client", "status", out.Job, "--json", "--relay", url, "--data", data("client-data"), "--key-file", data("customer.nsec"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(status, `"result"`); n < 1 {
		t.Fatalf("status: %s", status)
	}
}

// testWriter sends a child's stderr to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
