package regtest

import "syscall"

// childAttr asks Linux to kill a child when the test binary dies without running its cleanups
// (a panic in another test, a timeout), so no btcd or lnd outlives the run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
