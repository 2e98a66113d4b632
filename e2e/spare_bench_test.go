package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip89"
)

// ownerWorkloadEnv makes the e2e test binary the machine's owner: a CPU-bound program on every
// core for the given duration, printing how many units of work it did.
const ownerWorkloadEnv = "SPARECYCLES_OWNER_WORKLOAD"

// ownerWorkload hashes 4 KiB blocks on every core for d and prints "ops N".
func ownerWorkload(d string) int {
	dur, err := time.ParseDuration(d)
	if err != nil {
		fmt.Fprintln(os.Stderr, "owner workload:", err)
		return 2
	}
	var ops atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for !stop.Load() {
				sum := sha256.Sum256(buf)
				buf[0] = sum[0]
				ops.Add(1)
			}
		}()
	}
	time.Sleep(dur) // the workload's length, not a wait for an event
	stop.Store(true)
	wg.Wait()
	fmt.Printf("ops %d\n", ops.Load())
	return 0
}

// runOwner runs the owner workload as its own process for d and returns its ops/s.
func runOwner(b *testing.B, d time.Duration) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), ownerWorkloadEnv+"="+d.String())
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("owner workload: %v", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(string(out), "ops ")), 10, 64)
	if err != nil {
		b.Fatalf("owner workload printed %q", out)
	}
	return float64(n) / d.Seconds()
}

// spareWorker is one worker process (the binary a user runs, so its /proc/self is its own and
// its --nice touches nothing of the benchmark's).
type spareWorker struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startSpareWorker runs the worker binary on url with extra flags and returns once it has
// announced itself (it is subscribed then).
func startSpareWorker(b *testing.B, bin, url string, extra ...string) *spareWorker {
	b.Helper()
	dir := b.TempDir()
	key, _, err := keyfile.LoadOrCreate(filepath.Join(dir, "worker.nsec"))
	if err != nil {
		b.Fatal(err)
	}
	args := append([]string{"--relay", url, "--models", modelsDir(), "--key-file", filepath.Join(dir, "worker.nsec"),
		"--data", filepath.Join(dir, "data"), "--allow-private-urls", "--device", "cpu", "--queue", "1024", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = envWithout("SPARECYCLES_WORKER_")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := &spareWorker{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(w.done) }()
	b.Cleanup(w.stop)
	c := testrelay.Dial(b, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{nip89.KindHandlerInfo}, Authors: []string{key.PubKey}})
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-sub.Events:
	case <-w.done:
		b.Fatalf("worker exited: %v", cmd.ProcessState)
	case <-ctx.Done():
		b.Fatal("worker never announced itself")
	}
	return w
}

// stop ends the worker with SIGTERM (SIGKILL after 20 s) and waits for it.
func (w *spareWorker) stop() {
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
	}
}

// jobStream keeps two OCR jobs outstanding on c and counts their results.
type jobStream struct {
	results atomic.Int64
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startJobStream(b *testing.B, c *relayconn.Conn, img string) *jobStream {
	b.Helper()
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	ctx, cancel := context.WithCancel(context.Background())
	s := &jobStream{cancel: cancel}
	sub, err := c.Subscribe(ctx, nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"p": {pk}}})
	if err != nil {
		b.Fatal(err)
	}
	slots := make(chan struct{}, 2)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case slots <- struct{}{}:
			}
			evt := nostr.Event{Kind: 5000, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"i", img, "url"}, {"param", "n", strconv.Itoa(n)}}}
			evt.Sign(sk)
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			c.Publish(pctx, evt) // a lost post only thins the stream
			pcancel()
		}
	}()
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.Events:
				s.results.Add(1)
				select {
				case <-slots:
				default:
				}
			}
		}
	}()
	return s
}

func (s *jobStream) stop() { s.cancel(); s.wg.Wait() }

// BenchmarkSpareCycles measures what an idle-mode worker (the real binary, --when idle with its
// real /proc sampler) costs its owner and what it still serves.
//   - owner-busy: a CPU-bound owner workload (sha256 on every core, its own process) runs 4 s
//     alone, then 4 s beside an idle-mode worker fed a steady stream of OCR jobs (two
//     outstanding). Reports the owner's ops/s both ways, their ratio (target ≥ 0.95) and the
//     worker's jobs/s meanwhile.
//   - owner-idle: no owner workload; the worker's OCR jobs/s over 12 s of the stream, from its
//     first result (--idle-after 1s), with --when idle against --when always (target ratio
//     ≥ 0.95), the two taking turns to run first. Other work on the machine counts as the owner: where it keeps the cores busy,
//     an idle-mode worker rightly pauses.
func BenchmarkSpareCycles(b *testing.B) {
	bin := buildWorker(b)
	img := servePNG(b, "Pack my box with five dozen liquor jugs and sixty pens")
	b.Run("owner-busy", func(b *testing.B) {
		_, url := startRelay(b)
		c := testrelay.Dial(b, url)
		const d = 4 * time.Second
		var alone, with, jobs float64
		for b.Loop() {
			alone += runOwner(b, d)
			w := startSpareWorker(b, bin, url, "--when", "idle")
			s := startJobStream(b, c, img)
			n0 := s.results.Load()
			with += runOwner(b, d)
			jobs += float64(s.results.Load()-n0) / d.Seconds()
			s.stop()
			w.stop()
		}
		n := float64(b.N)
		b.ReportMetric(alone/n, "owner-alone-ops/s")
		b.ReportMetric(with/n, "owner-with-ops/s")
		b.ReportMetric(with/alone, "owner-ratio")
		b.ReportMetric(jobs/n, "busy-jobs/s")
	})
	b.Run("owner-idle", func(b *testing.B) {
		const window = 12 * time.Second
		rate := func(when string) float64 {
			_, url := startRelay(b)
			c := testrelay.Dial(b, url)
			w := startSpareWorker(b, bin, url, "--when", when, "--idle-after", "1s")
			defer w.stop()
			s := startJobStream(b, c, img)
			defer s.stop()
			// the window starts at the first result: an idle-mode worker starts paused until it
			// has measured a quiet --idle-after (bounded: where other work keeps the cores
			// busy it stays paused, and the window measures that)
			warm := time.Now().Add(15 * time.Second)
			for s.results.Load() == 0 && time.Now().Before(warm) {
				select {
				case <-b.Context().Done():
					b.Fatal("benchmark ended")
				case <-time.After(20 * time.Millisecond):
				}
			}
			n0 := s.results.Load()
			time.Sleep(window) // the measured window
			return float64(s.results.Load()-n0) / window.Seconds()
		}
		var always, idle float64
		for i := 0; b.Loop(); i++ { // alternate which runs first, so neither has the warmer machine
			if i%2 == 0 {
				always += rate("always")
				idle += rate("idle")
			} else {
				idle += rate("idle")
				always += rate("always")
			}
		}
		n := float64(b.N)
		b.ReportMetric(always/n, "always-jobs/s")
		b.ReportMetric(idle/n, "idle-jobs/s")
		var ratio float64
		if always > 0 {
			ratio = idle / always
		}
		b.ReportMetric(ratio, "idle-ratio")
	})
}
