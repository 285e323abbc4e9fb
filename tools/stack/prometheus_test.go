package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

// Expressions that are empty while nothing is wrong: the counters behind them get their first series
// with the first failure. Their metric names are still held to registered ones by tools/compose's
// TestPrometheusRules.
var quietWhenHealthy = map[string]string{
	"Slow consumers closed (1013) /s":                                         "no client is slow",
	"Calls to nodes failing /s":                                               "every call to a node succeeds",
	`herald_http_requests_total{job="push-route",route="push",status=~"5.."}`: "no push fails",
	`herald_push_node_errors_total`:                                           "every call to a node succeeds",
	`herald_upstream_messages_total{outcome="failed"}`:                        "Kafka stores every message",
	`herald_ws_closed_total{code="1013",instance=~".*"}`:                      "no client is slow",
	`herald_push_node_errors_total{node=~".*"}`:                               "every call to a node succeeds",
}

// TestPrometheusSeesTheStack runs the stack with -prometheus (a real Prometheus, Debian's) while
// traffic of every kind runs, then asks Prometheus for every expression of the Grafana dashboard and
// every series the alert rules select: each must return series, so a misspelt metric, a wrong label or
// a job name that does not match fails here.
func TestPrometheusSeesTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack and Prometheus")
	}
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus is not installed: scripts/install-deps.sh prometheus installs it (make test does)")
	}
	st := startStack(t, testenv.FreePortRange(t, 20), "-prometheus", "-prometheus-rules", "../../deploy/prometheus/alerts.yml").st
	if st.PrometheusURL == "" {
		t.Fatal("stack.json has no prometheus_url")
	}
	traffic(t, st)

	exprs := map[string]string{} // what must return series → where it comes from
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile("../../deploy/grafana/dashboards/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$instance", ".*", "$node", ".*")
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			if _, quiet := quietWhenHealthy[p.Title]; !quiet {
				exprs[vars.Replace(target.Expr)] = "panel " + p.Title
			}
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	b, err = os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	// An alert's expression is empty while it does not fire; the series it selects must exist.
	selector := regexp.MustCompile(`\b(?:herald|process|up)[a-z_]*(?:\{[^}]*\})?`)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, sel := range selector.FindAllString(r.Expr, -1) {
				if _, quiet := quietWhenHealthy[sel]; !quiet {
					exprs[sel] = "alert " + r.Alert
				}
			}
		}
	}

	deadline := time.Now().Add(90 * time.Second)
	for {
		var missing []string
		for expr, from := range exprs {
			if n, err := seriesOf(st.PrometheusURL, expr); err != nil || n == 0 {
				missing = append(missing, fmt.Sprintf("%s: %s (%d series, %v)", from, expr, n, err))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d expressions return no series:\n%s", len(missing), len(exprs), strings.Join(missing, "\n"))
		}
		time.Sleep(2 * time.Second)
	}
}

// seriesOf runs an instant query and returns how many series it answered.
func seriesOf(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string
		Error  string
		Data   struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("%s", out.Error)
	}
	return len(out.Data.Result), nil
}

// traffic makes every kind of event the dashboard shows: connects, a refused upgrade, pushes, a
// refused push, a broadcast, an upstream message (archived), a room and its messages, a close.
func traffic(t *testing.T, st Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(uid string) *client.Conn {
		sess, err := client.MintToken(ctx, st.AuthURL, st.APIKey, uid, "d")
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, client.Config{Token: sess.Token, WSURL: sess.WSURL, UID: uid, Device: "d", AutoAck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dev := dial("prom-dev")
	push := apiclient.NewPushClient(http.DefaultClient, st.PushAPIURL, st.APIKey)
	for i := range 5 {
		if _, err := push.Push(ctx, wire.PushRequest{UIDs: []string{"prom-dev"}, Data: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		<-dev.Pushes()
	}
	if _, err := push.Push(ctx, wire.PushRequest{Data: json.RawMessage(`1`)}); err == nil {
		t.Fatal("a push to nobody was accepted")
	}
	if _, err := push.Broadcast(ctx, json.RawMessage(`"all"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.SendRef(ctx, client.NewRef(), json.RawMessage(`{"up":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := dev.Join(ctx, "prom-room"); err != nil {
		t.Fatal(err)
	}
	if _, err := push.RoomPush(ctx, "prom-room", wire.RoomPushRequest{Data: json.RawMessage(`"room"`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Dial(ctx, client.Config{Token: "not-a-token", WSURL: st.PushServers[0].WSURL}); err == nil {
		t.Fatal("a bad token was admitted")
	}
	dial("prom-leaving").Close()
	for _, ps := range st.PushServers { // every node has a connection, so each exports every series
		c, err := client.Dial(ctx, client.Config{Token: mustToken(t, st, "prom-"+ps.ID), WSURL: ps.WSURL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
}

func mustToken(t *testing.T, st Stack, uid string) string {
	t.Helper()
	sess, err := client.MintToken(context.Background(), st.AuthURL, st.APIKey, uid, "d")
	if err != nil {
		t.Fatal(err)
	}
	return sess.Token
}
