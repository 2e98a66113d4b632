package worker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The spare-cycles settings (BOINC's computing preferences): when the worker may take jobs,
// and how much of the machine it may use while it does.

// When values: serve whenever running, or only while the owner leaves the machine idle.
const (
	WhenAlways = "always"
	WhenIdle   = "idle"
)

// Hours is a daily window of local time, [From, To) in minutes after midnight. To < From
// wraps midnight (22:00-07:00). The zero value (Limited false) is any time.
type Hours struct {
	From, To int
	Limited  bool
}

// errHours is the sentinel for a malformed --hours value.
var errHours = errors.New("worker: hours must look like 22:00-07:00")

// ParseHours reads "HH:MM-HH:MM"; "" is any time. From equal to To is refused: it says
// neither "always" nor "never" clearly.
func ParseHours(s string) (Hours, error) {
	if s = strings.TrimSpace(s); s == "" {
		return Hours{}, nil
	}
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return Hours{}, fmt.Errorf("%w: %q has no '-'", errHours, s)
	}
	f, err := clockMinutes(from)
	if err != nil {
		return Hours{}, fmt.Errorf("%w: %q: %w", errHours, s, err)
	}
	t, err := clockMinutes(to)
	if err != nil {
		return Hours{}, fmt.Errorf("%w: %q: %w", errHours, s, err)
	}
	if f == t {
		return Hours{}, fmt.Errorf("%w: %q starts and ends at the same time (leave --hours empty for any time)", errHours, s)
	}
	return Hours{From: f, To: t, Limited: true}, nil
}

// clockMinutes reads "HH:MM" (24:00 allowed as the end of the day).
func clockMinutes(s string) (int, error) {
	hh, mm, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(mm) != 2 || len(hh) < 1 || len(hh) > 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return h*60 + m, nil
}

// Contains reports whether t's local time of day falls in the window.
func (h Hours) Contains(t time.Time) bool {
	if !h.Limited {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	if h.From < h.To {
		return m >= h.From && m < h.To
	}
	return m >= h.From || m < h.To // wraps midnight
}

// String writes the window back as HH:MM-HH:MM ("" for any time).
func (h Hours) String() string {
	if !h.Limited {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", h.From/60, h.From%60, h.To/60, h.To%60)
}

// Set parses s (flag.Value).
func (h *Hours) Set(s string) error {
	v, err := ParseHours(s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// errSize is the sentinel for a malformed --max-memory value.
var errSize = errors.New("worker: size must be bytes or a number with K, M, G (powers of 1024)")

// ParseSize reads a byte count: "0", "1048576", "512M", "2G", "1.5GiB".
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%w: %q", errSize, s)
	}
	return int64(v * float64(mult)), nil
}

// validateSpare checks the spare-cycles settings.
func (c *Config) validateSpare() error {
	switch {
	case c.When != WhenAlways && c.When != WhenIdle:
		return fmt.Errorf("worker config: --when must be %q or %q, not %q", WhenAlways, WhenIdle, c.When)
	case !(c.MaxOtherLoad > 0 && c.MaxOtherLoad <= 1):
		return fmt.Errorf("worker config: --max-other-load is a fraction of all cores, above 0 and at most 1 (got %g)", c.MaxOtherLoad)
	case c.IdleAfter < 0:
		return errors.New("worker config: --idle-after must not be negative")
	case c.SampleEvery < 100*time.Millisecond || c.SampleEvery > time.Minute:
		return errors.New("worker config: --sample-every must be between 100ms and 1m")
	case c.Grace < 0:
		return errors.New("worker config: --grace must not be negative")
	case c.MaxCPUs < 0:
		return errors.New("worker config: --max-cpus must not be negative (0: no cap)")
	case c.MaxCPUs > 0 && c.Threads*c.Parallel > c.MaxCPUs:
		return fmt.Errorf("worker config: --threads %d × --parallel %d uses %d CPUs, more than --max-cpus %d", c.Threads, c.Parallel, c.Threads*c.Parallel, c.MaxCPUs)
	case c.MaxMemory < 0:
		return errors.New("worker config: --max-memory must not be negative (0: no limit)")
	case c.MaxMemory > 0 && c.MaxMemory < 64<<20:
		return errors.New("worker config: --max-memory below 64M leaves no room for a model")
	case c.Nice < 0 || c.Nice > 19:
		return fmt.Errorf("worker config: --nice must be between 0 and 19 (got %d)", c.Nice)
	}
	return nil
}
