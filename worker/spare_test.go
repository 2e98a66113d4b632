package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOwnerNeeds(t *testing.T) {
	night := Hours{From: 22 * 60, To: 7 * 60, Limited: true}
	noon := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	midnight := time.Date(2026, 1, 1, 0, 30, 0, 0, time.Local)
	tests := []struct {
		name string
		cfg  func(*Config)
		s    OwnerSample
		want string // a prefix of the reason; "" for none
	}{
		{name: "always ignores load", s: OwnerSample{Now: noon, OtherLoad: 1}},
		{name: "idle and quiet", cfg: func(c *Config) { c.When = WhenIdle }, s: OwnerSample{Now: noon, OtherLoad: 0.2}},
		{name: "idle and busy", cfg: func(c *Config) { c.When = WhenIdle }, s: OwnerSample{Now: noon, OtherLoad: 0.25}, want: "owner busy: other processes use 25%"},
		{name: "inside hours", cfg: func(c *Config) { c.Hours = night }, s: OwnerSample{Now: midnight}},
		{name: "outside hours", cfg: func(c *Config) { c.Hours = night }, s: OwnerSample{Now: noon}, want: "outside hours 22:00-07:00"},
		{name: "battery ignored without the flag", s: OwnerSample{Now: noon, OnBattery: true}},
		{name: "on battery", cfg: func(c *Config) { c.PauseOnBattery = true }, s: OwnerSample{Now: noon, OnBattery: true}, want: "on battery"},
		{name: "memory below", cfg: func(c *Config) { c.MaxMemory = 1 << 30 }, s: OwnerSample{Now: noon, RSS: 1 << 29}},
		{name: "memory above", cfg: func(c *Config) { c.MaxMemory = 1 << 30 }, s: OwnerSample{Now: noon, RSS: 1<<30 + 1}, want: "resident size 1,073,741,825 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			got := c.ownerNeeds(tc.s)
			if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("ownerNeeds = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSpareStep walks the pause state through samples: it pauses at the first busy sample and
// resumes only after --idle-after of quiet samples; a busy sample in between starts it over.
func TestSpareStep(t *testing.T) {
	s := newSpareState(false)
	t0 := time.Unix(1_000_000, 0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	steps := []struct {
		sec           int
		reason        string
		changed, want bool // a transition, and paused after it
	}{
		{0, "", false, false},
		{1, "busy", true, true},
		{2, "busy", false, true},
		{3, "", false, true}, // quiet from 3
		{5, "", false, true}, // 2s of 3
		{6, "busy", false, true},
		{7, "", false, true},  // quiet again from 7
		{10, "", true, false}, // 3s: resumed
		{11, "", false, false},
	}
	for _, st := range steps {
		changed, paused := s.step(st.reason, at(st.sec), 3*time.Second)
		if changed != st.changed || paused != st.want {
			t.Fatalf("at %ds (%q): changed %v paused %v, want %v %v", st.sec, st.reason, changed, paused, st.changed, st.want)
		}
		gated, resumed := s.gate()
		select {
		case <-resumed:
			if gated {
				t.Fatalf("at %ds: paused but the resume channel is closed", st.sec)
			}
		default:
			if !gated {
				t.Fatalf("at %ds: running but the resume channel is open", st.sec)
			}
		}
	}
}

// TestSpareStartsPausedInIdleMode: an idle-mode worker waits for a measured quiet interval.
func TestSpareStartsPausedInIdleMode(t *testing.T) {
	s := newSpareState(true)
	if paused, _ := s.gate(); !paused {
		t.Fatal("an idle-mode worker starts running before it measured its owner")
	}
	now := time.Now()
	if changed, paused := s.step(measuring, now, time.Second); changed || !paused {
		t.Fatalf("first sample: changed %v paused %v", changed, paused)
	}
	s.step("", now.Add(time.Second), time.Second)
	if changed, paused := s.step("", now.Add(2*time.Second), time.Second); !changed || paused {
		t.Fatalf("after a quiet --idle-after: changed %v paused %v", changed, paused)
	}
}

// TestSparePreempt: a pause's grace cancels the tracked jobs with errPausedByOwner, and a job
// tracked after it is cancelled at once; nothing is cancelled while running.
func TestSparePreempt(t *testing.T) {
	s := newSpareState(false)
	ctx1, cancel1 := context.WithCancelCause(t.Context())
	forget := s.track(&job{}, cancel1)
	if s.preempt() != 0 || ctx1.Err() != nil {
		t.Fatal("preempted while not paused")
	}
	s.step("busy", time.Now(), time.Second)
	if n := s.preempt(); n != 1 || !errors.Is(context.Cause(ctx1), errPausedByOwner) {
		t.Fatalf("preempt cancelled %d jobs, cause %v", n, context.Cause(ctx1))
	}
	forget()
	ctx2, cancel2 := context.WithCancelCause(t.Context())
	defer s.track(&job{}, cancel2)()
	if !errors.Is(context.Cause(ctx2), errPausedByOwner) {
		t.Fatalf("a job tracked past the grace runs on (cause %v)", context.Cause(ctx2))
	}
}
