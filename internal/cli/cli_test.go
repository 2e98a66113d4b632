package cli

import (
	"errors"
	"testing"
)

func TestLine(t *testing.T) {
	tests := []struct{ name, err, want string }{
		{"plain", "no relay", "worker: no relay"},
		{"package prefix said once", "worker: bad model manifest", "worker: bad model manifest"},
		{"nested", "balance: client: no NWC wallet configured", "client: balance: no NWC wallet configured"},
		{"name inside a word stays", "worker config: --nwc: bad", "worker: worker config: --nwc: bad"},
	}
	for _, tc := range tests {
		bin := "worker"
		if tc.name == "nested" {
			bin = "client"
		}
		if got := Line(bin, errors.New(tc.err)); got != tc.want {
			t.Errorf("%s: Line = %q, want %q", tc.name, got, tc.want)
		}
	}
}
