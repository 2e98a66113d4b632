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

func TestFineDur(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{52214567 * time.Nanosecond, "52.21ms"},
		{637123 * time.Nanosecond, "640µs"},
		{2*time.Second + 345*time.Millisecond, "2.35s"},
		{4 * time.Microsecond, "0s"},
		{0, "0s"},
	}
	for _, tc := range tests {
		if got := FineDur(tc.d); got != tc.want {
			t.Errorf("FineDur(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
