package config

import (
	"errors"
	"flag"
	"io"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantAddr string
		wantTTL  time.Duration
		wantErr  bool
	}{
		{name: "defaults", wantAddr: "127.0.0.1:1", wantTTL: time.Hour},
		{name: "env", env: map[string]string{"HERALD_LISTEN_ADDR": ":2", "HERALD_TOKEN_TTL": "2m"}, wantAddr: ":2", wantTTL: 2 * time.Minute},
		{name: "flag wins over env", args: []string{"-listen-addr", ":3"}, env: map[string]string{"HERALD_LISTEN_ADDR": ":2"}, wantAddr: ":3", wantTTL: time.Hour},
		{name: "empty env ignored", env: map[string]string{"HERALD_LISTEN_ADDR": ""}, wantAddr: "127.0.0.1:1", wantTTL: time.Hour},
		{name: "bad env value", env: map[string]string{"HERALD_TOKEN_TTL": "soon"}, wantErr: true},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			addr := fs.String("listen-addr", "127.0.0.1:1", "")
			ttl := fs.Duration("token-ttl", time.Hour, "")
			err := Parse(fs, tt.args, func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse error = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if *addr != tt.wantAddr || *ttl != tt.wantTTL {
				t.Fatalf("got addr %q ttl %v, want %q %v", *addr, *ttl, tt.wantAddr, tt.wantTTL)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("redis-addr", "", "")
	if err := Parse(fs, []string{"-version"}, func(string) string { return "" }); !errors.Is(err, ErrVersion) {
		t.Fatalf("-version: %v, want ErrVersion", err)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	if err := Parse(fs, nil, func(k string) string { return map[string]string{"HERALD_VERSION": "1"}[k] }); err != nil {
		t.Fatalf("HERALD_VERSION in the environment is not a request: %v", err)
	}
}
