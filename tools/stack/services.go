package main

import (
	"context"
)

// startServices starts every Herald service in dependency order and waits until each is ready.
func startServices(ctx context.Context, procs *supervisor, in infra, c credentials, o options) (Stack, error) {
	stack := Stack{
		APIKey:        c.apiKey,
		AdminUser:     c.adminUser,
		AdminPassword: c.adminPassword,
		DemoUID:       c.demoUID,
		DemoPassword:  c.demoPassword,
		PushServers:   []PushServer{},
		RedisAddr:     in.redis.Addr,
		ZooKeeper:     in.zk.Addr,
		MySQLDSN:      in.mysql.DSN,
		KafkaBrokers:  in.kafka.Brokers,
	}

	if err := procs.start("auth", "auth", map[string]string{
		"HERALD_LISTEN_ADDR":     o.authAddr,
		"HERALD_INTERNAL_ADDR":   o.authOps,
		"HERALD_MYSQL_DSN":       in.mysql.DSN,
		"HERALD_ZOOKEEPER":       in.zk.Addr,
		"HERALD_JWT_PRIVATE_KEY": c.privateKeyFile,
		"HERALD_LOG_LEVEL":       o.logLevel,
	}); err != nil {
		return stack, err
	}
	if err := procs.waitReady(ctx, "auth", "http://"+o.authOps+"/readyz"); err != nil {
		return stack, err
	}
	stack.AuthURL = "http://" + o.authAddr
	return stack, nil
}
