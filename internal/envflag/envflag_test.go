package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestParsePriority(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		origin  string // Parsed.Name("data-dir")
		wantErr string
	}{
		{name: "default", want: "def", origin: "--data-dir"},
		{name: "env beats default", env: map[string]string{"SC_DATA_DIR": "env"}, want: "env", origin: "SC_DATA_DIR"},
		{name: "flag beats env", args: []string{"--data-dir", "flag"}, env: map[string]string{"SC_DATA_DIR": "env"}, want: "flag", origin: "--data-dir"},
		{name: "bad env value names the variable", env: map[string]string{"SC_COUNT": "x"}, want: "def", wantErr: "SC_COUNT: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			dir := fs.String("data-dir", "def", "where data lives")
			fs.Int("count", 1, "how many")
			p, err := Parse(fs, "SC", tc.args)
			if (err != nil) != (tc.wantErr != "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr != "" {
				return
			}
			if *dir != tc.want || p.Name("data-dir") != tc.origin {
				t.Fatalf("data-dir = %q from %s, want %q from %s", *dir, p.Name("data-dir"), tc.want, tc.origin)
			}
			if u := fs.Lookup("data-dir").Usage; !strings.Contains(u, "(env SC_DATA_DIR)") {
				t.Fatalf("usage %q does not name the env var", u)
			}
		})
	}
}

// The names every binary shared are not read; a set one is reported with the name to use,
// unless the binary's own variable or the flag is set, or something else still reads it.
func TestStale(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		nwc   string
		stale []Stale
	}{
		{name: "nothing set"},
		{name: "shared name ignored and reported", env: map[string]string{"SPARECYCLES_NWC": "old"},
			stale: []Stale{{Old: "SPARECYCLES_NWC", New: "SPARECYCLES_WORKER_NWC"}}},
		{name: "own name set", env: map[string]string{"SPARECYCLES_NWC": "old", "SPARECYCLES_WORKER_NWC": "new"}, nwc: "new"},
		{name: "flag set", args: []string{"--nwc", "flag"}, env: map[string]string{"SPARECYCLES_NWC": "old"}, nwc: "flag"},
		{name: "still shared", env: map[string]string{"SPARECYCLES_ONNXRUNTIME_LIB": "/lib.so"}},
		{name: "another binary's name is not ours", env: map[string]string{"SPARECYCLES_CLIENT_NWC": "client"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			nwc := fs.String("nwc", "", "wallet")
			fs.String("onnxruntime-lib", "", "library")
			p, err := Parse(fs, Prefix("worker"), tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if *nwc != tc.nwc || fmt.Sprint(p.Stale) != fmt.Sprint(tc.stale) {
				t.Fatalf("nwc %q, stale %v; want %q, %v", *nwc, p.Stale, tc.nwc, tc.stale)
			}
		})
	}
}

var errBase = errors.New("base")

func TestExplain(t *testing.T) {
	t.Setenv("SC_NWC", "x")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("nwc", "", "")
	fs.String("nwc-file", "", "")
	fs.String("data", "", "")
	p, err := Parse(fs, "SC", []string{"--data", "d"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"config: --nwc: bad", "config: SC_NWC: bad"},
		{"give --nwc-file or --nwc", "give --nwc-file or SC_NWC"},
		{"--data is empty", "--data is empty"},
		{"--nwc", "SC_NWC"},
		{"x--nwc", "x--nwc"},
	}
	for _, tc := range tests {
		got := p.Explain(fmt.Errorf("%s: %w", tc.in, errBase))
		if got.Error() != tc.want+": base" || !errors.Is(got, errBase) {
			t.Errorf("Explain(%q) = %q (Is base: %v), want %q", tc.in, got, errors.Is(got, errBase), tc.want)
		}
	}
	if (*Parsed)(nil).Explain(errBase) != errBase || p.Explain(nil) != nil {
		t.Error("Explain of nil")
	}
}

// FuzzReplaceFlag: replacing a flag by itself changes nothing, and a replaced message no
// longer holds the flag as a whole word.
func FuzzReplaceFlag(f *testing.F) {
	f.Add("config: --nwc: bad --nwc-file", "--nwc")
	f.Add("----nwc--nwc", "--nwc")
	f.Fuzz(func(t *testing.T, s, flag string) {
		if !strings.HasPrefix(flag, "--") || len(flag) < 3 || strings.ContainsAny(flag[2:], "-_") {
			return
		}
		if got := replaceFlag(s, flag, flag); got != s {
			t.Fatalf("replaceFlag(%q, %q, itself) = %q", s, flag, got)
		}
		out := replaceFlag(s, flag, "ENV")
		if replaceFlag(out, flag, "ENV") != out {
			t.Fatalf("replaceFlag(%q, %q) = %q still holds the flag", s, flag, out)
		}
	})
}
