// Package envflag gives every flag an environment-variable twin under its binary's prefix:
// the worker's --relay-url is also SPARECYCLES_WORKER_RELAY_URL. A flag given on the command
// line beats the environment, which beats the flag's default. Usage lines name the variable.
//
// Each binary has its own prefix so that one shell can hold the worker's and the client's
// wallets (SPARECYCLES_WORKER_NWC, SPARECYCLES_CLIENT_NWC) without one silently taking the
// other's. The names every binary once shared (SPARECYCLES_NWC) are no longer read; Parse
// reports one that is set where the new name is not, so the binary can say which to set.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Shared is the prefix every binary's variables start with, and the whole prefix of the names
// they all shared before each had its own.
const Shared = "SPARECYCLES"

// stillShared are shared names that something else still reads, so they draw no warning:
// the ONNX Runtime library, which worker/onnx and the scripts find by it.
var stillShared = []string{"SPARECYCLES_ONNXRUNTIME_LIB"}

// Prefix is the prefix of binary's variables: "worker" -> "SPARECYCLES_WORKER".
func Prefix(binary string) string {
	return Shared + "_" + strings.ToUpper(strings.ReplaceAll(binary, "-", "_"))
}

// Name returns the environment variable that stands for flag name under prefix:
// dashes become underscores and letters are upper-cased ("data-dir" -> "PREFIX_DATA_DIR").
func Name(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Stale is a shared variable that is set but no longer read, and the variable to set instead.
type Stale struct{ Old, New string }

// String is the warning to print.
func (s Stale) String() string {
	return fmt.Sprintf("%s is no longer read: set %s instead", s.Old, s.New)
}

// Parsed says where the flags' values came from.
type Parsed struct {
	origin map[string]string // flag name -> "--name" or the variable that set it
	// Stale lists the shared variables set for flags that neither the command line nor the
	// binary's own variable set.
	Stale []Stale
}

// Name is how to call flag to the user: the variable that set it, else "--flag".
func (p *Parsed) Name(flag string) string {
	if p != nil {
		if o, ok := p.origin[flag]; ok {
			return o
		}
	}
	return "--" + flag
}

// Set reports whether flag was set, on the command line or by its variable.
func (p *Parsed) Set(flag string) bool {
	if p == nil {
		return false
	}
	_, ok := p.origin[flag]
	return ok
}

// Explain renames, in err's message, each "--flag" whose value came from a variable to that
// variable, so that an error about a value names where the user gave it. errors.Is and
// errors.As still see err.
func (p *Parsed) Explain(err error) error {
	if err == nil || p == nil {
		return err
	}
	msg := err.Error()
	out := msg
	for flag, origin := range p.origin {
		if !strings.HasPrefix(origin, "--") {
			out = replaceFlag(out, "--"+flag, origin)
		}
	}
	if out == msg {
		return err
	}
	return &explained{msg: out, err: err}
}

// replaceFlag replaces the whole-word occurrences of flag in s: "--nwc" but not "--nwc-file".
func replaceFlag(s, flag, with string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, flag)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(flag)
		whole := end == len(s) || !isFlagByte(s[end])
		if i > 0 && (isFlagByte(s[i-1])) {
			whole = false
		}
		b.WriteString(s[:i])
		if whole {
			b.WriteString(with)
		} else {
			b.WriteString(flag)
		}
		s = s[end:]
	}
}

func isFlagByte(c byte) bool {
	return c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// Parse parses args into fs, then fills each flag not set on the command line from its
// environment twin under prefix. Every flag's usage gains "(env NAME)" so --help documents
// both. When prefix is a binary's (Prefix), a flag set by neither and whose shared variable
// (SPARECYCLES_NAME) is set lands in Parsed.Stale. An error about a variable's value names
// the variable.
func Parse(fs *flag.FlagSet, prefix string, args []string) (*Parsed, error) {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " (env " + Name(prefix, f.Name) + ")"
	})
	p := &Parsed{origin: map[string]string{}}
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	fs.Visit(func(f *flag.Flag) { p.origin[f.Name] = "--" + f.Name })
	legacy := strings.HasPrefix(prefix, Shared+"_")
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if p.Set(f.Name) {
			return
		}
		env := Name(prefix, f.Name)
		if v, ok := os.LookupEnv(env); ok {
			p.origin[f.Name] = env
			if e := fs.Set(f.Name, v); e != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, e))
			}
			return
		}
		old := Name(Shared, f.Name)
		if _, ok := os.LookupEnv(old); ok && legacy && !slices.Contains(stillShared, old) {
			p.Stale = append(p.Stale, Stale{Old: old, New: env})
		}
	})
	return p, errors.Join(errs...)
}
