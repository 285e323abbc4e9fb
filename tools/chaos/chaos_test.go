package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
)

// TestPromisesUnderFaults runs the faults Herald's design covers against a real local stack, as
// `make chaos` does at a smaller scale, and holds Herald to its promises: no ttl push answered 200 is
// lost, no ttl-0 push answered delivered ≥ 1 went nowhere, every acked upstream message reaches the
// archive, and every device is back once the fault is over.
func TestPromisesUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services and runs a whole stack through several faults")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../../services/auth", "../../services/push-server",
		"../../services/push-route", "../../services/admin", "../stack")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stackDir := filepath.Join(dir, "stack")
	stackLog, err := os.Create(filepath.Join(dir, "stack.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "stack"), "-bin", bin, "-dir", stackDir,
		"-base-port", fmt.Sprint(testenv.FreePortRange(t, 20)), "-log-level", "warn", "-restart-delay", "1s", "-clients", "../../clients/js")
	cmd.Stdout, cmd.Stderr = stackLog, stackLog
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(stackLog.Name())
			t.Logf("stack log:\n%s", b)
		}
	})
	file := filepath.Join(stackDir, "stack.json")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(file); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no stack.json after 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	s, err := readStack(file)
	if err != nil {
		t.Fatal(err)
	}
	o := options{devices: 100, rate: 100, ttl: 300, before: 3 * time.Second, after: 8 * time.Second,
		drain: 15 * time.Second, upEvery: 2 * time.Second, timeout: 10 * time.Second}
	for _, name := range []string{"kill-push-server", "redis-down", "mysql-frozen", "kafka-down"} {
		t.Run(name, func(t *testing.T) {
			f, err := findFault(name)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := runFault(ctx, o, f, s, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", *rep)
			if rep.TTLOK == 0 || rep.UpAcked == 0 {
				t.Fatalf("nothing measured: %d ttl pushes answered 200, %d upstream messages acked", rep.TTLOK, rep.UpAcked)
			}
			if rep.Lost != 0 || rep.Phantom != 0 {
				t.Errorf("%d ttl pushes lost (%v), %d ttl-0 pushes answered delivered but never received", rep.Lost, rep.LostSample, rep.Phantom)
			}
			if rep.UpMissing != 0 || rep.ArchiveError != "" {
				t.Errorf("%d acked upstream messages missing from the archive %v (%s)", rep.UpMissing, rep.UpMissingSample, rep.ArchiveError)
			}
			if rep.RecoveredAfter < 0 {
				t.Error("the devices were not all back, or pushes not delivered again, before the run ended")
			}
		})
	}
}
