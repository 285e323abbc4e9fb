package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// zooKeeperEnsembleSize is the size of a ZooKeeperEnsemble: the smallest ensemble that survives the
// loss of a server, and what Herald's users run.
const zooKeeperEnsembleSize = 3

// ZooKeeperEnsemble is a private ensemble of three ZooKeeper 3.8 servers on loopback ports. It
// serves while a quorum (two) of them runs. Each server's data directory survives its Restart.
type ZooKeeperEnsemble struct {
	Connect string // "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3", a connect string for clients

	Servers []*ZooKeeperServer
}

// ZooKeeperServer is one server of a ZooKeeperEnsemble.
type ZooKeeperServer struct {
	Addr string // client address, 127.0.0.1:port
	ID   int    // its myid, 1 to 3

	dir, dataDir string
	e            *ZooKeeperEnsemble
	srv          server
}

// zkPorts are the three ports of one server of an ensemble.
type zkPorts struct{ client, peer, election int }

// StartZooKeeperEnsemble starts three ZooKeeper servers, each with its zoo.cfg, myid, data and
// zookeeper.log in a subdirectory of dir, and waits until each serves as leader or follower. ctx
// bounds only the start; the servers run until Stop.
func StartZooKeeperEnsemble(ctx context.Context, dir string) (*ZooKeeperEnsemble, error) {
	if _, err := os.Stat(zooKeeperJar); err != nil {
		return nil, &MissingError{Program: zooKeeperJar, Package: "zookeeper"}
	}
	java, err := findProgram("java", "default-jre-headless")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	e := &ZooKeeperEnsemble{}
	for i := range zooKeeperEnsembleSize {
		sdir := filepath.Join(dir, fmt.Sprintf("server-%d", i+1))
		s := &ZooKeeperServer{ID: i + 1, dir: sdir, dataDir: filepath.Join(sdir, "data"), e: e}
		s.srv.start = func(ctx context.Context, port int) (*process, error) {
			return s.launch(ctx, java, false)
		}
		e.Servers = append(e.Servers, s)
	}
	// Every server's zoo.cfg names all the ports, so a port found taken means choosing all of them
	// again and starting over.
	for range startAttempts {
		var ports []zkPorts
		if ports, err = ensemblePorts(); err != nil {
			return nil, err
		}
		err = e.startAll(ctx, java, ports)
		if err == nil {
			return e, nil
		}
		portTaken := errors.Is(err, errEarlyExit) || errors.Is(err, errNotOurs)
		if !portTaken || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("zookeeper ensemble: %w", err)
}

// ensemblePorts picks three distinct free ports for each server.
func ensemblePorts() ([]zkPorts, error) {
	seen := map[int]bool{}
	pick := func() (int, error) {
		for {
			p, err := freePort()
			if err != nil || !seen[p] {
				seen[p] = true
				return p, err
			}
		}
	}
	ports := make([]zkPorts, zooKeeperEnsembleSize)
	for i := range ports {
		for _, p := range []*int{&ports[i].client, &ports[i].peer, &ports[i].election} {
			var err error
			if *p, err = pick(); err != nil {
				return nil, err
			}
		}
	}
	return ports, nil
}

// startAll writes every server's configuration for ports and starts them together: none can serve
// before a quorum is up. On failure every server is stopped again.
func (e *ZooKeeperEnsemble) startAll(ctx context.Context, java string, ports []zkPorts) error {
	var servers strings.Builder
	addrs := make([]string, len(ports))
	for i, p := range ports {
		fmt.Fprintf(&servers, "server.%d=127.0.0.1:%d:%d\n", i+1, p.peer, p.election)
		addrs[i] = loopback(p.client)
	}
	for i, s := range e.Servers {
		// A data directory from a failed attempt may hold an election of other ports.
		if err := os.RemoveAll(s.dataDir); err != nil {
			return err
		}
		if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(s.dataDir, "myid"), []byte(strconv.Itoa(s.ID)+"\n"), 0o644); err != nil {
			return err
		}
		cfg := zooCfg(s.dataDir, ports[i].client) + "initLimit=20\nsyncLimit=10\n" + servers.String()
		if err := os.WriteFile(filepath.Join(s.dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
			return err
		}
		s.Addr = addrs[i]
	}
	e.Connect = strings.Join(addrs, ",")

	err := inParallel(len(e.Servers), func(i int) error {
		s := e.Servers[i]
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		p, err := s.launch(ctx, java, true)
		if err != nil {
			return err
		}
		s.srv.port, s.srv.proc = ports[i].client, p
		return nil
	})
	if err != nil {
		_ = e.Stop()
		return err
	}
	return nil
}

// launch runs the server with the zoo.cfg already in its directory. At the ensemble's start
// (quorum set) it waits until the server serves. A restarted server waits for that only while
// another server serves: otherwise it cannot serve until enough servers are back, so it counts as
// started once it answers on its port.
func (s *ZooKeeperServer) launch(ctx context.Context, java string, quorum bool) (*process, error) {
	c := command{
		name: fmt.Sprintf("zookeeper-%d", s.ID),
		path: java,
		args: []string{
			"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", // see StartZooKeeper
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
			"-cp", zooKeeperJar + ":/usr/share/java/slf4j-simple.jar",
			"org.apache.zookeeper.server.quorum.QuorumPeerMain", filepath.Join(s.dir, "zoo.cfg"),
		},
		dir: s.dir,
		log: filepath.Join(s.dir, "zookeeper.log"),
	}
	return launch(ctx, c, func(ctx context.Context, p *process) error {
		err := serving(ctx, s.Addr, s.dataDir)
		if err == nil || errors.Is(err, errNotOurs) || quorum || s.othersServe(ctx) {
			return err
		}
		if out, rerr := fourLetterWord(ctx, s.Addr, "ruok"); rerr != nil || out != "imok" {
			return err
		}
		return nil
	})
}

// serving checks that the server at addr is ours and serves as a member of a quorum.
func serving(ctx context.Context, addr, dataDir string) error {
	if err := pingZooKeeper(ctx, addr, dataDir); err != nil {
		return err
	}
	_, err := quorumMode(ctx, addr)
	return err
}

// quorumMode is the server's mode when it serves as a member of a quorum: leader or follower.
func quorumMode(ctx context.Context, addr string) (string, error) {
	mode, err := zooKeeperMode(ctx, addr)
	if err != nil {
		return "", err
	}
	if mode != "leader" && mode != "follower" {
		return "", fmt.Errorf("zookeeper at %s: mode %q, not a quorum member", addr, mode)
	}
	return mode, nil
}

// othersServe tells whether another server of the ensemble serves, which means a quorum exists for
// this one to join.
func (s *ZooKeeperServer) othersServe(ctx context.Context) bool {
	for _, o := range s.e.Servers {
		if o == s {
			continue
		}
		if _, err := o.Mode(ctx); err == nil {
			return true
		}
	}
	return false
}

// zooKeeperMode reads the Mode line of srvr: leader, follower or standalone.
func zooKeeperMode(ctx context.Context, addr string) (string, error) {
	out, err := fourLetterWord(ctx, addr, "srvr")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(out) {
		if mode, ok := strings.CutPrefix(strings.TrimSpace(line), "Mode: "); ok {
			return mode, nil
		}
	}
	return "", fmt.Errorf("zookeeper at %s not serving: %s", addr, strings.TrimSpace(out))
}

// Stop stops every server and waits for their processes to exit. It may be called more than once.
func (e *ZooKeeperEnsemble) Stop() error {
	return inParallel(len(e.Servers), func(i int) error { return e.Servers[i].Stop() })
}

// Stop shuts the server down and waits for its process to exit. It may be called more than once.
func (s *ZooKeeperServer) Stop() error { return s.srv.stop() }

// Restart stops the server if it runs and starts it again on the same ports and data directory. It
// returns once the server serves again, or, while no other server serves, once it answers on its
// port (see launch).
func (s *ZooKeeperServer) Restart(ctx context.Context) error { return s.srv.restart(ctx) }

// PID is the server's process id (0 while stopped).
func (s *ZooKeeperServer) PID() int { return s.srv.pid() }

// Mode is "leader" or "follower" while the server serves; otherwise it answers an error.
func (s *ZooKeeperServer) Mode(ctx context.Context) (string, error) { return quorumMode(ctx, s.Addr) }

// NewZooKeeperEnsemble starts an ensemble in a temporary directory for the test and stops it when
// the test ends.
func NewZooKeeperEnsemble(t testing.TB) *ZooKeeperEnsemble {
	t.Helper()
	e, err := StartZooKeeperEnsemble(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	return e
}
