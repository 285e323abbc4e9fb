package testenv

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaPartitions is the partition count of seeded and auto-created topics.
const KafkaPartitions = 4

// Kafka is an in-process Kafka-protocol cluster (kfake) with one or more brokers on loopback ports.
// It keeps everything in memory: Restart brings up an empty cluster on the same ports with the seeded
// topics created again, so records, committed offsets and groups are lost.
type Kafka struct {
	Brokers []string // every broker's 127.0.0.1:port

	topics []string
	ports  []int

	mu      sync.Mutex
	cluster *kfake.Cluster // nil when stopped
}

// StartKafka starts one broker with the given topics created. Topics that a client asks to be
// auto-created are allowed too, as with a real broker's default configuration.
func StartKafka(ctx context.Context, topics ...string) (*Kafka, error) {
	return StartKafkaCluster(ctx, 1, topics...)
}

// StartKafkaCluster is StartKafka with several brokers. Partition leaders are spread over them, and
// every topic is replicated on up to three (kfake's default replication factor), so clients meet
// what a production cluster shows them: several brokers to bootstrap from, leaders to find, and a
// group coordinator that is not the first broker.
func StartKafkaCluster(ctx context.Context, brokers int, topics ...string) (*Kafka, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if brokers < 1 {
		return nil, fmt.Errorf("kafka: %d brokers", brokers)
	}
	k := &Kafka{topics: slices.Clone(topics)}
	// Port 0 lets each listener pick the port itself, so the first start cannot lose a race for it.
	c, err := k.newCluster(make([]int, brokers))
	if err != nil {
		return nil, err
	}
	k.cluster = c
	for _, addr := range c.ListenAddrs() {
		_, port, _ := net.SplitHostPort(addr)
		p, err := strconv.Atoi(port)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("kfake listen address %q: %w", addr, err)
		}
		k.ports = append(k.ports, p)
		k.Brokers = append(k.Brokers, loopback(p))
	}
	return k, nil
}

func (k *Kafka) newCluster(ports []int) (*kfake.Cluster, error) {
	opts := []kfake.Opt{
		kfake.Ports(ports...), // also the number of brokers
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &closeWaitListener{Listener: l}, nil
		}),
		kfake.DefaultNumPartitions(KafkaPartitions),
		kfake.AllowAutoTopicCreation(),
	}
	if len(k.topics) > 0 {
		opts = append(opts, kfake.SeedTopics(KafkaPartitions, k.topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kfake on ports %v: %w", ports, err)
	}
	return c, nil
}

// Stop closes the listener and every client connection. It may be called more than once.
func (k *Kafka) Stop() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		k.cluster.Close()
		k.cluster = nil
	}
	return nil
}

// Restart replaces the cluster with a new, empty one on the same ports (see Kafka).
func (k *Kafka) Restart(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		k.cluster.Close()
		k.cluster = nil
	}
	c, err := k.newCluster(k.ports)
	if err != nil {
		return err
	}
	k.cluster = c
	return nil
}

// Running tells whether the cluster runs: it is stopped between Stop and Restart.
func (k *Kafka) Running() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster != nil
}

// NewKafka starts a broker with the given topics for the test and stops it when the test ends.
func NewKafka(t testing.TB, topics ...string) *Kafka {
	t.Helper()
	return NewKafkaCluster(t, 1, topics...)
}

// NewKafkaCluster starts a cluster of brokers with the given topics for the test and stops it when
// the test ends.
func NewKafkaCluster(t testing.TB, brokers int, topics ...string) *Kafka {
	t.Helper()
	k, err := StartKafkaCluster(context.Background(), brokers, topics...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop() })
	return k
}

// closeWaitListener makes Close return only once the socket is closed. A plain net.Listener closes
// its descriptor when the goroutine blocked in Accept lets go of it, a moment after Close returns;
// in that moment the kernel still accepts connections and a Restart cannot bind the port.
type closeWaitListener struct {
	net.Listener
	accepting sync.Mutex // held during Accept
}

func (l *closeWaitListener) Accept() (net.Conn, error) {
	l.accepting.Lock()
	defer l.accepting.Unlock()
	return l.Listener.Accept()
}

func (l *closeWaitListener) Close() error {
	err := l.Listener.Close()
	l.accepting.Lock() // waits for a pending Accept, which fails now that the listener is closed
	l.accepting.Unlock()
	return err
}
