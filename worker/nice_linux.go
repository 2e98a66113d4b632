package worker

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// renice sets the niceness of every thread of this process. On Linux nice is per thread and a
// new thread takes its creator's, so once every thread that exists is reniced, the threads
// created later (Go's, ONNX Runtime's pools) are too. A thread that ends meanwhile is skipped.
func renice(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("renice: list threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("renice thread %d to %d: %w", tid, nice, err)
		}
	}
	return nil
}

// threadNice reads a thread's niceness from /proc/self/task/<tid>/stat (field 19).
func threadNice(tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return 0, fmt.Errorf("read thread %d stat: %w", tid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return 0, fmt.Errorf("thread %d stat: no command name", tid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 17 {
		return 0, fmt.Errorf("thread %d stat: %d fields", tid, len(f)+2)
	}
	n, err := strconv.Atoi(f[16])
	if err != nil {
		return 0, fmt.Errorf("thread %d stat: nice %q: %w", tid, f[16], err)
	}
	return n, nil
}
