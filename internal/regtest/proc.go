package regtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// proc is one child process whose stdout and stderr go to a log file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and err is set
	err  error
}

// startProc starts bin and registers a cleanup that kills it and waits for it to exit. If the
// test has failed by then, the cleanup logs the tail of the process's output first, since the
// log file goes away with t.TempDir().
func startProc(t testing.TB, name, logPath, bin string, args ...string) (*proc, error) {
	t.Helper()
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("regtest: start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("regtest: start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output (last lines of %s):\n%s", name, logPath, p.tail(40))
		}
		p.cmd.Process.Kill() // an error here means it has already exited
		<-p.done
	})
	return p, nil
}

// exited reports why the process stopped, or "" while it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("regtest: %s exited (%v); last lines of %s:\n%s", p.name, p.err, p.log, p.tail(20))
	default:
		return nil
	}
}

// tail returns the last n lines of the process's output.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n == 0 {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}
