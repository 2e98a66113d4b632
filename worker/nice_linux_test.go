package worker

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestRenice runs in a child process (renicing cannot be undone without privilege): the child
// renices itself, then starts threads, and prints every thread's niceness.
func TestRenice(t *testing.T) {
	if os.Getenv("SPARECYCLES_RENICE_CHILD") == "1" {
		reniceChild()
		return
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestRenice$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SPARECYCLES_RENICE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var before, after []int
	for _, line := range strings.Split(string(out), "\n") {
		kind, list, ok := strings.Cut(line, ":")
		if !ok || (kind != "before" && kind != "after") {
			continue
		}
		for _, f := range strings.Fields(list) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("child line %q: %v", line, err)
			}
			if kind == "before" {
				before = append(before, n)
			} else {
				after = append(after, n)
			}
		}
	}
	if len(before) == 0 || len(after) <= len(before) {
		t.Fatalf("want the child's threads before renice and more after (threads started later); got %v then %v\n%s", before, after, out)
	}
	for _, n := range after {
		if n != 10 {
			t.Fatalf("a thread's nice is %d, want 10 (all: %v)\n%s", n, after, out)
		}
	}
}

func reniceChild() {
	print := func(kind string) {
		tasks, _ := os.ReadDir("/proc/self/task")
		var ns []string
		for _, e := range tasks {
			tid, _ := strconv.Atoi(e.Name())
			if n, err := threadNice(tid); err == nil {
				ns = append(ns, strconv.Itoa(n))
			}
		}
		os.Stdout.WriteString(kind + ": " + strings.Join(ns, " ") + "\n")
	}
	print("before")
	if err := renice(10); err != nil {
		os.Stdout.WriteString("renice: " + err.Error() + "\n")
		os.Exit(1)
	}
	// threads created after the renice: each goroutine locks its own OS thread and waits, so
	// the runtime must start new ones
	var started, release sync.WaitGroup
	release.Add(1)
	for range 8 {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			syscall.Gettid()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	print("after")
	release.Done()
}
