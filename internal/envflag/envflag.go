// Package envflag gives every flag an environment-variable twin: --relay-url is also
// PREFIX_RELAY_URL. A flag given on the command line beats the environment, which beats the
// flag's default. Usage lines name the variable.
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Name returns the environment variable that stands for flag name under prefix:
// dashes become underscores and letters are upper-cased ("data-dir" -> "PREFIX_DATA_DIR").
func Name(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs, then fills each flag not set on the command line from its
// environment twin. Every flag's usage gains "(env NAME)" so --help documents both.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " (env " + Name(prefix, f.Name) + ")"
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := Name(prefix, f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("env %s: %w", env, e)
			}
		}
	})
	return err
}
