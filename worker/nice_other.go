//go:build !linux

package worker

// renice is Linux only (per-thread nice read from /proc); elsewhere --nice is not applied.
func renice(int) error { return nil }
