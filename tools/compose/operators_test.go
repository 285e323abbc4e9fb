package compose

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/heraldpush/herald/pkg/config"
)

// (o) Prometheus and Grafana run beside the services: Prometheus with deploy/prometheus's rules and a
// scrape configuration whose jobs are prometheus.yml's and whose targets are the compose services'
// internal listeners; Grafana provisioned with the dashboard and a data source that is that
// Prometheus.
func (st *stack) testOperators(t *testing.T) {
	prom, graf := st.c.services["prometheus"], st.c.services["grafana"]
	if prom == nil || graf == nil || prom.image == "" || graf.image == "" {
		t.Fatal("docker-compose.yml needs services prometheus and grafana, each with an image")
	}
	mounts := func(s *service) map[string]string { // container path → host path
		out := map[string]string{}
		for _, v := range s.volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
				out[parts[1]] = filepath.Join(st.root, parts[0])
			}
		}
		return out
	}
	pm := mounts(prom)
	cfgPath, rulesPath := pm["/etc/prometheus/prometheus.yml"], pm["/etc/prometheus/alerts.yml"]
	if cfgPath == "" || rulesPath != filepath.Join(st.root, "deploy", "prometheus", "alerts.yml") {
		t.Fatalf("prometheus mounts %v: want a configuration and deploy/prometheus/alerts.yml in /etc/prometheus", pm)
	}
	type scrape struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string                       `yaml:"job_name"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	read := func(path string) scrape {
		var sc scrape
		b, err := os.ReadFile(path)
		if err == nil {
			err = yaml.Unmarshal(b, &sc)
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return sc
	}
	inCompose, local := read(cfgPath), read(filepath.Join(st.root, "deploy", "prometheus", "prometheus.yml"))
	jobs := func(sc scrape) []string {
		var out []string
		for _, j := range sc.ScrapeConfigs {
			out = append(out, j.JobName)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(jobs(inCompose), jobs(local)) || !slices.Equal(inCompose.RuleFiles, []string{"alerts.yml"}) {
		t.Errorf("compose's scrape jobs %v (rules %v), want prometheus.yml's %v and alerts.yml", jobs(inCompose), inCompose.RuleFiles, jobs(local))
	}
	scraped := map[string]bool{}
	for _, j := range inCompose.ScrapeConfigs {
		for _, sc := range j.StaticConfigs {
			for _, target := range sc.Targets {
				host, port, _ := net.SplitHostPort(target)
				svc := st.c.services[host]
				if svc == nil {
					t.Errorf("job %s scrapes %s: no such compose service", j.JobName, target)
					continue
				}
				_, internal, _ := net.SplitHostPort(svc.env[config.EnvName("internal-addr")])
				if internal != port {
					t.Errorf("job %s scrapes %s, but %s's internal listener is on port %q", j.JobName, target, host, internal)
				}
				if dir := heraldServices[host]; dir != "" && dir != j.JobName {
					t.Errorf("job %s scrapes %s, a %s", j.JobName, target, dir)
				}
				scraped[host] = true
			}
		}
	}
	for name := range heraldServices {
		if !scraped[name] {
			t.Errorf("Prometheus does not scrape %s", name)
		}
	}

	gm := mounts(graf)
	if gm["/etc/grafana/provisioning"] != filepath.Join(st.root, "deploy", "grafana", "provisioning") ||
		gm["/var/lib/grafana/dashboards"] != filepath.Join(st.root, "deploy", "grafana", "dashboards") {
		t.Fatalf("grafana mounts %v: want deploy/grafana/provisioning and deploy/grafana/dashboards", gm)
	}
	var ds struct {
		Datasources []struct{ UID, URL string }
	}
	b, err := os.ReadFile(filepath.Join(st.root, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))
	if err == nil {
		err = yaml.Unmarshal(b, &ds)
	}
	if err != nil || len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("grafana's data source %+v (%v), want http://prometheus:9090", ds, err)
	}
	dash, err := os.ReadFile(filepath.Join(st.root, "deploy", "grafana", "dashboards", "herald.json"))
	if err != nil || !strings.Contains(string(dash), `"uid": "`+ds.Datasources[0].UID+`"`) {
		t.Errorf("the dashboard does not use the provisioned data source %q (%v)", ds.Datasources[0].UID, err)
	}
}
