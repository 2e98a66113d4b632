package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Spare cycles: the worker takes jobs only while the machine's owner does not need it
// (BOINC's computing preferences). A governor samples the owner every --sample-every; when the
// owner needs the machine (idle mode and other processes' load at or above --max-other-load,
// outside --hours, on battery with --pause-on-battery, or the worker's resident size above
// --max-memory) the worker pauses at once: queued jobs wait, nothing new is quoted or claimed,
// and a running job that is not paid for gets --grace to finish before it is cancelled and
// handed back with error feedback "paused by owner" (which releases its lease, so another
// worker takes it). A paid job is the customer's and runs on. A stream quotes no further part
// while paused; its paid parts run on, and past --grace a stream with no paid part left to run
// ends with "paused by owner after k of n parts" (its delivered parts settled). The worker
// resumes once the owner has left the machine alone for --idle-after.

// errPausedByOwner is the cause a running job is cancelled with when the owner takes the
// machine back.
var errPausedByOwner = errors.New("worker: paused by owner")

// spareState is whether the worker is paused, and the jobs a pause may cancel.
type spareState struct {
	mu         sync.Mutex
	paused     bool
	reason     string
	resumed    chan struct{}                    // closed while not paused
	clearSince time.Time                        // first sample since the pause that needed nothing
	preempted  bool                             // the pause's grace is over
	running    map[*job]context.CancelCauseFunc // jobs a pause may cancel
}

// measuring is why an idle-mode worker is paused before it has measured a whole sample
// interval: it starts as if the owner had just left, and waits --idle-after like any resume.
const measuring = "measuring the owner's load"

// newSpareState starts running, or paused in idle mode until the owner's load is measured.
func newSpareState(idleMode bool) *spareState {
	c := make(chan struct{})
	s := &spareState{resumed: c, running: map[*job]context.CancelCauseFunc{}}
	if idleMode {
		s.paused, s.reason = true, measuring
	} else {
		close(c)
	}
	return s
}

// Paused reports whether the worker is paused for its owner, and why ("outside hours
// 22:00-07:00", "on battery", "owner busy: …").
func (w *Worker) Paused() (bool, string) {
	w.spare.mu.Lock()
	defer w.spare.mu.Unlock()
	return w.spare.paused, w.spare.reason
}

// gate returns whether the worker is paused and a channel closed once it resumes.
func (s *spareState) gate() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused, s.resumed
}

// holding reports whether the worker is paused, and whether the pause's grace is over.
func (s *spareState) holding() (paused, preempted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused, s.paused && s.preempted
}

// step takes one sample's verdict (reason "" when the owner needs nothing) and reports a
// transition: changed, and whether the worker is now paused.
func (s *spareState) step(reason string, now time.Time, idleAfter time.Duration) (changed, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason != "" {
		s.clearSince = time.Time{}
		s.reason = reason
		if s.paused {
			return false, true
		}
		s.paused, s.preempted, s.resumed = true, false, make(chan struct{})
		return true, true
	}
	if !s.paused {
		return false, false
	}
	if s.clearSince.IsZero() {
		s.clearSince = now
	}
	if now.Sub(s.clearSince) < idleAfter {
		return false, true
	}
	s.paused, s.reason, s.preempted, s.clearSince = false, "", false, time.Time{}
	close(s.resumed)
	return true, false
}

// preempt cancels the running jobs it may, once a pause's grace is over.
func (s *spareState) preempt() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.paused {
		return 0
	}
	s.preempted = true
	for _, cancel := range s.running {
		cancel(errPausedByOwner)
	}
	return len(s.running)
}

// track registers a running job a pause may cancel; past a pause's grace it is cancelled at
// once. The returned func forgets it.
func (s *spareState) track(j *job, cancel context.CancelCauseFunc) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused && s.preempted {
		cancel(errPausedByOwner)
	}
	s.running[j] = cancel
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.running, j)
	}
}

// ownerNeeds says why the owner needs the machine in sample s, or "" when it does not.
func (c *Config) ownerNeeds(s OwnerSample) string {
	switch {
	case !c.Hours.Contains(s.Now):
		return "outside hours " + c.Hours.String()
	case c.PauseOnBattery && s.OnBattery:
		return "on battery"
	case c.MaxMemory > 0 && s.RSS > c.MaxMemory:
		return fmt.Sprintf("resident size %s bytes above --max-memory", thousands(s.RSS))
	case c.When == WhenIdle && s.OtherLoad >= c.MaxOtherLoad:
		return fmt.Sprintf("owner busy: other processes use %.0f%% of the cores", 100*s.OtherLoad)
	}
	return ""
}

// governed reports whether anything can pause the worker.
func (c *Config) governed() bool {
	return c.When == WhenIdle || c.Hours.Limited || c.PauseOnBattery || c.MaxMemory > 0
}

// govern samples the owner until ctx ends, pausing and resuming the worker, and cancels
// running jobs --grace after a pause.
func (w *Worker) govern(ctx context.Context) {
	sample := w.cfg.Owner
	if sample == nil {
		sample = OwnerMonitor("/proc", "/sys/class/power_supply")
	}
	tick := time.NewTicker(w.cfg.SampleEvery)
	defer tick.Stop()
	var grace <-chan time.Time
	var graceTimer *time.Timer
	defer func() {
		if graceTimer != nil {
			graceTimer.Stop()
		}
	}()
	for first := true; ; first = false {
		s := sample()
		if s.Now.IsZero() {
			s.Now = time.Now()
		}
		reason := w.cfg.ownerNeeds(s)
		if first && reason == "" && w.cfg.When == WhenIdle {
			reason = measuring // the first sample covers no interval yet
		}
		changed, paused := w.spare.step(reason, s.Now, w.cfg.IdleAfter)
		if changed {
			_, reason := w.Paused()
			if paused {
				w.log.Info().Str("reason", reason).Str("grace", w.cfg.Grace.String()).Msg("paused: the owner needs the machine")
				if graceTimer != nil {
					graceTimer.Stop()
				}
				graceTimer = time.NewTimer(w.cfg.Grace)
				grace = graceTimer.C
			} else {
				w.log.Info().Msg("resumed: the owner left the machine idle")
				grace = nil
				w.streams.nudgeAll() // streams quote their next parts again
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-grace:
			grace = nil
			if n := w.spare.preempt(); n > 0 {
				w.log.Info().Int("jobs", n).Msg("paused: handing back running jobs")
			}
			w.streams.nudgeAll() // a stream with no paid part left to run ends
		}
	}
}

// deferWhilePaused puts a job the worker is about to quote or claim back in its queue when the
// worker is paused (it is looked at again on resume), reporting whether it did. A full queue
// drops it: another worker serves it.
func (w *Worker) deferWhilePaused(j *job) bool {
	if paused, _ := w.spare.gate(); !paused {
		return false
	}
	select {
	case w.lanes[j.model] <- j:
		w.log.Debug().Str("job", j.event.ID).Msg("paused: job waits")
	default:
		w.log.Debug().Str("job", j.event.ID).Msg("paused and queue full: job left to others")
	}
	return true
}
