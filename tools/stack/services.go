package main

import (
	"context"
	"fmt"
	"strings"
)

// pushServers is how many push-server nodes the local stack runs.
const pushServers = 2

// startServices starts every Herald service in dependency order and waits until each is ready.
func startServices(ctx context.Context, procs *supervisor, in infra, c credentials, o options) (Stack, error) {
	stack := Stack{
		APIKey:         c.apiKey,
		AdminUser:      c.adminUser,
		AdminPassword:  c.adminPassword,
		InternalSecret: c.internalSecret,
		DemoUID:        c.demoUID,
		DemoPassword:   c.demoPassword,
		PushServers:    []PushServer{},
		RedisAddr:      in.redis.Addr,
		ZooKeeper:      in.zk.Addr,
		MySQLDSN:       in.mysql.DSN,
		KafkaBrokers:   in.kafka.Brokers,
	}

	if err := procs.start("push-route", "push-route", map[string]string{
		"HERALD_LISTEN_ADDR":     o.addr(0, false),
		"HERALD_INTERNAL_ADDR":   o.addr(0, true),
		"HERALD_MYSQL_DSN":       in.mysql.DSN,
		"HERALD_REDIS_ADDR":      in.redis.Addr,
		"HERALD_ZOOKEEPER":       in.zk.Addr,
		"HERALD_INTERNAL_SECRET": c.internalSecret,
		"HERALD_LOG_LEVEL":       o.logLevel,
	}); err != nil {
		return stack, err
	}
	if err := procs.waitReady(ctx, "push-route", "http://"+o.addr(0, true)+"/readyz"); err != nil {
		return stack, err
	}
	stack.PushAPIURL = "http://" + o.addr(0, false)

	for i := range pushServers {
		id := fmt.Sprintf("ps-%d", i+1)
		ps := PushServer{ID: id, WSURL: "ws://" + o.addr(2+i, false) + "/ws", InternalURL: "http://" + o.addr(2+i, true)}
		if err := procs.start(id, "push-server", map[string]string{
			"HERALD_NODE_ID":         id,
			"HERALD_LISTEN_ADDR":     o.addr(2+i, false),
			"HERALD_INTERNAL_ADDR":   o.addr(2+i, true),
			"HERALD_REDIS_ADDR":      in.redis.Addr,
			"HERALD_ZOOKEEPER":       in.zk.Addr,
			"HERALD_JWT_PUBLIC_KEYS": c.publicKeyFile,
			"HERALD_INTERNAL_SECRET": c.internalSecret,
			"HERALD_PUSH_ROUTE_URL":  "http://" + o.addr(0, true),
			"HERALD_KAFKA_BROKERS":   strings.Join(in.kafka.Brokers, ","),
			"HERALD_LOG_LEVEL":       o.logLevel,
		}); err != nil {
			return stack, err
		}
		if err := procs.waitReady(ctx, id, ps.InternalURL+"/readyz"); err != nil {
			return stack, err
		}
		stack.PushServers = append(stack.PushServers, ps)
	}

	// auth is ready only once a push-server takes logins, so it starts after them.
	if err := procs.start("auth", "auth", map[string]string{
		"HERALD_LISTEN_ADDR":     o.addr(1, false),
		"HERALD_INTERNAL_ADDR":   o.addr(1, true),
		"HERALD_MYSQL_DSN":       in.mysql.DSN,
		"HERALD_ZOOKEEPER":       in.zk.Addr,
		"HERALD_JWT_PRIVATE_KEY": c.privateKeyFile,
		"HERALD_LOG_LEVEL":       o.logLevel,
	}); err != nil {
		return stack, err
	}
	if err := procs.waitReady(ctx, "auth", "http://"+o.addr(1, true)+"/readyz"); err != nil {
		return stack, err
	}
	stack.AuthURL = "http://" + o.addr(1, false)

	if err := procs.start("admin", "admin", map[string]string{
		"HERALD_LISTEN_ADDR":     o.addr(10, false),
		"HERALD_INTERNAL_ADDR":   o.addr(10, true),
		"HERALD_MYSQL_DSN":       in.mysql.DSN,
		"HERALD_ZOOKEEPER":       in.zk.Addr,
		"HERALD_PUSH_API_URL":    stack.PushAPIURL,
		"HERALD_PUSH_API_KEY":    c.apiKey,
		"HERALD_INTERNAL_SECRET": c.internalSecret,
		"HERALD_KAFKA_BROKERS":   strings.Join(in.kafka.Brokers, ","),
		"HERALD_ADMIN_USER":      c.adminUser,
		"HERALD_ADMIN_PASSWORD":  c.adminPassword,
		"HERALD_LOG_LEVEL":       o.logLevel,
	}); err != nil {
		return stack, err
	}
	if err := procs.waitReady(ctx, "admin", "http://"+o.addr(10, true)+"/readyz"); err != nil {
		return stack, err
	}
	stack.AdminURL = "http://" + o.addr(10, false)
	return stack, nil
}
