package envflag

import (
	"flag"
	"strings"
	"testing"
)

func TestParsePriority(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{name: "default", want: "def"},
		{name: "env beats default", env: map[string]string{"SC_DATA_DIR": "env"}, want: "env"},
		{name: "flag beats env", args: []string{"--data-dir", "flag"}, env: map[string]string{"SC_DATA_DIR": "env"}, want: "flag"},
		{name: "bad env value", env: map[string]string{"SC_COUNT": "x"}, want: "def", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			dir := fs.String("data-dir", "def", "where data lives")
			fs.Int("count", 1, "how many")
			err := Parse(fs, "SC", tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && *dir != tc.want {
				t.Fatalf("data-dir = %q, want %q", *dir, tc.want)
			}
			if u := fs.Lookup("data-dir").Usage; !strings.Contains(u, "(env SC_DATA_DIR)") {
				t.Fatalf("usage %q does not name the env var", u)
			}
		})
	}
}
