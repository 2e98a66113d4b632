package worker

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestParseHours(t *testing.T) {
	at := func(hhmm string) time.Time {
		tm, err := time.ParseInLocation("15:04", hhmm, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name    string
		in      string
		in2     []string // times inside
		out     []string // times outside
		wantErr error
	}{
		{name: "empty is any time", in: "", in2: []string{"00:00", "12:00", "23:59"}},
		{name: "day", in: "09:00-17:30", in2: []string{"09:00", "17:29"}, out: []string{"08:59", "17:30", "23:00"}},
		{name: "wraps midnight", in: "22:00-07:00", in2: []string{"22:00", "23:59", "00:00", "06:59"}, out: []string{"07:00", "12:00", "21:59"}},
		{name: "to end of day", in: "18:00-24:00", in2: []string{"18:00", "23:59"}, out: []string{"00:00", "17:59"}},
		{name: "one digit hour", in: "7:05-9:00", in2: []string{"07:05"}, out: []string{"07:04", "09:00"}},
		{name: "no dash", in: "22:00", wantErr: errHours},
		{name: "bad minute", in: "22:60-07:00", wantErr: errHours},
		{name: "bad hour", in: "25:00-07:00", wantErr: errHours},
		{name: "words", in: "night-day", wantErr: errHours},
		{name: "same ends", in: "08:00-08:00", wantErr: errHours},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHours(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseHours(%q) error %v, want %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			for _, s := range tc.in2 {
				if !h.Contains(at(s)) {
					t.Errorf("%q should contain %s", tc.in, s)
				}
			}
			for _, s := range tc.out {
				if h.Contains(at(s)) {
					t.Errorf("%q should not contain %s", tc.in, s)
				}
			}
			if again, err := ParseHours(h.String()); err != nil || again != h {
				t.Errorf("round trip %q → %q → %+v (%v)", tc.in, h.String(), again, err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr error
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512M", want: 512 << 20},
		{in: "2G", want: 2 << 30},
		{in: "1.5GiB", want: 3 << 29},
		{in: "64k", want: 64 << 10},
		{in: "-1", wantErr: errSize},
		{in: "lots", wantErr: errSize},
		{in: "", wantErr: errSize},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestSpareFlags parses the spare-cycles flags and validates the result.
func TestSpareFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(Config) bool
		wantErr string // a substring of the error; "" for none
	}{
		{name: "defaults", check: func(c Config) bool {
			return c.When == WhenAlways && c.MaxOtherLoad == 0.25 && c.IdleAfter == 30*time.Second && c.Nice == 10 && c.Grace == 10*time.Second && !c.Hours.Limited
		}},
		{name: "idle mode", args: []string{"--when", "idle", "--max-other-load", "0.5", "--idle-after", "5s", "--hours", "22:00-07:00", "--pause-on-battery", "--max-cpus", "2", "--max-memory", "1G", "--grace", "3s", "--nice", "19"},
			check: func(c Config) bool {
				return c.When == WhenIdle && c.MaxOtherLoad == 0.5 && c.IdleAfter == 5*time.Second && c.Hours == Hours{From: 22 * 60, To: 7 * 60, Limited: true} &&
					c.PauseOnBattery && c.MaxCPUs == 2 && c.MaxMemory == 1<<30 && c.Grace == 3*time.Second && c.Nice == 19
			}},
		{name: "unknown when", args: []string{"--when", "sometimes"}, wantErr: "--when must be"},
		{name: "load zero", args: []string{"--max-other-load", "0"}, wantErr: "--max-other-load"},
		{name: "load above one", args: []string{"--max-other-load", "1.5"}, wantErr: "--max-other-load"},
		{name: "negative idle", args: []string{"--idle-after", "-1s"}, wantErr: "--idle-after"},
		{name: "negative grace", args: []string{"--grace", "-1s"}, wantErr: "--grace"},
		{name: "cpus exceeded", args: []string{"--threads", "2", "--parallel", "2", "--max-cpus", "3"}, wantErr: "uses 4 CPUs, more than --max-cpus 3"},
		{name: "cpus negative", args: []string{"--max-cpus", "-1"}, wantErr: "--max-cpus"},
		{name: "memory tiny", args: []string{"--max-memory", "1M"}, wantErr: "--max-memory below 64M"},
		{name: "memory malformed", args: []string{"--max-memory", "lots"}, wantErr: "size must be"},
		{name: "hours malformed", args: []string{"--hours", "late"}, wantErr: "hours must look like"},
		{name: "nice too high", args: []string{"--nice", "20"}, wantErr: "--nice must be between 0 and 19"},
		{name: "sample too fast", args: []string{"--sample-every", "1ms"}, wantErr: "--sample-every"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("worker", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			var c Config
			c.RegisterFlags(fs)
			err := fs.Parse(append([]string{"--relay", "ws://127.0.0.1:1"}, tc.args...))
			if err == nil {
				err = c.Validate()
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			case tc.check != nil && !tc.check(c):
				t.Fatalf("parsed %+v", c)
			}
		})
	}
}
