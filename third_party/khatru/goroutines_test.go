package khatru

import (
	"runtime"
	"sync"
	"testing"
)

// sparecycles patch: with ReuseGoroutines every handler runs, and handlers given one after
// another reuse a few goroutines rather than starting one each.
func TestReuseGoroutines(t *testing.T) {
	rl := NewRelay()
	rl.ReuseGoroutines = true
	before := runtime.NumGoroutine()
	const n = 2000
	var wg sync.WaitGroup
	ran := make([]bool, n)
	for i := range n {
		wg.Add(1)
		done := make(chan struct{})
		rl.handle(func() { ran[i] = true; close(done); wg.Done() })
		<-done
	}
	wg.Wait()
	for i, ok := range ran {
		if !ok {
			t.Fatalf("handler %d did not run", i)
		}
	}
	if g := runtime.NumGoroutine() - before; g > 50 {
		t.Fatalf("%d goroutines left for %d handlers run one after another", g, n)
	}
	// and many at once all run
	var many sync.WaitGroup
	for range n {
		many.Add(1)
		rl.handle(func() { many.Done() })
	}
	many.Wait()
}
