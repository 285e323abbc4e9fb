// Package stackfile is the layout of .herald/stack.json, which the local stack (tools/stack) writes
// and the tools that drive a running stack (tools/loadgen, tools/chaos) read.
package stackfile

import (
	"encoding/json"
	"fmt"
	"os"
)

// Stack is what .herald/stack.json holds (DESIGN.md, "Running it"): the public face of a running
// local stack.
type Stack struct {
	AuthURL       string `json:"auth_url"`
	PushAPIURL    string `json:"push_api_url"`
	AdminURL      string `json:"admin_url"`
	APIKey        string `json:"api_key"`
	AdminUser     string `json:"admin_user"`
	AdminPassword string `json:"admin_password"`
	// InternalSecret guards the push-servers' internal API (an extension of the DESIGN.md fields).
	InternalSecret string       `json:"internal_secret"`
	DemoUID        string       `json:"demo_uid"`
	DemoPassword   string       `json:"demo_password"`
	PushServers    []PushServer `json:"push_servers"`
	RedisAddr      string       `json:"redis_addr"`
	ZooKeeper      string       `json:"zookeeper"`
	MySQLDSN       string       `json:"mysql_dsn"`
	KafkaBrokers   []string     `json:"kafka_brokers"`
	// PIDs names every process of the stack (services, servers, and "stack" itself, which holds the
	// Kafka-protocol broker), so tools can add up what the whole stack spends.
	PIDs map[string]int `json:"pids"`
	// ControlURL is the stack's own control API (POST /servers/{name}/stop and /start), which
	// tools/chaos uses to take a dependency down and bring it back.
	ControlURL string `json:"control_url"`
}

// PushServer is one push-server node of the stack.
type PushServer struct {
	ID          string `json:"id"`
	WSURL       string `json:"ws_url"`
	InternalURL string `json:"internal_url"`
}

// Read loads the stack description at path.
func Read(path string) (Stack, error) {
	var st Stack
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read the stack description (is make run up?): %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}
