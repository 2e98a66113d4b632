package worker

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestOwnerMonitorSeesOtherLoad measures real CPU time: the same spinning runs in a child
// process (another process: counted) and in this one (the worker itself: subtracted), and the
// monitor must read more other-load for the child. Other work may saturate the cores, so the
// test never asserts an absolute load: it compares the two intervals pairwise, as many times
// as it must (bounded).
func TestOwnerMonitorSeesOtherLoad(t *testing.T) {
	if os.Getenv("SPARECYCLES_SPIN_CHILD") == "1" {
		for range runtime.NumCPU() - 1 {
			go spin(nil)
		}
		spin(nil)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestOwnerMonitorSeesOtherLoad$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SPARECYCLES_SPIN_CHILD=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sample := OwnerMonitor("/proc", t.TempDir())
	measure := func() float64 {
		sample() // starts the interval
		select {
		case <-t.Context().Done():
			t.Fatal("test ended")
		case <-time.After(time.Second): // the measured interval, not a wait for an event
		}
		return sample().OtherLoad
	}
	child := func() float64 {
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("continue child: %v", err)
		}
		return measure()
	}
	self := func() float64 {
		if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("stop child: %v", err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range runtime.NumCPU() {
			wg.Add(1)
			go func() { defer wg.Done(); spin(&stop) }()
		}
		defer wg.Wait()
		defer stop.Store(true)
		return measure()
	}
	var seen [][2]float64
	for range 15 {
		c, s := child(), self()
		seen = append(seen, [2]float64{c, s})
		if c > s+0.05 {
			t.Logf("other load: %.2f with a child spinning, %.2f with this process spinning", c, s)
			return
		}
	}
	t.Fatalf("a spinning child never read as more other load than this process spinning (child, self): %v", seen)
}

// spin burns CPU until stop is set (never, for nil).
func spin(stop *atomic.Bool) {
	for n := 0; stop == nil || n%1024 != 0 || !stop.Load(); n++ {
	}
}

func TestOtherLoad(t *testing.T) {
	tests := []struct {
		name string
		a, b jiffies
		want float64
	}{
		{name: "idle", a: jiffies{total: 1000, busy: 100}, b: jiffies{total: 1200, busy: 100}, want: 0},
		{name: "half busy others", a: jiffies{total: 1000}, b: jiffies{total: 1200, busy: 100}, want: 0.5},
		{name: "own time subtracted", a: jiffies{total: 1000}, b: jiffies{total: 1200, busy: 150, self: 100}, want: 0.25},
		{name: "only self busy", a: jiffies{total: 1000}, b: jiffies{total: 1200, busy: 200, self: 200}, want: 0},
		{name: "skewed reads clamp", a: jiffies{total: 1000}, b: jiffies{total: 1200, busy: 10, self: 30}, want: 0},
		{name: "no time passed", a: jiffies{total: 1000}, b: jiffies{total: 1000, busy: 10}, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := otherLoad(tc.a, tc.b); got != tc.want {
				t.Fatalf("otherLoad = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReadJiffies reads proc files laid out as Linux writes them.
func TestReadJiffies(t *testing.T) {
	proc := t.TempDir()
	write(t, filepath.Join(proc, "stat"), "cpu  100 20 30 1000 50 5 5 0 7 0\ncpu0 50 10 15 500 25 2 3 0 0 0\nintr 1\n")
	write(t, filepath.Join(proc, "self", "stat"), "42 (a (weird) name) S 1 42 42 0 -1 4194304 100 0 0 0 12 8 0 0 30 10 9 0 100 1000 200\n")
	j, err := readJiffies(proc)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jiffies{total: 1210, busy: 160, self: 20}); j != want {
		t.Fatalf("read %+v, want %+v", j, want)
	}
	write(t, filepath.Join(proc, "stat"), "intr 1\n")
	if _, err := readJiffies(proc); err == nil {
		t.Fatal("a stat without a cpu line was read")
	}
}

func TestOnBattery(t *testing.T) {
	type supply struct{ name, typ, status, online string }
	tests := []struct {
		name     string
		supplies []supply
		want     bool
	}{
		{name: "no supplies (server)", want: false},
		{name: "laptop on mains", supplies: []supply{{"AC", "Mains", "", "1"}, {"BAT0", "Battery", "Charging", ""}}, want: false},
		{name: "full on mains", supplies: []supply{{"AC", "Mains", "", "1"}, {"BAT0", "Battery", "Full", ""}}, want: false},
		{name: "discharging", supplies: []supply{{"AC", "Mains", "", "0"}, {"BAT0", "Battery", "Discharging", ""}}, want: true},
		{name: "unplugged, status unknown", supplies: []supply{{"ADP1", "Mains", "", "0"}, {"BAT1", "Battery", "Unknown", ""}}, want: true},
		{name: "discharging without a mains entry", supplies: []supply{{"BAT0", "Battery", "Discharging", ""}}, want: true},
		{name: "a mouse battery on a desktop", supplies: []supply{{"hid-mouse", "Battery", "Discharging", ""}, {"AC", "Mains", "", "1"}}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, s := range tc.supplies {
				write(t, filepath.Join(dir, s.name, "type"), s.typ+"\n")
				if s.status != "" {
					write(t, filepath.Join(dir, s.name, "status"), s.status+"\n")
				}
				if s.online != "" {
					write(t, filepath.Join(dir, s.name, "online"), s.online+"\n")
				}
			}
			if got := onBattery(dir); got != tc.want {
				t.Fatalf("onBattery = %v, want %v", got, tc.want)
			}
		})
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
