package store

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A folder is held by one Store at a time: a second Open, in this process or in another,
// fails at once with ErrLocked and a message naming the folder; after Close it opens again.
func TestOpenRefusesAHeldFolder(t *testing.T) {
	if dir := os.Getenv("SPARECYCLES_STORE_LOCK_CHILD"); dir != "" {
		// the second process: report what Open said
		s, err := Open(Options{Path: dir, MapSize: 1 << 24})
		if err == nil {
			s.Close()
			os.Stdout.WriteString("opened\n")
			return
		}
		os.Stdout.WriteString(err.Error() + "\n")
		return
	}
	dir := t.TempDir()
	s, err := Open(Options{Path: dir, MapSize: 1 << 24})
	if err != nil {
		t.Fatal(err)
	}
	child := func() string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenRefusesAHeldFolder$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SPARECYCLES_STORE_LOCK_CHILD="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("second process: %v\n%s", err, out)
		}
		return string(out)
	}
	cases := []struct {
		name string
		open func() string
	}{
		{"same process", func() string {
			s2, err := Open(Options{Path: dir, MapSize: 1 << 24})
			if err == nil {
				s2.Close()
				return "opened"
			}
			if !errors.Is(err, ErrLocked) {
				t.Errorf("error %v does not match ErrLocked", err)
			}
			return err.Error()
		}},
		{"another process", child},
	}
	for _, tc := range cases {
		got := tc.open()
		if !strings.Contains(got, "data folder "+dir+" is held by another relay") {
			t.Fatalf("%s: second open said %q, want a refusal naming %s", tc.name, got, dir)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := child(); !strings.HasPrefix(got, "opened") {
		t.Fatalf("open after Close in another process: %q", got)
	}
	s, err = Open(Options{Path: dir, MapSize: 1 << 24})
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	s.Close()
}
