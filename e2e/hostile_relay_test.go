//go:build linux

package e2e

// The hostile-client suite runs the relay binary as a child process rather than in the test
// binary: its memory is then the relay's alone (VmRSS and VmHWM in /proc/PID/status), its CPU
// time too (/proc/PID/stat), and it can be killed with SIGKILL and restarted on the same data
// folder, which no in-process relay can show. This file holds that machinery and a bare
// websocket client that attackers and storms use from chosen loopback addresses.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/relay"
)

// relayBinary is relay/cmd/relay, built once per test binary by buildRelay and removed by
// TestMain: package state, but written once under the Once and only read afterwards.
var relayBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	if d := os.Getenv(ownerWorkloadEnv); d != "" {
		os.Exit(ownerWorkload(d)) // BenchmarkSpareCycles runs this binary as the machine's owner
	}
	code := m.Run()
	if relayBinary.dir != "" {
		os.RemoveAll(relayBinary.dir)
	}
	os.Exit(code)
}

// buildRelay returns the path of the relay binary, building it on first use. It is built
// without -race even when the tests run with it: the suite bounds the relay's memory and compares
// its latencies, and the race detector multiplies the one and stretches the other. A build
// failure fails the test; nothing here skips.
func buildRelay(tb testing.TB) string {
	tb.Helper()
	relayBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "sparecycles-hostile-")
		if err != nil {
			relayBinary.err = err
			return
		}
		relayBinary.dir = dir
		path := filepath.Join(dir, "relay")
		cmd := exec.Command("go", "build", "-o", path, "./relay/cmd/relay")
		cmd.Dir = ".." // the module root, seen from e2e/
		if out, err := cmd.CombinedOutput(); err != nil {
			relayBinary.err = fmt.Errorf("go build ./relay/cmd/relay: %v\n%s", err, out)
			return
		}
		relayBinary.path = path
	})
	if relayBinary.err != nil {
		tb.Fatal(relayBinary.err)
	}
	return relayBinary.path
}

// hardRSSLimit is where the watchdog SIGKILLs a relay to protect the machine (the unfixed relay
// was seen at 1.27 GB under one attack). Tests fail long before, at maxRelayRSS.
const hardRSSLimit = 1536 << 20

// relayProc is one relay binary serving a data folder, as a child process; restart starts a new
// process on the same folder. The process is killed when the test ends.
type relayProc struct {
	tb    testing.TB
	data  string
	flags []string
	log   logTail
	// errorf reports a relay killed by the watchdog: tb.Errorf unless a scenario routes its
	// reports elsewhere (BenchmarkHostile logs them).
	errorf func(format string, args ...any)

	mu  sync.Mutex
	run *relayRun // the current process
}

// relayRun is one process of a relayProc.
type relayRun struct {
	cmd     *exec.Cmd
	pid     int
	addr    string        // host:port it listens on
	exited  chan struct{} // closed once the process has exited and been reaped
	waitErr error         // why it exited; read after exited is closed
	logDone chan struct{} // closed once its stderr is drained
	// rssKilled is set when the watchdog killed it for passing hardRSSLimit.
	rssKilled atomic.Bool
}

// startRelayProc starts the relay binary on 127.0.0.1:0 with a fresh data folder and flags,
// and waits until it logs that it serves.
func startRelayProc(tb testing.TB, flags ...string) *relayProc {
	tb.Helper()
	p := &relayProc{tb: tb, data: tb.TempDir(), flags: flags, errorf: tb.Errorf}
	tb.Cleanup(p.stop) // registered after TempDir's, so it runs before the folder goes
	if err := p.start(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// relayEnv is this process's environment without SPARECYCLES_* variables, so that only the
// flags a test passes configure its relay.
func relayEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPARECYCLES_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *relayProc) start() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	args := append([]string{"--listen", "127.0.0.1:0", "--data", p.data}, p.flags...)
	cmd := exec.Command(buildRelay(p.tb), args...)
	cmd.Env = relayEnv()
	// our own pipe rather than StderrPipe: reading it needs no coordination with Wait
	cmd.Stderr = w
	// should this test binary die (a -timeout panic), take the relay with it
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start relay: %w", err)
	}
	w.Close()
	run := &relayRun{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), logDone: make(chan struct{})}
	p.mu.Lock()
	p.run = run
	p.mu.Unlock()
	ready := make(chan string, 1)
	go func() {
		run.waitErr = cmd.Wait()
		close(run.exited)
	}()
	go p.readLog(run, r, ready)
	go run.watchRSS()

	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case run.addr = <-ready:
		return nil
	case <-run.exited:
		<-run.logDone
		return fmt.Errorf("relay %s exited before serving: %v: %s", strings.Join(args, " "), run.waitErr, p.log.last())
	case <-timer.C:
		p.kill()
		return fmt.Errorf("relay did not log \"relay serving\" within 30s\n%s", p.log.String())
	}
}

// readLog keeps the relay's stderr drained (a relay blocked on its log would look wedged),
// keeps its tail for failure reports, and reports the listen address of the "relay serving"
// line (zerolog JSON, since stderr is not a terminal).
func (p *relayProc) readLog(run *relayRun, r *os.File, ready chan<- string) {
	defer close(run.logDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		p.log.add(line)
		if ready != nil && bytes.Contains(line, []byte("relay serving")) {
			var m struct {
				Message string `json:"message"`
				Listen  string `json:"listen"`
			}
			if json.Unmarshal(line, &m) == nil && m.Message == "relay serving" && m.Listen != "" {
				ready <- m.Listen
				ready = nil
			}
		}
	}
	io.Copy(io.Discard, r) // a line over 1 MB ends the scanner; the pipe must still drain
}

// watchRSS kills the process if it passes hardRSSLimit.
func (run *relayRun) watchRSS() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-run.exited:
			return
		case <-tick.C:
		}
		if rss, _, err := procMemory(run.pid); err == nil && rss > hardRSSLimit {
			run.rssKilled.Store(true)
			run.cmd.Process.Kill()
			return
		}
	}
}

func (p *relayProc) current() *relayRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// url is the relay's websocket URL; httpURL its HTTP base.
func (p *relayProc) url() string     { return "ws://" + p.current().addr }
func (p *relayProc) httpURL() string { return "http://" + p.current().addr }

// alive reports whether the current process still runs.
func (p *relayProc) alive() bool {
	select {
	case <-p.current().exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the current process and waits until it is reaped.
func (p *relayProc) kill() {
	run := p.current()
	run.cmd.Process.Kill() // an error means it has exited already
	<-run.exited
	<-run.logDone
}

// terminate sends SIGTERM and waits up to d for the process to exit; it reports how long that
// took, or an error if it did not exit (the process is then still running).
func (p *relayProc) terminate(d time.Duration) (time.Duration, error) {
	run := p.current()
	t0 := time.Now()
	if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-run.exited:
		return time.Since(t0), nil
	case <-timer.C:
		return d, fmt.Errorf("relay still running %v after SIGTERM", d)
	}
}

// restart starts a new process on the same data folder and flags; the previous one must have
// exited.
func (p *relayProc) restart() {
	p.tb.Helper()
	select {
	case <-p.current().exited:
	default:
		p.tb.Fatal("restart: the relay is still running")
	}
	p.log.add([]byte("---- restart ----"))
	if err := p.start(); err != nil {
		p.tb.Fatal(err)
	}
}

func (p *relayProc) stop() {
	run := p.current()
	if run == nil {
		return
	}
	p.kill()
	if run.rssKilled.Load() {
		p.errorf("the relay passed %d MiB of RSS and was killed to protect the machine", hardRSSLimit>>20)
	}
	if p.tb.Failed() && run.addr != "" {
		p.tb.Logf("relay log, last lines:\n%s", p.log.String())
	}
}

// memory returns the current process's resident set size and its peak so far (VmHWM), in bytes.
func (p *relayProc) memory() (rss, peak int64, err error) {
	return procMemory(p.current().pid)
}

// cpu returns the CPU time (user + system) the current process has used.
func (p *relayProc) cpu() (time.Duration, error) { return procCPU(p.current().pid) }

func procMemory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %q: %w", pid, line, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS or VmHWM", pid)
	}
	return rss, peak, nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux build we run on
// (the kernel fixes it for user space regardless of CONFIG_HZ).
const clockTick = 10 * time.Millisecond

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// the command name (field 2) is in parentheses and may hold spaces: count from after it
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

var apiClient = &http.Client{Timeout: 5 * time.Second}

// getJSON GETs path from the relay's HTTP side and decodes the body into v.
func (p *relayProc) getJSON(path string, header map[string]string, v any) error {
	req, err := http.NewRequest("GET", p.httpURL()+path, nil)
	if err != nil {
		return err
	}
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func (p *relayProc) stats() (relay.Stats, error) {
	var st relay.Stats
	err := p.getJSON("/api/stats", nil, &st)
	return st, err
}

// jobs returns the whole job table (/api/jobs caps a page at 10,000 rows).
func (p *relayProc) jobs() ([]relay.JobView, error) {
	var body struct{ Jobs []relay.JobView }
	err := p.getJSON("/api/jobs?limit=10000", nil, &body)
	return body.Jobs, err
}

// nip11 returns the relay's NIP-11 document.
func (p *relayProc) nip11() (relay.InfoDocument, error) {
	var doc relay.InfoDocument
	err := p.getJSON("", map[string]string{"Accept": "application/nostr+json"}, &doc)
	return doc, err
}

// logTail keeps the last lines of a relay's log.
type logTail struct {
	mu    sync.Mutex
	lines []string
	next  int
}

const logTailLines = 60

func (l *logTail) add(line []byte) {
	s := string(line)
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < logTailLines {
		l.lines = append(l.lines, s)
		return
	}
	l.lines[l.next] = s
	l.next = (l.next + 1) % logTailLines
}

// last is the last line.
func (l *logTail) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return ""
	}
	return l.lines[(l.next+len(l.lines)-1)%len(l.lines)]
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(append(append([]string(nil), l.lines[l.next:]...), l.lines[:l.next]...), "\n")
}

// rawClient is a bare websocket client for attackers, storms and duplicate publishers: one
// goroutine uses it at a time, every read and write has a deadline, and it reads only what it
// is waiting for (other messages are skipped).
type rawClient struct {
	c *websocket.Conn
}

func dialRaw(ctx context.Context, url, ip string, header http.Header) (*rawClient, error) {
	c, _, err := testrelay.DialFrom(ctx, url, ip, 0, header)
	if err != nil {
		return nil, err
	}
	return &rawClient{c: c}, nil
}

func (r *rawClient) Close() error { return r.c.Close() }

// send writes one text message within d.
func (r *rawClient) send(msg []byte, d time.Duration) error {
	r.c.SetWriteDeadline(time.Now().Add(d))
	return r.c.WriteMessage(websocket.TextMessage, msg)
}

// errNoOK is a publish whose connection ended, or whose deadline passed, before its OK.
var errNoOK = errors.New("hostile: no OK")

// publish sends evt and reads until its OK, within d. An error wrapping errNoOK means the outcome
// is unknown.
func (r *rawClient) publish(evt nostr.Event, d time.Duration) (nostr.OKEnvelope, error) {
	msg, err := (&nostr.EventEnvelope{Event: evt}).MarshalJSON()
	if err != nil {
		return nostr.OKEnvelope{}, err
	}
	if err := r.send(msg, d); err != nil {
		return nostr.OKEnvelope{}, fmt.Errorf("%w: %w", errNoOK, err)
	}
	r.c.SetReadDeadline(time.Now().Add(d))
	for {
		_, b, err := r.c.ReadMessage()
		if err != nil {
			return nostr.OKEnvelope{}, fmt.Errorf("%w: %w", errNoOK, err)
		}
		if ok, isOK := nostr.ParseMessage(string(b)).(*nostr.OKEnvelope); isOK && ok.EventID == evt.ID {
			return *ok, nil
		}
	}
}

var rawSubs atomic.Int64

// query sends a REQ and returns the events before its EOSE, within d; a CLOSED is an error.
func (r *rawClient) query(f nostr.Filter, d time.Duration) ([]nostr.Event, error) {
	id := "q" + strconv.FormatInt(rawSubs.Add(1), 10)
	msg, err := (&nostr.ReqEnvelope{SubscriptionID: id, Filters: nostr.Filters{f}}).MarshalJSON()
	if err != nil {
		return nil, err
	}
	if err := r.send(msg, d); err != nil {
		return nil, err
	}
	r.c.SetReadDeadline(time.Now().Add(d))
	var out []nostr.Event
	for {
		_, b, err := r.c.ReadMessage()
		if err != nil {
			return out, fmt.Errorf("query %s: %w", id, err)
		}
		switch env := nostr.ParseMessage(string(b)).(type) {
		case *nostr.EventEnvelope:
			if env.SubscriptionID != nil && *env.SubscriptionID == id {
				out = append(out, env.Event)
			}
		case *nostr.EOSEEnvelope:
			if string(*env) == id {
				cl := nostr.CloseEnvelope(id)
				cb, _ := cl.MarshalJSON()
				return out, r.send(cb, d)
			}
		case *nostr.ClosedEnvelope:
			if env.SubscriptionID == id {
				return out, fmt.Errorf("query %s: CLOSED %q", id, env.Reason)
			}
		}
	}
}

// replyCounts counts what a relay sends an attacker that reads, by message type.
type replyCounts struct {
	eose, closed, count, notice, event, ok, other atomic.Int64
	firstClosed                                   atomic.Pointer[string]
	done                                          chan struct{} // closed when the connection has ended
	err                                           error         // why; read after done
}

// countReplies reads c until it fails (it is closed, or the relay drops it), counting messages.
func countReplies(c *websocket.Conn) *replyCounts {
	rc := &replyCounts{done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				rc.err = err
				return
			}
			switch {
			case bytes.HasPrefix(b, []byte(`["EOSE"`)):
				rc.eose.Add(1)
			case bytes.HasPrefix(b, []byte(`["CLOSED"`)):
				if rc.closed.Add(1) == 1 {
					s := string(b)
					rc.firstClosed.Store(&s)
				}
			case bytes.HasPrefix(b, []byte(`["COUNT"`)):
				rc.count.Add(1)
			case bytes.HasPrefix(b, []byte(`["NOTICE"`)):
				rc.notice.Add(1)
			case bytes.HasPrefix(b, []byte(`["EVENT"`)):
				rc.event.Add(1)
			case bytes.HasPrefix(b, []byte(`["OK"`)):
				rc.ok.Add(1)
			default:
				rc.other.Add(1)
			}
		}
	}()
	return rc
}

func (rc *replyCounts) String() string {
	s := fmt.Sprintf("EOSE %d, CLOSED %d, COUNT %d, NOTICE %d, EVENT %d, OK %d, other %d",
		rc.eose.Load(), rc.closed.Load(), rc.count.Load(), rc.notice.Load(), rc.event.Load(), rc.ok.Load(), rc.other.Load())
	if c := rc.firstClosed.Load(); c != nil {
		s += fmt.Sprintf(" (first CLOSED: %.200s)", *c)
	}
	return s
}

// ended reports whether the connection has ended.
func (rc *replyCounts) ended() bool {
	select {
	case <-rc.done:
		return true
	default:
		return false
	}
}

// publishMany writes evts one after another, every apart (0: as fast as the socket takes them),
// without waiting for OKs, while it reads the OKs; it returns once every event has its OK, the
// connection ends or d has passed. Events missing from the map got no OK.
func (r *rawClient) publishMany(evts []nostr.Event, every, d time.Duration) (map[string]nostr.OKEnvelope, error) {
	deadline := time.Now().Add(d)
	r.c.SetReadDeadline(deadline)
	r.c.SetWriteDeadline(deadline)
	want := make(map[string]bool, len(evts))
	for _, evt := range evts {
		want[evt.ID] = true
	}
	oks := make(map[string]nostr.OKEnvelope, len(evts))
	readErr := make(chan error, 1)
	go func() { // the only reader; it owns oks until it sends on readErr
		for len(oks) < len(want) {
			_, b, err := r.c.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			if ok, isOK := nostr.ParseMessage(string(b)).(*nostr.OKEnvelope); isOK && want[ok.EventID] {
				oks[ok.EventID] = *ok
			}
		}
		readErr <- nil
	}()
	var tick *time.Ticker
	if every > 0 {
		// pacing, not synchronisation: the rate is what the test is about
		tick = time.NewTicker(every)
		defer tick.Stop()
	}
	var writeErr error
	for i, evt := range evts {
		if tick != nil && i > 0 {
			<-tick.C
		}
		msg, err := (&nostr.EventEnvelope{Event: evt}).MarshalJSON()
		if err == nil {
			err = r.c.WriteMessage(websocket.TextMessage, msg)
		}
		if err != nil {
			writeErr = fmt.Errorf("write event %d of %d: %w", i+1, len(evts), err)
			r.c.Close() // ends the reader too
			break
		}
	}
	err := <-readErr
	return oks, errors.Join(writeErr, err)
}
