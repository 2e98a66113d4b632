package relay

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// relayProcessEnv, set to "ours" or "vanilla", makes TestRelayProcess serve that relay.
const relayProcessEnv = "SPARECYCLES_RELAY_PROCESS"

// startRelayProcess starts our relay ("ours", the default test configuration) or a vanilla
// khatru relay with the same LMDB store ("vanilla") in a child process (this test binary
// running TestRelayProcess) and returns its websocket URL. Benchmarks that compare the two
// side by side use it so that each relay has its own runtime and garbage collector, as it
// would in production, rather than sharing them with the other relay and the load generator.
// The child stops when the benchmark ends.
func startRelayProcess(b *testing.B, which string) (url string) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelayProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), relayProcessEnv+"="+which)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the child stops when its stdin ends
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "relay-url: "); ok {
				found <- u
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			b.Fatalf("%s relay process exited before serving", which)
		}
		return u
	case <-time.After(30 * time.Second):
		b.Fatalf("%s relay process did not start in 30s", which)
	}
	return ""
}

// TestRelayProcess is the child process of startRelayProcess; it is skipped otherwise. It
// serves the relay SPARECYCLES_RELAY_PROCESS names on 127.0.0.1, prints its URL and stops when
// its standard input ends.
func TestRelayProcess(t *testing.T) {
	var url string
	switch which := os.Getenv(relayProcessEnv); which {
	case "":
		t.Skip("run by benchmarks through startRelayProcess")
	case "ours":
		url = startRelay(t, testConfig(t)).url
	case "vanilla":
		url = testrelay.Start(t)
	default:
		t.Fatalf("%s=%q: want ours or vanilla", relayProcessEnv, which)
	}
	fmt.Printf("relay-url: %s\n", url)
	io.Copy(io.Discard, os.Stdin)
}
