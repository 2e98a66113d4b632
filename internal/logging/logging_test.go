package logging

import (
	"testing"
	"time"
)

func TestDur(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{815230 * time.Microsecond, "815ms"},
		{2*time.Second + 345*time.Millisecond, "2.35s"},
		{90 * time.Second, "1m30s"},
		{1500 * time.Nanosecond, "1.5µs"},
		{0, "0s"},
	}
	for _, tc := range tests {
		if got := Dur(tc.d); got != tc.want {
			t.Errorf("Dur(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
