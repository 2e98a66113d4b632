//go:build !linux

package regtest

import "syscall"

// childAttr has nothing to add outside Linux: there, only t.Cleanup stops the children.
func childAttr() *syscall.SysProcAttr { return nil }
