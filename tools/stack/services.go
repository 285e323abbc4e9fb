package main

import (
	"context"
	"strings"
)

// instance is one process of a service: its name in the supervisor, logs and stack.json's pids, and
// the offset of its ports from the base port (see options.addr).
type instance struct {
	name   string
	offset int
}

// layout is which instances of each service the stack runs.
type layout struct {
	pushRoutes, pushServers, auths []instance
}

// newLayout is the plain stack's layout (one push-route, two push-servers, one auth), or the
// cluster-shaped one's, which adds ps-3, a second push-route and a second auth on offsets the plain
// layout leaves free, so the plain stack's ports mean the same in both.
func newLayout(cluster bool) layout {
	if !cluster {
		return layout{
			pushRoutes:  []instance{{"push-route", 0}},
			pushServers: []instance{{"ps-1", 2}, {"ps-2", 3}},
			auths:       []instance{{"auth", 1}},
		}
	}
	return layout{
		pushRoutes:  []instance{{"push-route-1", 0}, {"push-route-2", 5}},
		pushServers: []instance{{"ps-1", 2}, {"ps-2", 3}, {"ps-3", 4}},
		auths:       []instance{{"auth-1", 1}, {"auth-2", 6}},
	}
}

// startServices starts every Herald service in dependency order and waits until each is ready.
func startServices(ctx context.Context, procs *supervisor, in infra, c credentials, o options) (Stack, error) {
	l := newLayout(o.cluster)
	redisAddrs := in.redisAddrs()
	stack := Stack{
		APIKey:         c.apiKey,
		AdminUser:      c.adminUser,
		AdminPassword:  c.adminPassword,
		InternalSecret: c.internalSecret,
		DemoUID:        c.demoUID,
		DemoPassword:   c.demoPassword,
		PushServers:    []PushServer{},
		RedisAddr:      redisAddrs[0],
		RedisAddrs:     redisAddrs,
		RedisCluster:   in.redisCluster != nil,
		ZooKeeper:      in.zooKeeper(),
		MySQLDSN:       in.mysql.DSN,
		KafkaBrokers:   in.kafka.Brokers,
	}
	brokers := strings.Join(in.kafka.Brokers, ",")

	for _, pr := range l.pushRoutes {
		if err := procs.start(pr.name, "push-route", in.withRedis(map[string]string{
			"HERALD_LISTEN_ADDR":     o.addr(pr.offset, false),
			"HERALD_INTERNAL_ADDR":   o.addr(pr.offset, true),
			"HERALD_MYSQL_DSN":       in.mysql.DSN,
			"HERALD_ZOOKEEPER":       in.zooKeeper(),
			"HERALD_INTERNAL_SECRET": c.internalSecret,
			// Rooms keep their last 100 messages, so members that come back get what they missed.
			"HERALD_ROOM_HISTORY": "100",
			"HERALD_LOG_LEVEL":    o.logLevel,
		})); err != nil {
			return stack, err
		}
		if err := procs.waitReady(ctx, pr.name, "http://"+o.addr(pr.offset, true)+"/readyz"); err != nil {
			return stack, err
		}
		stack.PushAPIURLs = append(stack.PushAPIURLs, "http://"+o.addr(pr.offset, false))
	}
	stack.PushAPIURL = stack.PushAPIURLs[0]

	for i, ps := range l.pushServers {
		// The push-servers are spread over the push-routes, as a load balancer in front of them
		// would spread their calls.
		route := l.pushRoutes[i%len(l.pushRoutes)]
		node := PushServer{ID: ps.name, WSURL: "ws://" + o.addr(ps.offset, false) + "/ws", InternalURL: "http://" + o.addr(ps.offset, true)}
		if err := procs.start(ps.name, "push-server", in.withRedis(map[string]string{
			"HERALD_NODE_ID":         ps.name,
			"HERALD_LISTEN_ADDR":     o.addr(ps.offset, false),
			"HERALD_INTERNAL_ADDR":   o.addr(ps.offset, true),
			"HERALD_ZOOKEEPER":       in.zooKeeper(),
			"HERALD_JWT_PUBLIC_KEYS": c.publicKeyFile,
			"HERALD_INTERNAL_SECRET": c.internalSecret,
			"HERALD_PUSH_ROUTE_URL":  "http://" + o.addr(route.offset, true),
			"HERALD_KAFKA_BROKERS":   brokers,
			// Browsers may connect from the demo web app's page only (any transport).
			"HERALD_ALLOWED_ORIGINS": "http://" + o.demoAddr(),
			// A development stack: any connection may join any room (production keeps the token's claim).
			"HERALD_ROOM_POLICY": "open",
			"HERALD_LOG_LEVEL":   o.logLevel,
		})); err != nil {
			return stack, err
		}
		if err := procs.waitReady(ctx, ps.name, node.InternalURL+"/readyz"); err != nil {
			return stack, err
		}
		stack.PushServers = append(stack.PushServers, node)
	}

	// auth is ready only once a push-server takes logins, so it starts after them.
	for _, a := range l.auths {
		if err := procs.start(a.name, "auth", map[string]string{
			"HERALD_LISTEN_ADDR":     o.addr(a.offset, false),
			"HERALD_INTERNAL_ADDR":   o.addr(a.offset, true),
			"HERALD_MYSQL_DSN":       in.mysql.DSN,
			"HERALD_ZOOKEEPER":       in.zooKeeper(),
			"HERALD_JWT_PRIVATE_KEY": c.privateKeyFile,
			// The demo web app's page logs in from its own origin.
			"HERALD_ALLOWED_ORIGINS": "http://" + o.demoAddr(),
			"HERALD_LOG_LEVEL":       o.logLevel,
		}); err != nil {
			return stack, err
		}
		if err := procs.waitReady(ctx, a.name, "http://"+o.addr(a.offset, true)+"/readyz"); err != nil {
			return stack, err
		}
		stack.AuthURLs = append(stack.AuthURLs, "http://"+o.addr(a.offset, false))
	}
	stack.AuthURL = stack.AuthURLs[0]

	if err := procs.start("admin", "admin", map[string]string{
		"HERALD_LISTEN_ADDR":     o.addr(10, false),
		"HERALD_INTERNAL_ADDR":   o.addr(10, true),
		"HERALD_MYSQL_DSN":       in.mysql.DSN,
		"HERALD_ZOOKEEPER":       in.zooKeeper(),
		"HERALD_PUSH_API_URL":    stack.PushAPIURL,
		"HERALD_PUSH_API_KEY":    c.apiKey,
		"HERALD_INTERNAL_SECRET": c.internalSecret,
		"HERALD_KAFKA_BROKERS":   brokers,
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
