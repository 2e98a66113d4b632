package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// OwnerSample is what the machine's owner is doing at one moment, as the spare-cycles
// governor (spare.go) reads it.
type OwnerSample struct {
	Now       time.Time // the local clock, for --hours
	OtherLoad float64   // other processes' share of all cores since the last sample, 0..1
	OnBattery bool      // the machine runs on battery
	RSS       int64     // the worker's resident size in bytes (0: unknown)
}

// OwnerMonitor returns a sampler reading the real machine: CPU load from proc's stat files
// (proc is normally "/proc"), power from sys's power_supply class (normally
// "/sys/class/power_supply"). Other processes' load is the machine's busy time less this
// process's own, over the machine's total time since the previous call, so one call per
// --sample-every measures that interval. What cannot be read reads as idle and on mains: a
// machine without /proc or batteries is not held back by them.
func OwnerMonitor(proc, sys string) func() OwnerSample {
	prev, _ := readJiffies(proc)
	return func() OwnerSample {
		s := OwnerSample{Now: time.Now(), OnBattery: onBattery(sys), RSS: residentBytes(proc)}
		cur, err := readJiffies(proc)
		if err != nil {
			return s
		}
		s.OtherLoad = otherLoad(prev, cur)
		prev = cur
		return s
	}
}

// jiffies are CPU time counters in clock ticks.
type jiffies struct {
	total, busy uint64 // all CPUs: every state, and every state but idle and iowait
	self        uint64 // this process: user + system, all its threads
}

// otherLoad is the share of all cores that processes other than this one used between a
// and b, clamped to 0..1 (the counters are read at slightly different instants).
func otherLoad(a, b jiffies) float64 {
	if b.total <= a.total {
		return 0
	}
	other := float64(b.busy-a.busy) - float64(b.self-a.self)
	return min(max(other/float64(b.total-a.total), 0), 1)
}

var errProcStat = errors.New("worker: unreadable proc stat")

// readJiffies reads proc/stat's aggregate cpu line and proc/self/stat's utime and stime.
func readJiffies(proc string) (jiffies, error) {
	var j jiffies
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return j, fmt.Errorf("read cpu times: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return j, fmt.Errorf("%w: first line %q", errProcStat, line)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice: already in user, nice]
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return j, fmt.Errorf("%w: cpu field %d %q", errProcStat, i+1, s)
		}
		j.total += v
		if i != 3 && i != 4 {
			j.busy += v
		}
	}
	b, err = os.ReadFile(filepath.Join(proc, "self", "stat"))
	if err != nil {
		return j, fmt.Errorf("read own cpu time: %w", err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return j, fmt.Errorf("%w: self stat has no command name", errProcStat)
	}
	g := strings.Fields(s[i+1:]) // g[0] is field 3; utime and stime are fields 14 and 15
	if len(g) < 13 {
		return j, fmt.Errorf("%w: self stat has %d fields", errProcStat, len(g)+2)
	}
	for _, s := range g[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return j, fmt.Errorf("%w: self cpu time %q", errProcStat, s)
		}
		j.self += v
	}
	return j, nil
}

// residentBytes reads this process's resident size from proc/self/statm (0 when unreadable).
func residentBytes(proc string) int64 {
	b, err := os.ReadFile(filepath.Join(proc, "self", "statm"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// onBattery reads a power_supply class directory: on battery when a battery says it is
// discharging, or when the machine has mains supplies and none is online while it has a
// battery. No supplies at all (a server, a container) is mains.
func onBattery(dir string) bool {
	supplies, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	var battery, mains, online bool
	for _, e := range supplies {
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name(), name))
			return strings.TrimSpace(string(b))
		}
		switch read("type") {
		case "Battery":
			battery = true
			if read("status") == "Discharging" {
				return true
			}
		case "Mains":
			mains = true
			online = online || read("online") == "1"
		}
	}
	return battery && mains && !online
}
