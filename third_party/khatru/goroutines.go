package khatru

import "time"

// sparecycles patch: Relay.ReuseGoroutines.

// handlerIdle is how long a handler goroutine waits for another message before it exits.
const handlerIdle = 30 * time.Second

// handle runs fn on a goroutine of its own, as upstream's `go fn()` does, but with
// ReuseGoroutines on an idle one from an earlier message when there is one.
func (rl *Relay) handle(fn func()) {
	if !rl.ReuseGoroutines {
		go fn()
		return
	}
	rl.idleOnce.Do(func() { rl.idleHandlers = make(chan func()) })
	select {
	case rl.idleHandlers <- fn: // an idle handler goroutine took it
	default:
		go rl.handleLoop(fn)
	}
}

// handleLoop runs fn, then every message handed to it while idle, until it has been idle for
// handlerIdle.
func (rl *Relay) handleLoop(fn func()) {
	fn()
	idle := time.NewTimer(handlerIdle)
	defer idle.Stop()
	for {
		select {
		case fn := <-rl.idleHandlers:
			fn()
			idle.Reset(handlerIdle)
		case <-idle.C:
			return
		}
	}
}
