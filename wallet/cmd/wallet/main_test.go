package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantURI bool
		wantErr error  // nil with !wantURI: any error
		errText string // in the error, when set
		stderr  string // in stderr, when set
	}{
		{name: "connect", args: []string{"connect", "--relay", "ws://127.0.0.1:7447", "--name", "worker", "--budget", "100"}, wantURI: true},
		{name: "connect funded, relays from env", args: []string{"connect", "--name", "buyer", "--fund", "1000"},
			env: map[string]string{"SPARECYCLES_WALLET_RELAY": "ws://a.example,ws://b.example"}, wantURI: true},
		{name: "shared name ignored, with a warning", args: []string{"connect", "--name", "buyer"},
			env:     map[string]string{"SPARECYCLES_RELAY": "ws://a.example"},
			errText: "--relay", stderr: "SPARECYCLES_RELAY is no longer read: set SPARECYCLES_WALLET_RELAY instead"},
		{name: "error names the variable that gave the value", args: []string{"connect", "--relay", "ws://x.example"},
			env: map[string]string{"SPARECYCLES_WALLET_NAME": ""}, errText: "SPARECYCLES_WALLET_NAME must be 1 to 64 characters"},
		{name: "fund on lnd", args: []string{"connect", "--relay", "ws://x.example", "--name", "n", "--fund", "5", "--backend", "lnd"}, wantErr: wallet.ErrFundNeedsLedger},
		{name: "connect without name", args: []string{"connect", "--relay", "ws://x.example"}},
		{name: "serve without relay", args: []string{"serve"}},
		{name: "serve lnd without macaroon", args: []string{"serve", "--relay", "ws://x.example", "--backend", "lnd"}},
		{name: "no subcommand", args: nil},
		{name: "unknown subcommand", args: []string{"pay"}},
		{name: "help", args: []string{"connect", "-h"}, wantErr: flag.ErrHelp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SPARECYCLES_WALLET_DATA", t.TempDir())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			if !tc.wantURI {
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.errText) || !strings.Contains(stderr.String(), tc.stderr) {
					t.Fatalf("err %q, stderr %q; want %q and %q in them", err, stderr.String(), tc.errText, tc.stderr)
				}
				if stdout.Len() != 0 {
					t.Errorf("stdout %q, want nothing", stdout.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := stdout.String()
			uri, err := nip47.ParseURI(out)
			if err != nil || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("stdout %q is not one URI line: %v", out, err)
			}
			if len(uri.Relays) == 0 || uri.ClientPubKey() == "" {
				t.Errorf("URI %s lacks relays or a client key", uri)
			}
		})
	}
}
