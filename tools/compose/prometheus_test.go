package compose

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPrometheusRules checks deploy/prometheus with Prometheus's own promtool (Debian's prometheus
// package, which make test installs): the scrape configuration and the rules parse, and every alert's
// unit test in alerts_test.yml passes. It also holds every herald_* metric an expression names to one
// a service registers, so a misspelt metric fails here rather than never firing.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: scripts/install-deps.sh prometheus installs it (make test does)")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "deploy", "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	known := registeredMetrics(t, filepath.Join("..", ".."))
	for _, name := range regexp.MustCompile(`\bherald_[a-z_]+`).FindAllString(string(rules), -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			t.Errorf("alerts.yml names %s, which no service registers", name)
		}
	}
}

// registeredMetrics collects the herald_* names in the services' and packages' Go sources (not tests).
func registeredMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	name := regexp.MustCompile(`"(herald_[a-z_]+)"`)
	for _, top := range []string{"services", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range name.FindAllStringSubmatch(string(b), -1) {
				known[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return known
}
