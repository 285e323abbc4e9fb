// Package config reads a service's settings from command-line flags and HERALD_* environment
// variables, so every Herald binary is configured the same way.
package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// ErrVersion is what Parse returns when -version was given: the caller prints its version and exits.
var ErrVersion = errors.New("version requested")

// EnvPrefix starts the name of every environment variable Herald reads.
const EnvPrefix = "HERALD_"

// EnvName is the environment variable that sets the flag called name: "redis-addr" → "HERALD_REDIS_ADDR".
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs. A flag not given on the command line takes its value from its environment
// variable (see EnvName) when that is set and not empty, so flags win over the environment and the
// environment over defaults. getenv is passed in (os.Getenv in main) so tests need not touch the process
// environment.
//
// Every binary also takes -version, for which Parse returns ErrVersion.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		return ErrVersion
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		v := getenv(EnvName(f.Name))
		if v == "" {
			return
		}
		if setErr := fs.Set(f.Name, v); setErr != nil {
			err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, setErr)
		}
	})
	return err
}
