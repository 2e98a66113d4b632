package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// relayProcessEnv, set to "ours" or "vanilla", makes TestRelayProcess serve that relay.
const relayProcessEnv = "SPARECYCLES_RELAY_PROCESS"

// relayProfileEnv, set to a directory, makes startRelayProcess's children record a CPU profile
// there, DIR/WHICH-cpu.out, and with relayTraceEnv set also an execution trace,
// DIR/WHICH-trace.out (to see where a benchmark's time goes in the relay):
//
//	SPARECYCLES_RELAY_PROFILE=/tmp/p go test -run '^$' -bench 'BenchmarkFanout/subs=100$' ./relay/
//	go tool pprof relay.test /tmp/p/ours-cpu.out
const (
	relayProfileEnv = "SPARECYCLES_RELAY_PROFILE"
	relayTraceEnv   = "SPARECYCLES_RELAY_TRACE"
)

// startRelayProcess starts our relay ("ours", the default test configuration) or a vanilla
// khatru relay with the same LMDB store ("vanilla") in a child process (this test binary
// running TestRelayProcess) and returns its websocket URL. Benchmarks that compare the two
// side by side use it so that each relay has its own runtime and garbage collector, as it
// would in production, rather than sharing them with the other relay and the load generator.
// The child stops when the benchmark ends.
func startRelayProcess(b *testing.B, which string) (url string, cpu func() time.Duration) {
	b.Helper()
	args := []string{"-test.run=^TestRelayProcess$", "-test.count=1", "-test.v"}
	if dir := os.Getenv(relayProfileEnv); dir != "" {
		args = append(args, "-test.cpuprofile", filepath.Join(dir, which+"-cpu.out"))
		if os.Getenv(relayTraceEnv) != "" {
			args = append(args, "-test.trace", filepath.Join(dir, which+"-trace.out"))
		}
	}
	cmd := exec.Command(os.Args[0], args...)
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
		return u, func() time.Duration { return childCPU(cmd.Process.Pid) }
	case <-time.After(30 * time.Second):
		b.Fatalf("%s relay process did not start in 30s", which)
	}
	return "", nil
}

// childCPU is the CPU time (user and system) process pid has used so far, read from
// /proc/PID/stat in clock ticks (1/100 s: measure over a few seconds); 0 where there is no /proc.
func childCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// the fields after the command name, which is in parentheses and may contain spaces
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of stat(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const tick = 10 * time.Millisecond          // USER_HZ is 100 on Linux
	return time.Duration(utime+stime) * tick
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
