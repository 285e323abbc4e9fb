package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// prometheusAddr is where -prometheus serves (9092 by default: 8092 is left for a public listener).
func (o options) prometheusAddr() string { return o.addr(12, true) }

// startPrometheus runs Debian's prometheus beside the stack (-prometheus): it scrapes every service's
// internal listener every 2 s with the job names deploy/prometheus uses, evaluates its alert rules,
// and keeps its data under the stack's directory until the stack stops. It returns its URL.
func startPrometheus(ctx context.Context, logger *slog.Logger, o options, st Stack) (string, error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return "", fmt.Errorf("-prometheus needs Debian's prometheus package (scripts/install-deps.sh prometheus): %w", err)
	}
	rules, err := filepath.Abs(o.prometheusRules)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(rules); err != nil {
		return "", fmt.Errorf("alert rules: %w (run from the repository root, or set -prometheus-rules)", err)
	}
	dir := filepath.Join(o.dir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(scrapeConfig(st, rules)), 0o644); err != nil {
		return "", err
	}
	logFile, err := os.Create(filepath.Join(o.dir, "logs", "prometheus.log"))
	if err != nil {
		return "", err
	}
	addr := o.prometheusAddr()
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1d")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return "", err
	}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		if ctx.Err() == nil {
			logger.Error("prometheus exited", "err", err)
		}
	}()
	u := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(u + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("prometheus not ready at %s within 30s (see %s)", u, logFile.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrapeConfig is deploy/prometheus/prometheus.yml's layout with this stack's targets.
func scrapeConfig(st Stack, rules string) string {
	jobs := map[string][]string{
		"push-route": internalOf(st.PushAPIURLs...),
		"auth":       internalOf(st.AuthURLs...),
		"admin":      internalOf(st.AdminURL),
	}
	for _, ps := range st.PushServers {
		jobs["push-server"] = append(jobs["push-server"], strings.TrimPrefix(ps.InternalURL, "http://"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nrule_files:\n  - %q\nscrape_configs:\n", rules)
	for _, job := range []string{"push-route", "auth", "push-server", "admin"} {
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n      - targets: [", job)
		for i, t := range jobs[job] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", t)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// internalOf turns public URLs into their services' internal listeners, 1000 ports above (the
// stack's layout).
func internalOf(public ...string) []string {
	var out []string
	for _, p := range public {
		u, err := url.Parse(p)
		if err != nil || u.Port() == "" {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		out = append(out, u.Hostname()+":"+strconv.Itoa(port+1000))
	}
	return out
}
