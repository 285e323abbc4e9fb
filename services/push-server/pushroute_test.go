package main

import "testing"

func TestPushRouteURLConfig(t *testing.T) {
	base := map[string]string{"HERALD_JWT_PUBLIC_KEYS": "k", "HERALD_INTERNAL_SECRET": "s"}
	for _, tt := range []struct {
		name    string
		args    []string
		env     string
		want    string
		wantErr bool
	}{
		{name: "default is push-route's local internal listener", want: "http://127.0.0.1:9080"},
		{name: "from the environment", env: "https://push-route.internal:9443/", want: "https://push-route.internal:9443/"},
		{name: "flag wins", args: []string{"-push-route-url", "http://10.0.0.7:9080"}, env: "http://other:1", want: "http://10.0.0.7:9080"},
		{name: "not http", args: []string{"-push-route-url", "ftp://x"}, wantErr: true},
		{name: "no host", args: []string{"-push-route-url", "http://"}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HERALD_PUSH_ROUTE_URL": tt.env}
			for k, v := range base {
				env[k] = v
			}
			cfg, err := parseConfig(tt.args, func(k string) string { return env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if err == nil && cfg.PushRouteURL != tt.want {
				t.Fatalf("push-route URL %q, want %q", cfg.PushRouteURL, tt.want)
			}
		})
	}
}

// TestFrameRoomForUpData: data just over -max-up-data must arrive in a frame the node still reads,
// so the device hears payload_too_large rather than close 1009; a -max-frame without that room is
// refused at start.
func TestFrameRoomForUpData(t *testing.T) {
	env := map[string]string{"HERALD_JWT_PUBLIC_KEYS": "k", "HERALD_INTERNAL_SECRET": "s"}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseConfig(nil, getenv)
	if err != nil || cfg.MaxFrame < cfg.MaxUpData+upEnvelope {
		t.Fatalf("defaults: frame %d, data %d, err %v", cfg.MaxFrame, cfg.MaxUpData, err)
	}
	if _, err := parseConfig([]string{"-max-frame", "65536", "-max-up-data", "65536"}, getenv); err == nil {
		t.Fatal("a frame limit equal to the data limit accepted")
	}
}
